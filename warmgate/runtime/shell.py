"""The shell the long-lived ``run`` processes share: one status, served and kept on disk.

The supervisor (``supervisor.py``) and the open run (``open_run.py``) are small processes that
live as long as the pod. Both hold one current :class:`~warmgate.serve.status.Status`, serve it
from memory on the readiness endpoint, mirror it in the status directory and renew the
heartbeat there; both stop on SIGTERM or SIGINT. What they share is here:

- :class:`Surfaces`: the current status in memory (one reference the endpoint's threads read)
  and in the status directory, in the order that keeps the two from contradicting each other:
  *ready* reaches the directory before the endpoint, *not ready* the endpoint first;
- :class:`WriteFailures`: a status directory that cannot be written costs one log line per
  kind of error, never the process (the primer's publisher uses it too);
- :func:`serve_process`: the ``main`` of such a process: signals that only ask the loop to
  stop, the log, the endpoint on the socket ``run`` bound, the loop, and a bounded shutdown.

Imports: the standard library, prometheus_client and warmgate's small modules only.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

from warmgate.kernel.redaction import Secrets
from warmgate.serve.logs import Log
from warmgate.serve.status import Status, StatusDir, write_failure

FILE_INTERVAL = 1.0
"""At most one status write per this many seconds, unless readiness or the state changes."""
BEAT_INTERVAL = 1.0
"""Seconds between heartbeats (a ``run`` status is ready only while its heartbeat is fresh)."""


class WriteFailures:
    """Logs a failed status-directory write once per kind of error, and forgets it once a
    write succeeds."""

    def __init__(self, log: Log, where: object) -> None:
        self.log = log
        self.where = where
        self.error: str | None = None
        """Why the last write failed, or ``None`` if it succeeded."""

    def run(self, write: Callable[[], None]) -> bool:
        """Carry out ``write``; whether it succeeded."""
        try:
            write()
        except OSError as exc:
            self.failed(exc)
            return False
        self.error = None
        return True

    def failed(self, exc: OSError) -> None:
        """Note a failed write, logging it if it is a new kind of failure."""
        error, sentence = write_failure(self.where, exc)
        if error != self.error:
            self.log.event("status_write_failed", sentence)
        self.error = error


class Surfaces:
    """One process's current status: in memory for the endpoint, and in the status directory."""

    def __init__(self, status: Status, directory: Path | None, log: Log) -> None:
        self.log = log
        self.status = status
        self.directory = StatusDir(directory) if directory is not None else None
        self.failures = WriteFailures(log, directory)
        self._snapshot: tuple[bool, str, dict[str, Any]] = (
            status.ready,
            status.reason,
            status.to_json(),
        )
        self._written = float("-inf")

    def snapshot(self) -> tuple[bool, str, dict[str, Any]]:
        """``(ready, reason, status JSON)`` for the endpoint's threads: one reference read."""
        return self._snapshot

    def metrics_text(self, traffic: bytes = b"") -> bytes:
        """The status gauges, then ``traffic`` (a primer's request counters, if any)."""
        from prometheus_client import CollectorRegistry, generate_latest

        from warmgate.serve.metrics import StatusCollector

        registry = CollectorRegistry(auto_describe=False)
        ready, _, status = self._snapshot
        registry.register(StatusCollector(lambda: (ready, status)))
        return generate_latest(registry) + traffic

    def show(self, status: Status, now: float, *, force: bool = False) -> bool:
        """Make ``status`` current; whether its state or readiness changed.

        The directory is written when they changed, when ``force``\\ d, or at most once per
        :data:`FILE_INTERVAL` otherwise.
        """
        previous = self.status
        changed = (previous.state, previous.ready) != (status.state, status.ready)
        write = self.directory is not None and (
            changed or force or now - self._written >= FILE_INTERVAL
        )
        document = status.to_json()
        # So whoever reads either one never sees ready for longer than the other says it.
        if status.ready and write:
            self._write(document, now)
        self.status = status
        self._snapshot = (status.ready, status.reason, document)
        if not status.ready and write:
            self._write(document, now)
        return changed

    def write_report(self, record: dict[str, Any]) -> None:
        """Keep a primer's warm-up record in the status directory."""
        directory = self.directory
        if directory is not None:
            self.failures.run(lambda: directory.write_report(record))

    def beat(self) -> None:
        """Renew the heartbeat, if there is a status directory."""
        directory = self.directory
        if directory is not None:
            self.failures.run(directory.beat)

    def _write(self, document: dict[str, Any], now: float) -> None:
        self._written = now
        directory = self.directory
        if directory is not None:
            self.failures.run(lambda: directory.write_json(document))


class Worker(Protocol):
    """What :func:`serve_process` runs: the loop of a long-lived process and its surfaces."""

    surfaces: Surfaces

    def request_stop(self, name: str) -> None:
        """A signal arrived: stop at the next turn."""
        ...

    def run(self) -> int:
        """Turn until stopped; the exit code."""
        ...

    def liveness(self) -> tuple[bool, str]:
        """Whether the loop is still turning, and why not."""
        ...

    def metrics_text(self) -> bytes:
        """What ``/metrics`` answers."""
        ...


def serve_process(
    listen_fd: int,
    log_format: str,
    early_signal: str | None,
    make: Callable[[Log], Worker],
    *,
    started: str | None = None,
) -> NoReturn:
    """Run a long-lived ``run`` process to its end: the ``main`` the supervisor and the open run
    share. ``make`` builds the worker; ``started``, if any, is its start line in the log."""
    from warmgate import __version__

    worker: Worker | None = None
    early: list[str] = [early_signal] if early_signal else []

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if worker is None:
            early.append(name)
        else:
            worker.request_stop(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log = Log.for_format(log_format, Secrets())
    worker = make(log)
    for name in early:
        worker.request_stop(name)
    from warmgate.serve.server import Endpoint

    listener = socket.socket(fileno=listen_fd)
    endpoint = Endpoint(
        worker.surfaces.snapshot,
        worker.metrics_text,
        liveness=worker.liveness,
        report=lambda line: log.event("endpoint", line),
    )
    port = endpoint.start(listener)
    log.event(
        "listening",
        f"serving /readyz, /status and /metrics on port {port}",
        host=listener.getsockname()[0],
        port=port,
    )
    if started is not None:
        log.event("start", f"warmgate {__version__} {started}", mode="run")
    try:
        code = worker.run()
    finally:
        endpoint.stop()
        log.close()
    sys.exit(code)


def wall_clock(
    clock: Callable[[], float], wall: Callable[[], float] = time.time
) -> Callable[[float], float]:
    """A function from ``clock``'s readings to wall-clock seconds, fixed at the call."""
    offset = wall() - clock()
    return lambda reading: offset + reading
