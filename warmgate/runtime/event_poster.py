"""The Event poster: the small child process that sends the supervisor's Kubernetes Events.

The supervisor must stay small and must never wait on the network, so it decides which Events
to send (``decide/events.py``) and writes each request as one JSON line down a pipe
(``runtime/events.py``); this process, started only when ``kubernetes.events`` is on, carries
them out with lightkube, which speaks the Kubernetes API over httpx:

- where the API server is: the file ``KUBECONFIG`` names if set, else the pod's service
  account (``KUBERNETES_SERVICE_HOST``/``_PORT``, the token and CA under
  ``/var/run/secrets/kubernetes.io/serviceaccount``). The configuration is read again and a new
  client made for each batch of requests, so a rotated token is always the one in the file
  (lightkube also re-reads the token file when the API server answers 401);
- each request is cut by its own timeout (:data:`TIMEOUT`);
- as client-go's recorder does, a 409 on a create (it exists already) and a 400 or 422 (a
  request the server will never take) drop that Event; a 404 on a series patch creates the
  Event instead;
- anything else (no configuration, 401, 403, 404, a timeout, no connection) keeps the Events
  waiting (at most :data:`PENDING_LIMIT`, the oldest dropped) and tries again after
  :data:`~warmgate.decide.events.RETRY_AFTER`; the first failure of each kind is said in one
  log line naming what is missing (for 403, the Role rule to add), and posting again after a
  failure in one more.

It ends when the pipe closes: the relay closes it 30 s after the last request (so the poster is
resident only around a warm-up's Events), or the supervisor ended; what it could not post by
then is dropped, and its exit code tells the next poster which failure was said already.

No token, certificate or header is ever logged: what is logged is the sentence of
:func:`~warmgate.decide.events.failure_sentence`, which names the server's URL at most.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from warmgate.decide.events import RETRY_AFTER, failure_sentence
from warmgate.kernel.redaction import Secrets
from warmgate.serve.logs import Log

TIMEOUT = 5.0
"""Seconds each phase of one request (connect, send, wait for the answer) may take."""
PENDING_LIMIT = 64
"""Events kept while the API server cannot be reached; older ones are dropped."""
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
FAILING = ("config", "timeout", "connect", "status 401", "status 403", "status 404")
"""Failures a poster may end with; it exits with ``3 +`` the index (``3 + len``: another), so
the next poster the relay starts is told what was said already and stays quiet about it."""


class MissingError(Exception):
    """No API server is configured: no KUBECONFIG and no service account."""


class FailedError(Exception):
    """A request failed in a way worth waiting for: ``sentence`` says what is missing."""

    def __init__(self, key: str, sentence: str) -> None:
        super().__init__(sentence)
        self.key = key
        self.sentence = sentence


def kube_config(environ: dict[str, str], service_account: Path = SERVICE_ACCOUNT) -> Any:
    """Where the API server is: ``KUBECONFIG`` if set, else the pod's service account;
    :class:`MissingError` (saying what is missing) if neither is there."""
    from lightkube import ConfigError, KubeConfig
    from lightkube.config.models import Cluster, User

    path = environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token = service_account / "token"
    try:
        if path:
            return KubeConfig.from_file(path)
        if host and token.is_file():
            host = f"[{host}]" if ":" in host else host
            cluster = Cluster(
                server=f"https://{host}:{port or 443}",
                certificate_auth=str(service_account / "ca.crt"),
            )
            # Only the file's name: lightkube reads it for each new client and on a 401.
            return KubeConfig.from_one(cluster=cluster, user=User(token_file=str(token)))
    except (ConfigError, OSError, KeyError, ValueError) as exc:
        raise MissingError(
            f"cannot read the Kubernetes configuration: {type(exc).__name__}"
        ) from None
    if host:
        raise MissingError(f"no service account token at {token}")
    raise MissingError("no KUBECONFIG and not in a cluster")


def event_model(body: dict[str, Any]) -> Any:
    """lightkube's Event for ``body``, its times kept as warmgate wrote them.

    lightkube holds a ``MicroTime`` as a datetime and msgspec writes one whose microseconds are
    0 without a fraction (``...:40Z``), which the API server's ``MicroTime`` parser (layout
    RFC3339Micro) refuses; so the model carries the text ``decide/events.py`` made instead.
    """
    from lightkube.resources.events_v1 import Event

    event: Any = Event.from_dict(body)
    event.eventTime = body["eventTime"]
    if event.series is not None:
        event.series.lastObservedTime = body["series"]["lastObservedTime"]
    return event


class Poster:
    """Sends the requests handed to it, in order, keeping those that must wait."""

    def __init__(
        self,
        log: Log,
        environ: dict[str, str] | None = None,
        *,
        service_account: Path = SERVICE_ACCOUNT,
        timeout: float = TIMEOUT,
    ) -> None:
        self.log = log
        self.environ = dict(os.environ) if environ is None else environ
        self.service_account = service_account
        self.timeout = timeout
        self.pending: deque[dict[str, Any]] = deque(maxlen=PENDING_LIMIT)
        self.retry_at = float("-inf")
        self.failure: str | None = None
        """The kind of the last failure, until a batch goes through."""
        self.sent = 0

    def add(self, post: dict[str, Any]) -> None:
        """One request from the supervisor (the JSON form of a :class:`Post`)."""
        self.pending.append(post)

    def due(self, now: float) -> bool:
        """Whether there is something to send and the pause after a failure is over."""
        return bool(self.pending) and now >= self.retry_at

    def flush(self, now: float) -> None:
        """Send what is pending, in order, until done or a failure; then wait a minute."""
        try:
            client, server = self._client()
        except MissingError as exc:
            self._failed(now, FailedError("config", failure_sentence("config", detail=str(exc))))
            return
        try:
            while self.pending:
                self._send(client, server, self.pending[0])
                self.pending.popleft()
        except FailedError as failure:
            self._failed(now, failure)
            return
        finally:
            client.close()
        if self.failure is not None:
            self.log.event("events_posting", f"posting Kubernetes Events to {server} again")
        self.failure = None

    def _client(self) -> tuple[Any, str]:
        import httpx2
        from lightkube import Client

        config = kube_config(self.environ, self.service_account)
        try:
            server = str(config.get().cluster.server)
            client = Client(config, timeout=httpx2.Timeout(self.timeout), trust_env=False)
        except Exception as exc:  # noqa: BLE001 - lightkube's errors of a bad config vary
            # No current context, a CA file that is not there, an exec plugin that fails...
            raise MissingError(
                f"cannot use the Kubernetes configuration: {type(exc).__name__}"
            ) from None
        return client, server

    def _failed(self, now: float, failure: FailedError) -> None:
        self.retry_at = now + RETRY_AFTER
        if failure.key != self.failure:
            self.log.event("events_failed", failure.sentence, pending=len(self.pending))
        self.failure = failure.key

    def _send(self, client: Any, server: str, post: dict[str, Any]) -> None:
        import httpx2
        from lightkube import ApiError, ConfigError
        from lightkube.resources.events_v1 import Event
        from lightkube.types import PatchType

        namespace = str(post["namespace"])
        try:
            try:
                if post["verb"] == "patch":
                    series = {"series": post["series"]}
                    client.patch(
                        Event, post["name"], series, namespace=namespace,
                        patch_type=PatchType.MERGE,
                    )  # fmt: skip
                else:
                    client.create(event_model(post["event"]), namespace=namespace)
            except ApiError as exc:
                if post["verb"] != "patch" or exc.status.code != 404:
                    raise
                # The series' Event is gone (expired or deleted): create it, as client-go does.
                client.create(event_model(post["event"]), namespace=namespace)
        except ApiError as exc:
            code = int(exc.status.code or 0)
            if code in (400, 409, 422):
                if code != 409:
                    reason = exc.status.reason or "Invalid"
                    self.log.event(
                        "events_rejected",
                        f"the API server rejected an Event ({code} {reason}); dropped",
                    )
                return
            detail = exc.status.reason or ""
            raise FailedError(
                f"status {code}", failure_sentence("status", code, server, detail)
            ) from None
        except ConfigError as exc:  # the token file went away, say, between two requests
            detail = f"cannot use the Kubernetes configuration: {type(exc).__name__}"
            raise FailedError("config", failure_sentence("config", detail=detail)) from None
        except httpx2.TimeoutException:
            raise FailedError("timeout", failure_sentence("timeout", server=server)) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise FailedError(
                "connect", failure_sentence("connect", server=server, detail=type(exc).__name__)
            ) from None
        self.sent += 1


def exit_code(failure: str | None) -> int:
    """What a poster exits with: 0, or the failure it has not got past (see :data:`FAILING`)."""
    if failure is None:
        return 0
    return 3 + (FAILING.index(failure) if failure in FAILING else len(FAILING))


def failure_of(code: int) -> str | None:
    """The failure a poster that exited with ``code`` had said (``None``: none)."""
    index = code - 3
    if 0 <= index < len(FAILING):
        return FAILING[index]
    return "other" if index == len(FAILING) else None


def serve(poster: Poster, fd: int) -> int:
    """Read requests (JSON lines) from ``fd`` and send them until it closes (the relay closes it
    when it has had nothing to send for a while); then one last try if one is due. The exit
    code: :func:`exit_code`."""
    buffer = b""
    while True:
        now = time.monotonic()
        wait = None if not poster.pending else max(0.0, poster.retry_at - now)
        readable, _, _ = select.select([fd], [], [], wait)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                now = time.monotonic()
                if poster.due(now):
                    poster.flush(now)
                return exit_code(poster.failure)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    post = json.loads(line)
                except ValueError:
                    continue
                if isinstance(post, dict):
                    poster.add(post)
        now = time.monotonic()
        if poster.due(now):
            poster.flush(now)


def main() -> None:
    """``python -m warmgate.runtime.event_poster LOG_FORMAT [SAID]``: requests on standard
    input. ``SAID``: the exit code of the poster before, whose failure was said already: this
    one stays quiet about the same failure and waits :data:`RETRY_AFTER` before its first try.
    """
    log = Log.for_format(sys.argv[1] if len(sys.argv) > 1 else "json", Secrets())
    poster = Poster(log)
    said = failure_of(int(sys.argv[2])) if len(sys.argv) > 2 else None
    if said is not None:
        poster.failure = said
        poster.retry_at = time.monotonic() + RETRY_AFTER
    code = 0
    try:
        code = serve(poster, sys.stdin.fileno())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback in the pod's log
        log.event(
            "events_failed",
            f"the Kubernetes Event poster stopped on {type(exc).__name__}; the Events it held "
            "are dropped and the next one starts it again",
        )
        code = exit_code("other")
    finally:
        log.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
