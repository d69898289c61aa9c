"""The supervisor's side of Kubernetes Events: decide, then hand over without ever waiting.

The supervisor tells :class:`EventRelay` each status it shows; the relay asks
``decide/events.py`` whether the change deserves an Event and how it adds up with the ones
before (client-go's series), and writes each resulting request as one JSON line down a pipe to
the poster (``event_poster.py``), a child process started at the first one. The pipe's write
end does not block: if the poster cannot keep up (a hung API server fills the pipe), a request
is dropped and said once, never waited for. So posting never touches the readiness path, and
the supervisor itself loads no HTTP client (the ``lean`` contract).

Imports: the standard library and warmgate's small modules only.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from warmgate.decide.events import Moment, Pod, Post, Recorder, notice_for
from warmgate.serve.logs import Log
from warmgate.serve.status import Status

IDLE_CLOSE = 30.0
"""Seconds without a request after which the relay closes the poster's pipe and the poster
ends: Events come a handful per warm-up, so the poster (about 36 MiB) is resident only around
them. A poster that cannot post ends too, dropping what waits, and the next one is told what was
said already."""
POD_VARIABLES = ("POD_NAME", "POD_NAMESPACE", "POD_UID")
"""The downward API variables that say which pod the Events are about."""


def pod_from(environ: Mapping[str, str]) -> dict[str, str]:
    """The pod's identity from the downward API variables that are set (``run`` reads them)."""
    return {
        key: environ[variable]
        for key, variable in zip(("name", "namespace", "uid"), POD_VARIABLES, strict=True)
        if environ.get(variable)
    }


def moment_of(status: Status) -> Moment:
    """What :func:`notice_for` needs of a status."""
    return Moment(status.state, status.ready, status.reason, status.outcome, status.rearms)


def spawn_poster(log_format: str, said: int = 0) -> subprocess.Popen[bytes]:
    """Start the poster with a pipe to its standard input; ``said``: how the one before ended."""
    command = [sys.executable, "-m", "warmgate.runtime.event_poster", log_format, str(said)]
    return subprocess.Popen(command, stdin=subprocess.PIPE)  # noqa: S603 - our own module


class EventRelay:
    """Turns the statuses the supervisor shows into Event requests for the poster."""

    def __init__(
        self,
        pod: Pod,
        log: Log,
        log_format: str = "json",
        *,
        spawn: Callable[[str, int], Any] = spawn_poster,
    ) -> None:
        self.recorder = Recorder(pod)
        self.log = log
        self.log_format = log_format
        self._spawn = spawn
        self._poster: Any = None
        self._retired: Any = None
        """The poster whose pipe was closed last: how it ended tells the next one."""
        self._said = 0
        self._last_sent = float("-inf")
        self._full = False
        self._closed = False
        self.sent = 0
        self.dropped = 0

    @classmethod
    def from_handover(
        cls, pod: Mapping[str, str] | None, log: Log, log_format: str
    ) -> EventRelay | None:
        """The relay ``run --events`` asked for, or ``None`` (off, or the pod unknown: said
        once)."""
        if pod is None:
            return None
        if not pod.get("name") or not pod.get("namespace"):
            log.event(
                "events_failed",
                "Kubernetes events are on but POD_NAME and POD_NAMESPACE are not set; add "
                "them from the downward API (fieldRef metadata.name and metadata.namespace) "
                "to the warmgate container; no Events will be posted",
            )
            return None
        return cls(Pod(pod["name"], pod["namespace"], pod.get("uid", "")), log, log_format)

    def observe(self, before: Status | None, after: Status, now: float) -> None:
        """The supervisor shows ``after`` instead of ``before`` at wall-clock ``now``."""
        notice = notice_for(None if before is None else moment_of(before), moment_of(after))
        if notice is not None:
            post = self.recorder.record(notice, now)
            if post is not None:
                self._send(post, now)

    def tick(self, now: float) -> None:
        """Let wall-clock time pass: series to finish or refresh; an idle poster ends."""
        for post in self.recorder.tick(now):
            self._send(post, now)
        poster = self._poster
        if poster is not None and now - self._last_sent >= IDLE_CLOSE:
            with contextlib.suppress(OSError):
                poster.stdin.close()  # it ends after one last try, if one is due
            self._retired, self._poster = poster, None

    def _send(self, post: Post, now: float) -> None:
        poster = self._poster
        if self._closed:
            return
        self._last_sent = now
        if poster is None or poster.poll() is not None:
            ended = poster if poster is not None else self._retired
            if ended is not None:
                code = ended.poll()
                # Still finishing (its last try): it said what it had to say, if anything.
                self._said = code if code is not None else self._said
                self._retired = None
            try:
                poster = self._poster = self._spawn(self.log_format, self._said)
            except OSError as exc:
                self.log.event(
                    "events_failed", f"cannot start the Event poster ({exc.strerror}); dropped"
                )
                return
            os.set_blocking(poster.stdin.fileno(), False)
        line = json.dumps(post.to_json(), separators=(",", ":")).encode() + b"\n"
        written = 0
        # A write of at most PIPE_BUF bytes to a pipe is whole or nothing: never half a line.
        if len(line) <= select.PIPE_BUF:
            try:
                written = os.write(poster.stdin.fileno(), line)
            except (BlockingIOError, BrokenPipeError):
                written = 0
        if written == len(line):
            self.sent += 1
            self._full = False
            return
        self.dropped += 1
        if not self._full:
            self.log.event(
                "events_dropped",
                "the Event poster is not keeping up (is the API server hanging?); dropping "
                "Events until it does",
            )
        self._full = True

    def close(self) -> None:
        """Stop the posters: their pipes close, and they are asked to end."""
        self._closed = True
        for poster in (self._poster, self._retired):
            if poster is None:
                continue
            with contextlib.suppress(OSError):
                poster.stdin.close()
            if poster.poll() is None:
                poster.terminate()
                try:
                    poster.wait(0.5)
                except subprocess.TimeoutExpired:
                    poster.kill()
                    poster.wait()
        self._poster = self._retired = None
