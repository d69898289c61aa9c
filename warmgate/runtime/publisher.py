"""Publishing: one status snapshot at a time, pushed to every surface.

The warm-up (``warmup.py``) decides; the :class:`Publisher` turns a decision (state, reason,
verdict, level) into an immutable :class:`~warmgate.serve.status.Status` and makes it current
everywhere: the metrics mirror it, the log gets a line on every phase change and throttled progress
otherwise, and the
*sink* receives it — the status directory for ``prime``, or the :class:`Uplink` to the ``run``
supervisor, which serves it and writes the directory itself.

Sink writes block, so they run on one dedicated thread, in the order they were made: a write
abandoned by a cancelled task can never land after the final one. A sink that stops accepting
writes (a status directory deleted, full, read-only) is logged once and does not stop the gate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from warmgate.config.model import Config
from warmgate.decide.gate import Verdict
from warmgate.decide.window import Stats
from warmgate.runtime.shell import WriteFailures
from warmgate.serve.logs import Log
from warmgate.serve.metrics import Metrics
from warmgate.serve.status import WAITING, Status


class Sink(Protocol):
    """Where a primer's statuses and warm-up record go."""

    interval: float
    """At most one write per this many seconds, unless the state changes."""

    def write(self, status: Status) -> None:
        """Make ``status`` the current one."""
        ...

    def write_report(self, record: dict[str, Any]) -> None:
        """Keep the warm-up record."""
        ...


class Uplink:
    """A primer's line to its ``run`` supervisor: one JSON object per line on a pipe.

    ``{"status": …, "metrics": "…"}`` for every status (the request counters ride along at
    most once a second, and always with a final one), ``{"report": …}`` for the record.
    """

    interval = 0.0
    METRICS_INTERVAL = 1.0

    def __init__(self, fd: int, metrics: Metrics, clock: Callable[[], float] = time.monotonic):
        self._fd = fd
        self._metrics = metrics
        self._clock = clock
        self._metrics_sent = float("-inf")

    def write(self, status: Status) -> None:
        """Send ``status``, and the traffic metrics when due."""
        message: dict[str, Any] = {"status": status.to_json()}
        now = self._clock()
        if status.outcome is not None or now - self._metrics_sent >= self.METRICS_INTERVAL:
            self._metrics_sent = now
            message["metrics"] = self._metrics.traffic_text().decode()
        self._send(message)

    def write_report(self, record: dict[str, Any]) -> None:
        """Send the warm-up record."""
        self._send({"report": record})

    def beat(self) -> None:
        """Say "still here": a primer whose loop hangs stops saying it, and is replaced."""
        self._send({"beat": True})

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


class Publisher:
    """Keeps the current status and pushes every new one to the surfaces."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        log: Log,
        sink: Sink | None,
        *,
        mode: str = "prime",
        rearms: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        writer: concurrent.futures.Executor | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.log = log
        self.sink = sink
        self._clock = clock
        self._wall_offset = wall() - clock()
        self.started = clock()
        self.phase_started = self.started
        self.ready_at: float | None = None
        self._last_write = float("-inf")
        self._failures = WriteFailures(log, getattr(sink, "path", "the supervisor"))
        self.status_written = True
        """Whether the last status handed to the sink got there."""
        self._writer = writer or concurrent.futures.ThreadPoolExecutor(1, "warmgate-status")
        """Runs the sink's writes one at a time, in order: a thread of its own unless given."""
        self.status = Status(
            state=WAITING,
            ready=False,
            reason="starting",
            started_at=self.wall(self.started),
            updated_at=self.wall(self.started),
            phase_started_at=self.wall(self.started),
            armed_at=self.wall(self.started),
            target_level=config.load.concurrency,
            hold_required_s=config.gate.hold,
            timeout_s=config.gate.timeout,
            rearms=rearms,
            mode=mode,
        )

    def wall(self, monotonic: float) -> float:
        """Wall-clock seconds for a monotonic reading."""
        return self._wall_offset + monotonic

    async def publish(
        self,
        state: str,
        ready: bool,
        reason: str,
        verdict: Verdict | None = None,
        *,
        level: int = 0,
        answered: bool = False,
        outcome: str | None = None,
        phase_start: bool = False,
    ) -> None:
        """Make a new snapshot from a decision and push it to every surface.

        ``state`` and ``ready`` are the lifecycle's (:meth:`Lifecycle.public`): decided there,
        only carried here.
        """
        now = self._clock()
        if phase_start:
            self.phase_started = now
        if ready and self.ready_at is None:
            self.ready_at = now
        previous = self.status
        window = verdict.window if verdict is not None else Stats()
        if outcome is None and state == previous.state:
            outcome = previous.outcome
        status = replace(
            previous,
            state=state,
            ready=ready,
            reason=self.log.secrets.redact(reason),
            updated_at=self.wall(now),
            phase_started_at=self.wall(self.phase_started),
            outcome=outcome,
            ready_at=None if self.ready_at is None else self.wall(self.ready_at),
            level=level,
            window=window.as_dict(),
            targets={
                name: stats.as_dict()
                for name, stats in (verdict.targets.items() if verdict is not None else ())
            },
            hold_passing_s=verdict.held_for if verdict is not None else 0.0,
            elapsed_s=verdict.elapsed if verdict is not None else 0.0,
            checks=tuple(
                {"name": c.name, "passed": c.passed, "actual": c.actual, "limit": c.limit}
                for c in (verdict.checks if verdict is not None else ())
            ),
            target_answered=answered,
        )
        await self.push(status)

    async def push(self, status: Status, *, force_write: bool = False) -> None:
        """Make ``status`` current on every surface: metrics, log, sink."""
        now = self._clock()
        previous = self.status
        self.status = status
        self.metrics.publish(status)
        changed = status.state != previous.state or status.ready != previous.ready
        if changed:
            self.log.event(
                "phase",
                status.reason,
                state=status.state,
                ready=status.ready,
                outcome=status.outcome,
            )
        else:
            self.log.progress(status)
        if self.sink is None:
            return
        due = changed or force_write or now - self._last_write >= self.sink.interval
        if due:
            self._last_write = now
            await self._write(self.sink.write, status)
            self.status_written = self._failures.error is None

    async def beat(self) -> None:
        """A heartbeat to the supervisor, when the sink is the :class:`Uplink`."""
        sink = self.sink
        if isinstance(sink, Uplink):
            await self._write(lambda _: sink.beat(), None)

    async def write_report(self, record: dict[str, Any]) -> None:
        """Hand the warm-up record to the sink, if there is one."""
        if self.sink is not None:
            await self._write(self.sink.write_report, record)

    async def _write(self, write: Callable[[Any], None], data: Any) -> None:
        """Write on the writer thread, in order; a failure is logged once, never fatal."""
        future = self._writer.submit(write, data)
        try:
            # Shielded: a cancelled caller stops waiting, the write still lands in its turn.
            await asyncio.shield(asyncio.wrap_future(future))
        except OSError as exc:
            self._failures.failed(exc)
        else:
            self._failures.error = None

    @property
    def write_error(self) -> str | None:
        """Why the last write to the sink failed, or ``None``."""
        return self._failures.error

    def close(self) -> None:
        """Wait for every write already made to land."""
        self._writer.shutdown(wait=True)
