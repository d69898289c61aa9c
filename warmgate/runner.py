"""The lifecycle: wait for the target, prime it until the gate opens, then watch it.

One asyncio loop runs everything here (the endpoint has its own thread, see ``server.py``)::

    waiting --(target answers)--> warming --(gate opens)--> ready
       ^            |                  |--(deadline, on_timeout: fail)--> failed
       |            '--(deadline)--> ready (opened on timeout) or failed
       '----(run: target stopped answering for rearm_after: re-arm)-------'

``prime`` stops at the first outcome; ``run`` keeps serving, optionally trickles keep-warm
traffic, and re-arms when the target stops answering (a restarted app is a cold app). Signal
handlers only set the ``stop`` event; the loops notice it within one tick, and shutdown has a
bounded grace period.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any, Literal, Protocol

from warmgate.config import Config
from warmgate.controller import Controller
from warmgate.drivers.http import UrlProbe, make_client
from warmgate.gate import FAILED_CLOSED, OPENED_ON_TIMEOUT, Thresholds, Verdict
from warmgate.load import Load
from warmgate.logs import Log
from warmgate.metrics import Metrics
from warmgate.report import Point, Record, Recorder
from warmgate.status import FAILED, READY, WAITING, WARMING, Status, StatusDir
from warmgate.targets import CompiledTarget, open_drivers
from warmgate.units import format_duration
from warmgate.window import Sample, Stats

TICK = 0.25
"""Seconds between evaluations of the gate while warming."""
FILE_INTERVAL = 1.0
"""At most one status file write per this many seconds, unless the state changes."""

Mode = Literal["run", "prime"]


class Probe(Protocol):
    """Anything that can tell whether a target accepts connections."""

    async def probe(self) -> str | None:
        """``None`` when up, else why not."""
        ...


def thresholds_of(config: Config) -> Thresholds:
    """The pure core's view of the gate configuration."""
    gate = config.gate
    return Thresholds(
        success_rate=gate.success_rate,
        p50=gate.p50,
        p95=None if gate.p95 == "auto" else gate.p95,
        p99=gate.p99,
        plateau=gate.p95 == "auto",
        plateau_tolerance=gate.plateau_tolerance,
        min_requests=gate.min_requests,
        window=gate.window,
        hold=gate.hold,
        timeout=gate.timeout,
        fail_closed=gate.on_timeout == "fail",
    )


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; ``True`` as soon as ``stop`` is set."""
    if stop.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()
    except TimeoutError:
        return False
    return True


class Runner:
    """Drives one warmgate process: wait, warm, publish, watch."""

    def __init__(
        self,
        config: Config,
        compiled: Sequence[CompiledTarget],
        *,
        mode: Mode,
        metrics: Metrics,
        log: Log,
        status_dir: StatusDir | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.compiled = compiled
        self.mode = mode
        self.metrics = metrics
        self.log = log
        self.status_dir = status_dir
        self._clock = clock
        self._wall_offset = wall() - clock()
        names = tuple(item.target.name for item in compiled)
        self.controller = Controller(
            thresholds_of(config), config.load.concurrency, names, config.load.ramp_step
        )
        self._started = clock()
        self._phase_started = self._started
        self._ready_at: float | None = None
        self._last_write = float("-inf")
        self._rearms = 0
        self._load: Load | None = None
        self._probes: list[Probe] = []
        self._warming = False
        self.recorder = self._new_recorder()
        self.record: Record | None = None
        self.status = Status(
            state=WAITING,
            ready=False,
            reason="starting",
            started_at=self._wall(self._started),
            updated_at=self._wall(self._started),
            phase_started_at=self._wall(self._started),
            target_level=config.load.concurrency,
            hold_required_s=config.gate.hold,
            timeout_s=config.gate.timeout,
        )

    def _new_recorder(self) -> Recorder:
        gate = self.config.gate
        limits = {"success_rate": f"{gate.success_rate:g}"}
        for name in ("p50", "p95", "p99"):
            value = getattr(gate, name)
            if value is not None:
                limits[name] = value if isinstance(value, str) else format_duration(value)
        names = tuple(item.target.name for item in self.compiled)
        return Recorder(names, self.config.load.concurrency, limits, gate.timeout)

    def _since_start(self) -> float:
        return self._clock() - self._started

    def snapshot(self) -> tuple[bool, str, dict[str, Any]]:
        """``(ready, reason, status JSON)`` for the endpoint thread."""
        status = self.status
        return status.ready, status.reason, status.to_json()

    def _wall(self, monotonic: float) -> float:
        return self._wall_offset + monotonic

    async def run(self, stop: asyncio.Event) -> Status:
        """Run until ``prime`` reaches an outcome or ``stop`` is set; returns the last status."""
        async with AsyncExitStack() as stack:
            drivers = await open_drivers(self.config, self.compiled, stack)
            self._probes = list(drivers)
            if self.config.wait.url is not None:
                tls = self.config.wait.url.startswith("https")
                client = make_client(1, self.config.traffic, tls)
                stack.push_async_callback(client.aclose)
                self._probes = [UrlProbe(self.config.wait.url, client)]
            weights = [item.target.weight for item in self.compiled]
            load = Load(drivers, weights, self.config.load.concurrency, self._record)
            self._load = load
            load.start()
            stack.push_async_callback(load.stop)
            await self._lifecycle(stop, load)
        return self.status

    async def _lifecycle(self, stop: asyncio.Event, load: Load) -> None:
        while not stop.is_set():
            down = await self._wait(stop)
            if stop.is_set():
                break
            if down is not None:
                await self._give_up(
                    f"the target did not answer within "
                    f"{format_duration(self.config.wait.timeout)}: {down}"
                )
            else:
                jitter = random.uniform(0, self.config.load.jitter)
                if jitter and await sleep_or_stop(stop, jitter):
                    break
                verdict = await self._warm(stop, load)
                if verdict is None:
                    break
            if self.mode == "prime":
                return
            if not await self._watch(stop, load):
                break
            self._rearms += 1
            self.metrics.rearms.inc()

    async def _probe_all(self) -> str | None:
        results = await asyncio.gather(*(probe.probe() for probe in self._probes))
        return next((reason for reason in results if reason), None)

    async def _wait(self, stop: asyncio.Event) -> str | None:
        """Until every target accepts connections: ``None``, or the last reason at the deadline."""
        wait = self.config.wait
        start = self._clock()
        deadline = start + wait.timeout
        backoff = wait.initial_backoff
        await self._publish(WAITING, "waiting for the target to answer", phase_start=True)
        while True:
            down = await self._probe_all()
            if down is None:
                self.recorder.up(self._since_start())
                self.log.event(
                    "up",
                    "the target answers; priming starts",
                    waited_s=round(self._clock() - start, 3),
                )
                return None
            await self._publish(WAITING, f"waiting for the target to answer: {down}")
            remaining = deadline - self._clock()
            if remaining <= 0:
                return down
            if await sleep_or_stop(stop, min(backoff, remaining)):
                return None
            backoff = min(backoff * 2, wait.max_backoff)

    def _rate_at(self, level: int) -> float | None:
        rate = self.config.load.rate
        return None if rate is None else rate * level / self.config.load.concurrency

    async def _warm(self, stop: asyncio.Event, load: Load) -> Verdict | None:
        """Prime until the gate reaches an outcome; ``None`` if stopped first."""
        controller = self.controller
        controller.start(self._clock())
        self._warming = True
        load.configure(controller.level, self._rate_at(controller.level))
        await self._publish(WARMING, "priming has started at concurrency 1", phase_start=True)
        try:
            while True:
                if await sleep_or_stop(stop, TICK):
                    return None
                step, verdict = controller.tick(self._clock())
                if step.changed:
                    load.configure(step.level, self._rate_at(step.level))
                    self.log.event("ramp", step.reason, level=step.level, previous=step.previous)
                self._remember(verdict)
                if verdict.done:
                    await self._finish(verdict)
                    return verdict
                await self._publish(WARMING, verdict.reason, verdict)
        finally:
            self._warming = False
            load.configure(0)

    def _remember(self, verdict: Verdict) -> None:
        """Add the last second of requests, at any level, to the warm-up record."""
        now = self._clock()
        recent = self.controller.window.stats(now, since=now - 1.0)
        point = Point(
            round(now - self._started, 3),
            WARMING,
            verdict.level,
            recent.requests,
            recent.success_ratio,
            recent.p50,
            recent.p95,
            recent.p99,
        )
        self.recorder.evaluation(point, verdict.passing)

    async def _save_record(self, outcome: str | None, reason: str) -> None:
        record = self.recorder.finish(self._since_start(), outcome, self.log.secrets.redact(reason))
        self.record = record
        if self.status_dir is not None:
            await asyncio.to_thread(self.status_dir.write_report, record.to_json())

    async def _finish(self, verdict: Verdict) -> None:
        if verdict.outcome == OPENED_ON_TIMEOUT:
            self.log.event("timeout", verdict.reason, outcome=verdict.outcome)
        state = FAILED if verdict.outcome == FAILED_CLOSED else READY
        if verdict.ready:
            self._ready_at = self._clock()
        await self._publish(
            state, verdict.reason, verdict, outcome=verdict.outcome, phase_start=True
        )
        await self._save_record(verdict.outcome, verdict.reason)

    async def _give_up(self, reason: str) -> None:
        """The wait deadline passed: open or fail as ``on_timeout`` says."""
        fail = self.config.gate.on_timeout == "fail"
        outcome = FAILED_CLOSED if fail else OPENED_ON_TIMEOUT
        verb = "failed closed" if fail else "opened anyway"
        if not fail:
            self._ready_at = self._clock()
        await self._publish(
            FAILED if fail else READY, f"{verb}: {reason}", outcome=outcome, phase_start=True
        )
        await self._save_record(outcome, self.status.reason)

    async def _watch(self, stop: asyncio.Event, load: Load) -> bool:
        """After the outcome (``run``): keep warm, and ``True`` when it is time to re-arm."""
        after = self.config.after_ready
        if after.keep_warm_rate and self.status.ready:
            load.configure(1, after.keep_warm_rate)
        interval = min(1.0, after.rearm_after / 4) if after.rearm_after else 1.0
        down_since: float | None = None
        try:
            while not await sleep_or_stop(stop, interval):
                if not after.rearm_after:
                    continue
                down = await self._probe_all()
                now = self._clock()
                if down is None:
                    down_since = None
                    continue
                down_since = now if down_since is None else down_since
                if now - down_since >= after.rearm_after:
                    self.log.event(
                        "rearm",
                        f"re-arming: the target stopped answering for "
                        f"{format_duration(after.rearm_after)} ({down}); a restarted app is "
                        "a cold app",
                    )
                    self._ready_at = None
                    self.recorder = self._new_recorder()
                    return True
            return False
        finally:
            load.configure(0)

    def _record(self, sample: Sample) -> None:
        self.controller.record(sample)
        self.metrics.observe(sample)
        if self._warming:
            self.recorder.sample(sample.target, sample.latency, sample.ok)

    async def _publish(
        self,
        state: str,
        reason: str,
        verdict: Verdict | None = None,
        *,
        outcome: str | None = None,
        phase_start: bool = False,
        force_write: bool = False,
    ) -> None:
        """Make a new snapshot and push it to every surface (endpoint, metrics, file, log)."""
        now = self._clock()
        if phase_start:
            self._phase_started = now
        previous = self.status
        window = verdict.window if verdict is not None else Stats()
        status = Status(
            state=state,
            ready=state == READY,
            reason=self.log.secrets.redact(reason),
            started_at=self._wall(self._started),
            updated_at=self._wall(now),
            phase_started_at=self._wall(self._phase_started),
            outcome=outcome
            if outcome is not None
            else (previous.outcome if state == previous.state else None),
            ready_at=None if self._ready_at is None else self._wall(self._ready_at),
            level=self._load.level if self._load is not None else 0,
            target_level=self.config.load.concurrency,
            window=window.as_dict(),
            targets={
                name: stats.as_dict()
                for name, stats in (verdict.targets.items() if verdict is not None else ())
            },
            hold_required_s=self.config.gate.hold,
            hold_passing_s=verdict.held_for if verdict is not None else 0.0,
            timeout_s=self.config.gate.timeout,
            rearms=self._rearms,
            elapsed_s=verdict.elapsed if verdict is not None else 0.0,
            checks=tuple(
                {"name": c.name, "passed": c.passed, "actual": c.actual, "limit": c.limit}
                for c in (verdict.checks if verdict is not None else ())
            ),
        )
        await self._push(status, force_write=force_write)

    async def _push(self, status: Status, *, force_write: bool = False) -> None:
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
            await asyncio.to_thread(self.status_dir.write, status)

    async def stopped(self, why: str) -> None:
        """Write the final status after a signal: ``prime`` that was not warm has failed."""
        status = self.status
        if self.mode == "prime" and not status.ready:
            await self._publish(
                FAILED,
                f"stopped by {why} before the target was warm",
                outcome=FAILED_CLOSED,
                phase_start=True,
            )
        else:
            # Everything else stays as it was (window, per-target stats); only the reason says so.
            final = replace(
                status,
                reason=f"{status.reason} (warmgate stopped by {why})",
                updated_at=self._wall(self._clock()),
            )
            await self._push(final, force_write=True)
        self.log.event("stop", f"stopped by {why}", state=self.status.state)
