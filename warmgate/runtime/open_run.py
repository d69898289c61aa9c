"""``warmgate run --optional-config-map NAME`` without its config file: run open, warm nothing.

Theory of operation: the admission webhook mounts a pod's ConfigMap with ``optional: true``, so
that a pod whose ConfigMap does not exist (yet) still starts: the kubelet mounts an empty
directory and the ``--config`` file is absent. A native sidecar that exited then would hold the
pod back (the app containers start only after the sidecar has started, and the sidecar's
readiness counts toward the pod's), leaving it worse off than with no gate at all. So instead
``run`` opens at once:

- one loud log line (event ``no_config``) naming the ConfigMap to create and its key;
- ``/readyz`` 200 and ``/livez`` 200, ``warmgate_ready 1``, and the status directory with the
  ``ready`` marker and a status whose reason starts ``no config:`` and whose outcome is
  :data:`NO_CONFIG`, renewed by the heartbeat like any ``run`` status;
- no warm-up, no primer, no watching of the app; nothing in this process exits on its own: only
  SIGTERM or SIGINT end it (exit 0, after a ``stopped`` status that withdraws readiness).

The config is read only at start, so a ConfigMap created later takes effect when the pod is
next created (``kubectl rollout restart``). Only *absence* opens: a config file that exists but
is wrong is still a mistake that exits 2, as everywhere else (see docs/kubernetes.md).

Like the ``run`` supervisor, the open process is small: :func:`open_if_missing` checks the
status directory and binds the port in the CLI process, then ``exec``\\ s into :func:`main`,
which imports only the standard library, prometheus_client and warmgate's small modules.
:func:`open_reason` and :func:`open_status` are the pure decisions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from warmgate.kernel.secrets import Secrets
from warmgate.serve.logs import Log
from warmgate.serve.status import READY, STOPPED, Status, StatusDir, iso_time, write_failure

NO_CONFIG = "no_config"
"""The status's ``outcome`` while ``run`` is open for want of a config."""
BEAT_INTERVAL = 1.0
"""Seconds between heartbeats (a ``run`` status is ready only while its heartbeat is fresh)."""


def open_reason(path: Path | None, exists: bool, config_map: str | None) -> str | None:
    """Why ``run`` opens without warming, or ``None`` to load the config as usual.

    ``exists``: whether ``path`` exists. Only a missing file of an optional ConfigMap opens.
    """
    if path is None or not config_map or exists:
        return None
    return (
        f"no config: {path} does not exist, so warmgate is ready without warming anything; "
        f"create the ConfigMap '{config_map}' with the key '{path.name}' in this pod's "
        "namespace, then restart the pod to warm it"
    )


def open_status(reason: str, now: float) -> Status:
    """The status ``run`` shows while open: ready at once, nothing measured."""
    return Status(
        state=READY,
        ready=True,
        reason=reason,
        started_at=now,
        updated_at=now,
        phase_started_at=now,
        armed_at=now,
        outcome=NO_CONFIG,
        ready_at=now,
        mode="run",
    )


def stopped_status(status: dict[str, Any], signal_name: str, now: float) -> dict[str, Any]:
    """The last status, once a signal has stopped the open process: not ready any more."""
    stamp = iso_time(now)
    return {
        **status,
        "state": STOPPED,
        "ready": False,
        "reason": f"stopped by {signal_name}; not vouching for the app any more",
        "updated_at": stamp,
        "phase_started_at": stamp,
    }


@dataclass(frozen=True, slots=True)
class OpenPlan:
    """What the open process needs, worked out by ``warmgate run`` before the ``exec``."""

    reason: str
    config_map: str
    listen_fd: int
    status_dir: str | None = None
    log_format: str = "auto"
    status: dict[str, Any] = field(default_factory=dict)
    early_signal: str | None = None

    def to_json(self) -> str:
        """The ``exec`` argument."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> OpenPlan:
        """Read the ``exec`` argument back."""
        return cls(**json.loads(text))


def open_if_missing(plan: dict[str, Any], config_map: str | None) -> None:
    """Return when ``run`` should load its config as usual; otherwise take the status directory
    and the port, and ``exec`` into :func:`main` (this returns only by raising)."""
    config = plan.get("config")
    path = Path(config) if config is not None else None
    reason = open_reason(path, path is not None and path.exists(), config_map)
    if reason is None or config_map is None:
        return
    from warmgate.config.model import Config, ServerConfig
    from warmgate.runtime.signals import EARLY
    from warmgate.serve.server import listen

    keep: list[int] = []
    status_dir = plan.get("status_dir")
    if status_dir is not None:
        directory = StatusDir(Path(status_dir))
        directory.prepare()
        keep.append(directory.lock())
    server = ServerConfig()
    host, port = plan.get("host"), plan.get("port")  # port 0 is a choice: any free port
    listener = listen(server.host if host is None else host, server.port if port is None else port)
    keep.append(listener.fileno())
    log_format = plan.get("log_format") or Config.model_fields["log_format"].default
    opened = OpenPlan(
        reason=reason,
        config_map=config_map,
        listen_fd=listener.fileno(),
        status_dir=str(status_dir) if status_dir is not None else None,
        log_format=str(log_format),
        status=open_status(reason, time.time()).to_json(),
        early_signal=EARLY[0] if EARLY else None,
    )
    for fd in keep:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "warmgate.runtime.open_run", opened.to_json()])  # noqa: S606 - our own module, no shell


class _Open:
    """The open process's one status, served from memory and kept in the status directory."""

    def __init__(self, plan: OpenPlan, log: Log) -> None:
        self.log = log
        self.status = plan.status
        self.directory = StatusDir(Path(plan.status_dir)) if plan.status_dir else None
        self._error: str | None = None

    def snapshot(self) -> tuple[bool, str, dict[str, Any]]:
        status = self.status
        return bool(status["ready"]), str(status["reason"]), status

    def metrics_text(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        from warmgate.serve.metrics import StatusCollector

        registry = CollectorRegistry(auto_describe=False)
        ready, _, status = self.snapshot()
        registry.register(StatusCollector(lambda: (ready, status)))
        return generate_latest(registry)

    def beat(self) -> None:
        if self.directory is not None:
            self._guarded(self.directory.beat)

    def write(self) -> None:
        directory, status = self.directory, self.status
        if directory is not None:
            self._guarded(lambda: directory.write_json(status))

    def _guarded(self, write: Any) -> None:
        """A status directory that cannot be written costs a log line, never the process."""
        try:
            write()
        except OSError as exc:
            error, sentence = write_failure(self.directory and self.directory.path, exc)
            if error != self._error:
                self.log.event("status_write_failed", sentence)
            self._error = error
        else:
            self._error = None


def main() -> None:
    """``python -m warmgate.runtime.open_run PLAN``: what ``warmgate run`` ``exec``\\ s into when
    open."""
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plan = OpenPlan.from_json(sys.argv[1])
    if plan.early_signal:
        received.append(plan.early_signal)
        stop.set()
    log = Log.for_format(plan.log_format, Secrets())
    state = _Open(plan, log)
    state.beat()
    state.write()  # ready reaches the directory before the endpoint
    log.event("no_config", plan.reason, config_map=plan.config_map, ready=True, outcome=NO_CONFIG)
    from warmgate.serve.server import Endpoint

    listener = socket.socket(fileno=plan.listen_fd)
    endpoint = Endpoint(
        state.snapshot, state.metrics_text, report=lambda line: log.event("endpoint", line)
    )
    port = endpoint.start(listener)
    log.event("listening", f"serving /readyz, /status and /metrics on port {port}", port=port)
    try:
        while not stop.wait(BEAT_INTERVAL):
            state.beat()
        # Not ready reaches the endpoint before the directory.
        state.status = stopped_status(state.status, received[0], time.time())
        state.write()
        log.event("stop", f"stopped by {received[0]}", state=STOPPED)
    finally:
        endpoint.stop()
        log.close()


if __name__ == "__main__":
    main()
