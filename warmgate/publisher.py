"""Publishing: one status snapshot at a time, pushed to every surface.

The runner decides; the :class:`Publisher` turns a decision (state, reason, verdict) into an
immutable :class:`~warmgate.status.Status` and makes it current everywhere: the endpoint reads
``publisher.status`` (a reference swap, safe across threads), the metrics mirror it, the log
gets a line on every phase change and throttled progress otherwise, and the status directory is
rewritten on every phase change and at most once a second in between. A status directory that
stops accepting writes (deleted, full, read-only) is logged once and does not stop the gate:
the endpoint and metrics keep telling the truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from warmgate.config import Config
from warmgate.gate import Verdict
from warmgate.logs import Log
from warmgate.metrics import Metrics
from warmgate.status import READY, WAITING, Status, StatusDir
from warmgate.window import Stats

FILE_INTERVAL = 1.0
"""At most one status file write per this many seconds, unless the state changes."""


class Publisher:
    """Keeps the current status and pushes every new one to the surfaces."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        log: Log,
        status_dir: StatusDir | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.log = log
        self.status_dir = status_dir
        self._clock = clock
        self._wall_offset = wall() - clock()
        self.started = clock()
        self.armed = self.started
        self.phase_started = self.started
        self.ready_at: float | None = None
        self.level = 0
        self.rearms = 0
        self._last_write = float("-inf")
        self._write_error: str | None = None
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
        )

    def wall(self, monotonic: float) -> float:
        """Wall-clock seconds for a monotonic reading."""
        return self._wall_offset + monotonic

    def snapshot(self) -> tuple[bool, str, dict[str, Any]]:
        """``(ready, reason, status JSON)`` for the endpoint thread."""
        status = self.status
        return status.ready, status.reason, status.to_json()

    def arm(self) -> None:
        """A new warm-up begins (at start, and on every re-arm)."""
        self.armed = self._clock()
        self.ready_at = None

    async def publish(
        self,
        state: str,
        reason: str,
        verdict: Verdict | None = None,
        *,
        outcome: str | None = None,
        phase_start: bool = False,
    ) -> None:
        """Make a new snapshot from a decision and push it to every surface."""
        now = self._clock()
        if phase_start:
            self.phase_started = now
        if state == READY and self.ready_at is None:
            self.ready_at = now
        previous = self.status
        window = verdict.window if verdict is not None else Stats()
        if outcome is None and state == previous.state:
            outcome = previous.outcome
        status = Status(
            state=state,
            ready=state == READY,
            reason=self.log.secrets.redact(reason),
            started_at=self.wall(self.started),
            updated_at=self.wall(now),
            phase_started_at=self.wall(self.phase_started),
            armed_at=self.wall(self.armed),
            outcome=outcome,
            ready_at=None if self.ready_at is None else self.wall(self.ready_at),
            level=self.level,
            target_level=self.config.load.concurrency,
            window=window.as_dict(),
            targets={
                name: stats.as_dict()
                for name, stats in (verdict.targets.items() if verdict is not None else ())
            },
            hold_required_s=self.config.gate.hold,
            hold_passing_s=verdict.held_for if verdict is not None else 0.0,
            timeout_s=self.config.gate.timeout,
            rearms=self.rearms,
            elapsed_s=verdict.elapsed if verdict is not None else 0.0,
            checks=tuple(
                {"name": c.name, "passed": c.passed, "actual": c.actual, "limit": c.limit}
                for c in (verdict.checks if verdict is not None else ())
            ),
        )
        await self.push(status)

    async def stopped(self, why: str, keep_ready: bool) -> None:
        """The final status after a signal: the same, saying so; ready only if ``keep_ready``."""
        status = self.status
        final = replace(
            status,
            ready=status.ready and keep_ready,
            reason=f"{status.reason} (warmgate stopped by {why})",
            updated_at=self.wall(self._clock()),
        )
        await self.push(final, force_write=True)

    async def push(self, status: Status, *, force_write: bool = False) -> None:
        """Make ``status`` current on every surface: endpoint, metrics, log, status file."""
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
        due = changed or force_write or now - self._last_write >= FILE_INTERVAL
        if self.status_dir is not None and due:
            self._last_write = now
            await self._write(self.status_dir.write, status)

    async def write_report(self, record: dict[str, Any]) -> None:
        """Write the warm-up record next to the status, if there is a status directory."""
        if self.status_dir is not None:
            await self._write(self.status_dir.write_report, record)

    async def _write(self, write: Callable[[Any], None], data: Any) -> None:
        """Write off the event loop; a failure is logged once and never stops the gate."""
        try:
            await asyncio.to_thread(write, data)
        except OSError as exc:
            error = exc.strerror or type(exc).__name__
            where = self.status_dir.path if self.status_dir is not None else "-"
            if error != self._write_error:
                self._write_error = error
                self.log.event(
                    "status_write_failed",
                    f"cannot write the status directory {where}: {error}; /readyz and "
                    "/metrics still tell the truth",
                )
        else:
            self._write_error = None
