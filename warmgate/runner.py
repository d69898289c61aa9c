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
from typing import Any, Literal, Protocol

from warmgate.config import Config
from warmgate.controller import Controller
from warmgate.drivers.http import UrlProbe, make_client
from warmgate.gate import FAILED_CLOSED, OPENED_ON_TIMEOUT, Thresholds, Verdict, thresholds_text
from warmgate.load import Load
from warmgate.logs import Log
from warmgate.metrics import Metrics
from warmgate.publisher import Publisher
from warmgate.report import Point, Record, Recorder
from warmgate.status import FAILED, READY, WAITING, WARMING, Status, StatusDir
from warmgate.targets import CompiledTarget, open_drivers
from warmgate.units import format_duration
from warmgate.window import Sample

TICK = 0.25
"""Seconds between evaluations of the gate while warming."""
LOST_AFTER = 5.0
"""Seconds of nothing but connection errors that send warming back to waiting, if
``rearm_after`` is 0."""

Mode = Literal["run", "prime"]

# Why _watch ends: time to prime again, or stop.
REARM, STOP = True, False


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
    """Drives one warmgate process: wait, warm, watch; the publisher tells the world."""

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
        self._clock = clock
        self.publisher = Publisher(config, metrics, log, status_dir, clock=clock, wall=wall)
        names = tuple(item.target.name for item in compiled)
        self.controller = Controller(
            thresholds_of(config),
            config.load.concurrency,
            names,
            config.load.ramp_step,
            config.load.rate,
            weights=[item.target.weight for item in compiled],
        )
        self._probes: list[Probe] = []
        self._warming = False
        self.recorder = self._new_recorder()
        self.record: Record | None = None

    @property
    def status(self) -> Status:
        """The current status snapshot."""
        return self.publisher.status

    def snapshot(self) -> tuple[bool, str, dict[str, Any]]:
        """``(ready, reason, status JSON)`` for the endpoint thread."""
        return self.publisher.snapshot()

    def _new_recorder(self) -> Recorder:
        gate = self.controller.gate
        limits = {"success_rate": f"{gate.thresholds.success_rate:g}"}
        limits.update(thresholds_text(gate.thresholds))
        return Recorder(gate.targets, gate.target_level, limits, gate.thresholds.timeout)

    def _since_start(self) -> float:
        return self._clock() - self.publisher.started

    async def run(self, stop: asyncio.Event) -> Status:
        """Run until ``prime`` reaches an outcome or ``stop`` is set; returns the last status."""
        async with AsyncExitStack() as stack:
            drivers = await open_drivers(self.config, self.compiled, stack)
            self._probes = list(drivers)
            if self.config.wait.url is not None:
                tls = self.config.wait.url.startswith("https")
                client = make_client(1, self.config.traffic, tls)
                stack.push_async_callback(client.aclose)
                # wait.url stands for the HTTP targets; other kinds still probe themselves.
                others = [d for d, c in zip(drivers, self.compiled, strict=True) if c.http is None]
                self._probes = [UrlProbe(self.config.wait.url, client), *others]
            weights = [item.target.weight for item in self.compiled]
            load = Load(
                drivers,
                weights,
                self.config.load.concurrency,
                self._record,
                caps=[item.target.rate for item in self.compiled],
                on_crash=self._crash,
            )
            load.start()
            stack.push_async_callback(load.stop)
            await self._lifecycle(stop, load)
        return self.status

    async def _lifecycle(self, stop: asyncio.Event, load: Load) -> None:
        while not stop.is_set():
            self.publisher.arm()
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
                if jitter:
                    reason = f"waiting {format_duration(jitter)} before priming (jitter)"
                    await self.publisher.publish(WAITING, reason)
                    if await sleep_or_stop(stop, jitter):
                        break
                verdict = await self._warm(stop, load)
                if verdict is None:
                    if stop.is_set():
                        break
                    continue  # the target went away while warming: wait for it again
            if self.mode == "prime":
                return
            if await self._watch(stop, load, answered=down is None) is STOP:
                break
            self.publisher.rearms += 1
            self.metrics.rearms.inc()
            self.recorder = self._new_recorder()

    async def _probe_all(self) -> str | None:
        results = await asyncio.gather(*(probe.probe() for probe in self._probes))
        return next((reason for reason in results if reason), None)

    async def _wait(self, stop: asyncio.Event) -> str | None:
        """Until every target accepts connections: ``None``, or the last reason at the deadline."""
        wait = self.config.wait
        start = self._clock()
        deadline = start + wait.timeout
        backoff = wait.initial_backoff
        await self.publisher.publish(WAITING, "waiting for the target to answer", phase_start=True)
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
            await self.publisher.publish(WAITING, f"waiting for the target to answer: {down}")
            remaining = deadline - self._clock()
            if remaining <= 0:
                return down
            if await sleep_or_stop(stop, min(backoff, remaining)):
                return None
            backoff = min(backoff * 2, wait.max_backoff)

    def _rate_at(self, level: int) -> float | None:
        rate = self.config.load.rate
        return None if rate is None else rate * level / self.config.load.concurrency

    def _configure(self, load: Load, level: int, rate: float | None) -> None:
        load.configure(level, rate)
        self.publisher.level = load.level

    async def _warm(self, stop: asyncio.Event, load: Load) -> Verdict | None:
        """Prime until the gate reaches an outcome; ``None`` if stopped or the target went away."""
        controller = self.controller
        controller.start(self._clock())
        self._warming = True
        self._configure(load, controller.level, self._rate_at(controller.level))
        await self.publisher.publish(
            WARMING, "priming has started at concurrency 1", phase_start=True
        )
        lost_after = self.config.after_ready.rearm_after or LOST_AFTER
        try:
            while True:
                if await sleep_or_stop(stop, TICK):
                    return None
                now = self._clock()
                step, verdict = controller.tick(now, load.open_requests())
                if step.changed:
                    self._configure(load, step.level, self._rate_at(step.level))
                    self.log.event("ramp", step.reason, level=step.level, previous=step.previous)
                self._remember(verdict)
                if verdict.done:
                    await self._finish(verdict)
                    return verdict
                if now - controller.started_at >= lost_after and self._lost(now, lost_after):
                    self.log.event(
                        "lost",
                        f"the target answered nothing but connection errors for "
                        f"{format_duration(lost_after)}; waiting for it again",
                    )
                    return None
                await self.publisher.publish(WARMING, verdict.reason, verdict)
        finally:
            self._warming = False
            self._configure(load, 0, None)

    def _lost(self, now: float, seconds: float) -> bool:
        """Whether every request of the last ``seconds`` failed to connect."""
        recent = self.controller.window.stats(now, since=now - seconds)
        return bool(recent.requests) and recent.outcomes.get("connection_error") == recent.requests

    def _remember(self, verdict: Verdict) -> None:
        """Add the last second of requests, at any level, to the warm-up record."""
        now = self._clock()
        recent = self.controller.window.stats(now, since=now - 1.0)
        point = Point(
            round(now - self.publisher.started, 3),
            WARMING,
            verdict.level,
            recent.requests,
            recent.success_ratio,
            recent.p50,
            recent.p95,
            recent.p99,
        )
        self.recorder.evaluation(point, verdict.passing, verdict.window)

    async def _save_record(self, outcome: str | None, reason: str) -> None:
        record = self.recorder.finish(self._since_start(), outcome, self.log.secrets.redact(reason))
        self.record = record
        await self.publisher.write_report(record.to_json())

    async def _finish(self, verdict: Verdict) -> None:
        if verdict.outcome == OPENED_ON_TIMEOUT:
            self.log.event("timeout", verdict.reason, outcome=verdict.outcome)
        state = FAILED if verdict.outcome == FAILED_CLOSED else READY
        await self.publisher.publish(
            state, verdict.reason, verdict, outcome=verdict.outcome, phase_start=True
        )
        await self._save_record(verdict.outcome, verdict.reason)

    async def _give_up(self, reason: str) -> None:
        """The wait deadline passed: open or fail as ``on_timeout`` says."""
        fail = self.config.gate.on_timeout == "fail"
        outcome = FAILED_CLOSED if fail else OPENED_ON_TIMEOUT
        verb = "failed closed" if fail else "opened anyway"
        await self.publisher.publish(
            FAILED if fail else READY, f"{verb}: {reason}", outcome=outcome, phase_start=True
        )
        await self._save_record(outcome, self.status.reason)

    async def _watch(self, stop: asyncio.Event, load: Load, *, answered: bool) -> bool:
        """After the outcome (``run``): keep warm, and say when to prime again (``REARM``).

        ``answered`` is whether the target answered at all before the outcome.
        """
        after = self.config.after_ready
        if after.keep_warm_rate and self.status.ready and answered:
            self._configure(load, 1, after.keep_warm_rate)
        interval = min(1.0, after.rearm_after / 4) if after.rearm_after else 1.0
        retry_at = (
            self._clock() + after.retry_after
            if self.status.state == FAILED and answered and after.retry_after
            else None
        )
        down_since: float | None = None
        try:
            while not await sleep_or_stop(stop, interval):
                now = self._clock()
                if retry_at is not None and now >= retry_at:
                    return self._rearm(
                        f"priming again {format_duration(after.retry_after)} after failing closed"
                    )
                if not answered:
                    if await self._probe_all() is None:
                        return self._rearm("the target answers at last; it is cold")
                    continue
                if not after.rearm_after:
                    continue
                down = await self._probe_all()
                if down is None:
                    down_since = None
                    continue
                down_since = now if down_since is None else down_since
                if now - down_since >= after.rearm_after:
                    return self._rearm(
                        f"the target stopped answering for {format_duration(after.rearm_after)} "
                        f"({down}); a restarted app is a cold app"
                    )
            return STOP
        finally:
            self._configure(load, 0, None)

    def _rearm(self, why: str) -> bool:
        self.log.event("rearm", f"re-arming: {why}")
        return REARM

    def _record(self, sample: Sample) -> None:
        self.metrics.observe(sample)
        if self._warming:
            self.controller.record(sample)
            self.recorder.sample(sample.target, sample.latency, sample.ok)

    def _crash(self, target: str, exc: BaseException) -> None:
        """A driver raised instead of returning an outcome: say so once per kind of error."""
        self.log.event(
            "driver_error",
            f"target '{target}': unexpected {type(exc).__name__}: {exc}; counted as an error",
            target=target,
        )

    async def stopped(self, why: str) -> None:
        """Write the final status after a signal.

        ``prime`` that was not warm has failed. A stopped ``run`` no longer vouches for the app,
        so it withdraws the ready marker; a finished ``prime`` leaves it (that is its purpose).
        """
        if self.mode == "prime" and not self.status.ready:
            await self.publisher.publish(
                FAILED,
                f"stopped by {why} before the target was warm",
                outcome=FAILED_CLOSED,
                phase_start=True,
            )
        else:
            await self.publisher.stopped(why, keep_ready=self.mode == "prime")
        self.log.event("stop", f"stopped by {why}", state=self.status.state)
