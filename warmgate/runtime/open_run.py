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
which imports only the standard library, prometheus_client and warmgate's small modules, and
shares the supervisor's shell (``shell.py``). Its readiness is the lifecycle's: the machine
opens (``open``) and stops (``stop``) like any other. :func:`open_reason` is the pure decision.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from warmgate.decide.lifecycle import Event, Lifecycle, Policy
from warmgate.runtime.handover import OpenHandover
from warmgate.runtime.shell import BEAT_INTERVAL, Surfaces, serve_process, wall_clock
from warmgate.serve.logs import Log
from warmgate.serve.status import Status

NO_CONFIG = "no_config"
"""The status's ``outcome`` while ``run`` is open for want of a config."""


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
    """The status ``run`` shows while open, before the machine has opened: nothing measured."""
    return Status(
        state="waiting",
        ready=False,
        reason=reason,
        started_at=now,
        updated_at=now,
        phase_started_at=now,
        armed_at=now,
        outcome=NO_CONFIG,
        ready_at=now,
        mode="run",
    )


class OpenRun:
    """The open process: ready at once, until a signal; its one status served and kept."""

    def __init__(
        self,
        handover: OpenHandover,
        log: Log,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.handover = handover
        self.log = log
        self.machine = Lifecycle(Policy())
        self._clock = clock
        self._wall = wall_clock(clock, wall)
        directory = Path(handover.status_dir) if handover.status_dir else None
        self.surfaces = Surfaces(Status.from_json(handover.status), directory, log)
        self._stop = threading.Event()
        self._signal: str | None = None

    def liveness(self) -> tuple[bool, str]:
        """Alive: nothing here can stall but the process itself."""
        return True, "ok"

    def metrics_text(self) -> bytes:
        """The status gauges."""
        return self.surfaces.metrics_text()

    def request_stop(self, name: str) -> None:
        """Signal handlers call this: the process stops at once."""
        self._signal = self._signal or name
        self._stop.set()

    def open(self) -> None:
        """Open: ready reaches the directory before the endpoint, and the log says why."""
        self.machine.handle(Event.OPEN, self._clock())
        self.surfaces.beat()
        self._show()
        self.log.event(
            "no_config", self.handover.reason, config_map=self.handover.config_map, ready=True,
            outcome=NO_CONFIG,
        )  # fmt: skip

    def run(self) -> int:
        """Renew the heartbeat until a signal; then withdraw readiness (exit 0)."""
        while not self._stop.wait(BEAT_INTERVAL):
            self.surfaces.beat()
        self.machine.handle(Event.STOP, self._clock())
        stamp = self._wall(self._clock())
        reason = f"stopped by {self._signal}; not vouching for the app any more"
        self._show(reason=reason, updated_at=stamp, phase_started_at=stamp)
        self.log.event("stop", f"stopped by {self._signal}", state=self.surfaces.status.state)
        return 0

    def _show(self, **changes: Any) -> None:
        state, ready = self.machine.public()
        status = replace(self.surfaces.status, state=state, ready=ready, **changes)
        self.surfaces.show(status, self._clock(), force=True)


def main() -> None:
    """``python -m warmgate.runtime.open_run HANDOVER``: what ``warmgate run`` ``exec``\\ s
    into when open."""
    handover = OpenHandover.from_json(sys.argv[1])

    def make(log: Log) -> OpenRun:
        worker = OpenRun(handover, log)
        worker.open()
        return worker

    serve_process(handover.listen_fd, handover.log_format, handover.early_signal, make)


if __name__ == "__main__":
    main()
