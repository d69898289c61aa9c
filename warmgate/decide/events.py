"""Kubernetes Events about warmgate's own pod: which moments deserve one, and how repeats add up.

Pure: fed plain data with ``now`` (wall-clock seconds) passed in. Three decisions live here:

- :func:`notice_for`: which change of the shown status is worth an Event (warming started,
  warm, opened on timeout, failed closed, re-armed, resumed after warmgate's own restart) and
  what it says: ``note`` is the sentence ``/readyz`` gives at that moment;
- :class:`Recorder`: what to send the API server, as client-go's ``events.k8s.io`` recorder
  does (``k8s.io/client-go/tools/events``). Events with the same key (action, reason,
  reporting controller, regarding object) are *isomorphic*: the first is created; the second
  turns it into a series (a merge patch with ``series.count`` 2 and ``lastObservedTime``);
  later ones only count, and the count is sent when the series is refreshed
  (:data:`REFRESH_AFTER`) or finished (:data:`FINISH_AFTER` without a repeat: the final count
  is patched and the key forgotten, so the next one is a new Event);
- :func:`failure_sentence`: the one log line that says what is missing when posting fails.

The poster (``runtime/event_poster.py``) carries the :class:`Post`\\ s out; it decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CONTROLLER = "warmgate.io/warmgate"
"""The ``reportingController`` of every Event warmgate posts."""
NORMAL, WARNING = "Normal", "Warning"
FINISH_AFTER = 6 * 60.0
"""Seconds without a repeat after which a series is finished (client-go's ``finishTime``)."""
REFRESH_AFTER = 30 * 60.0
"""Seconds between refreshes of an open series' count (client-go's ``refreshTime``)."""
NOTE_LIMIT = 1024
"""Bytes of ``note`` the API server accepts."""
RETRY_AFTER = 60.0
"""Seconds after a failed post before the poster tries again (at most once a minute)."""
ROLE_RULE = "{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}"
"""The rule of the Role the pod's service account needs."""


@dataclass(frozen=True, slots=True)
class Pod:
    """The pod an Event is about, from the downward API (``POD_NAME``, ``POD_NAMESPACE``,
    ``POD_UID``)."""

    name: str
    namespace: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """One Event to record: its ``reason`` (UpperCamelCase), ``type``, ``action`` and ``note``."""

    reason: str
    type: str
    action: str
    note: str


@dataclass(frozen=True, slots=True)
class Moment:
    """What a status shows, as much as deciding an Event needs."""

    state: str
    ready: bool
    reason: str
    outcome: str | None = None
    rearms: int = 0


_OUTCOMES = {
    ("ready", "warm"): ("Warm", NORMAL, "OpenReadiness"),
    ("ready", "opened_on_timeout"): ("OpenedOnTimeout", WARNING, "OpenReadiness"),
    ("failed", "failed_closed"): ("FailedClosed", WARNING, "WithholdReadiness"),
}


def notice_for(before: Moment | None, after: Moment) -> Notice | None:
    """The Event the change from ``before`` to ``after`` deserves, if any.

    ``before`` is ``None`` at the start: a start that resumes (warmgate restarted while the app
    was ready) is worth one. A re-arm is told by the count of re-arms growing; an outcome by the
    state reaching ready or failed with that outcome; warming by the state becoming warming.
    """
    if before is None:
        if after.reason.startswith("confirming the app is still warm"):
            return Notice("Resumed", NORMAL, "Resume", note(after.reason))
        return None
    if after.rearms > before.rearms:
        return Notice("Rearmed", NORMAL, "Rearm", note(after.reason))
    key = (after.state, after.outcome or "")
    if key in _OUTCOMES and (before.state, before.outcome) != (after.state, after.outcome):
        reason, kind, action = _OUTCOMES[key]
        return Notice(reason, kind, action, note(after.reason))
    if after.state == "warming" and before.state != "warming":
        return Notice("Warming", NORMAL, "Warm", note(after.reason))
    return None


def note(sentence: str) -> str:
    """``sentence`` cut to what the API server accepts (1 KiB of UTF-8), on a character."""
    data = sentence.encode()
    if len(data) <= NOTE_LIMIT:
        return sentence
    return data[: NOTE_LIMIT - 3].decode(errors="ignore") + "..."


def micro_time(timestamp: float) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Post:
    """One request for the poster: ``create`` the ``event``, or ``patch`` its ``series`` (and
    create it if it is gone, as client-go does)."""

    verb: str
    name: str
    namespace: str
    event: dict[str, Any]
    series: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The plain JSON form the poster reads."""
        return {
            "verb": self.verb,
            "name": self.name,
            "namespace": self.namespace,
            "event": self.event,
            "series": self.series,
        }


def event_body(pod: Pod, notice: Notice, name: str, now: float) -> dict[str, Any]:
    """The ``events.k8s.io/v1`` Event for ``notice`` about ``pod``, named ``name``."""
    regarding: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod.name,
        "namespace": pod.namespace,
    }
    if pod.uid:
        regarding["uid"] = pod.uid
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": pod.namespace},
        "eventTime": micro_time(now),
        "reportingController": CONTROLLER,
        "reportingInstance": pod.name[:128],
        "action": notice.action,
        "reason": notice.reason,
        "note": notice.note,
        "type": notice.type,
        "regarding": regarding,
    }


@dataclass(slots=True)
class _Series:
    post: Post
    count: int = 1
    last_observed: float = 0.0
    created: float = 0.0
    sent_count: int = 1
    refreshed: float = 0.0


@dataclass
class Recorder:
    """client-go's event recorder for one pod: :meth:`record` each notice, :meth:`tick` now
    and then; each returns what to send."""

    pod: Pod
    cache: dict[tuple[str, str], _Series] = field(default_factory=dict)
    _last_nanos: int = 0

    def record(self, notice: Notice, now: float) -> Post | None:
        """A notice happened at ``now``: a new Event, a series begun, or only counted."""
        key = (notice.action, notice.reason)
        known = self.cache.get(key)
        if known is None:
            name = self._name(now)
            post = Post("create", name, self.pod.namespace, event_body(self.pod, notice, name, now))
            self.cache[key] = _Series(post, last_observed=now, created=now, refreshed=now)
            return post
        known.count += 1
        known.last_observed = now
        if known.count == 2:
            return self._series(known, now)
        return None

    def tick(self, now: float) -> list[Post]:
        """Finish series idle for :data:`FINISH_AFTER` (sending their final count), refresh
        the counts of open ones every :data:`REFRESH_AFTER`, forget single Events that old."""
        posts: list[Post] = []
        for key, known in list(self.cache.items()):
            if known.count == 1:
                if now - known.created >= FINISH_AFTER:
                    del self.cache[key]
                continue
            if now - known.last_observed >= FINISH_AFTER:
                del self.cache[key]
                if known.count != known.sent_count:
                    posts.append(self._series(known, now))
            elif now - known.refreshed >= REFRESH_AFTER and known.count != known.sent_count:
                posts.append(self._series(known, now))
        return posts

    def _series(self, known: _Series, now: float) -> Post:
        known.sent_count = known.count
        known.refreshed = now
        series = {"count": known.count, "lastObservedTime": micro_time(known.last_observed)}
        post = known.post
        event = {**post.event, "series": series}
        return Post("patch", post.name, post.namespace, event, series)

    def _name(self, now: float) -> str:
        """``<pod>.<nanoseconds in hex>``, as client-go names them; never the same twice."""
        nanos = max(round(now * 1e9), self._last_nanos + 1)
        self._last_nanos = nanos
        return f"{self.pod.name}.{nanos:x}"


def failure_sentence(  # noqa: PLR0911 - one sentence a case
    kind: str, status: int = 0, server: str = "", detail: str = ""
) -> str:
    """What is missing, in one sentence, when Events cannot be posted.

    ``kind``: ``config`` (no API server configured), ``status`` (the API server answered
    ``status``), ``timeout`` or ``connect`` (it did not answer, or could not be reached).
    """
    where = f" at {server}" if server else ""
    if kind == "config":
        return (
            "Kubernetes events are on but there is no API server to post them to "
            f"({detail}); run in a pod with a service account token mounted "
            "(automountServiceAccountToken: true) or set KUBECONFIG; retrying once a minute"
        )
    if kind == "status" and status == 401:
        return (
            f"the API server{where} refused warmgate's credentials (401): mount the pod's "
            "service account token or fix the KUBECONFIG user; retrying once a minute"
        )
    if kind == "status" and status == 403:
        return (
            f"the API server{where} forbids posting Events (403): bind the pod's service "
            f"account to a Role with the rule {ROLE_RULE}; retrying once a minute"
        )
    if kind == "status" and status == 404:
        return (
            f"the API server{where} has no events.k8s.io/v1 Events in this namespace (404): "
            "Kubernetes 1.19 or later is needed; retrying once a minute"
        )
    if kind == "status":
        return (
            f"the API server{where} answered {status} to an Event ({detail}); "
            "retrying once a minute"
        )
    if kind == "timeout":
        return (
            f"the API server{where} did not answer in time; Events wait and are retried once "
            "a minute"
        )
    return (
        f"cannot reach the API server{where} ({detail}); Events wait and are retried once a minute"
    )
