"""One warm-up: the async shell around the lifecycle machine, from waiting to an outcome.

``prime`` runs one; so does every *primer*, the child process the ``run`` supervisor starts
when it arms. The shell only turns what it sees into facts for
:class:`~warmgate.decide.lifecycle.Lifecycle` — probe results while waiting (classified by
:mod:`warmgate.decide.reach`), the gate's verdicts and whether the traffic still connects while
warming, ticks — and carries out the actions each transition names: start or stop the load,
publish, record the outcome. Every decision about *when* lives in the lifecycle and in the
:class:`~warmgate.decide.judge.Judge` (the gate and the ramp), and what state and readiness to
publish in :meth:`Lifecycle.public`; nothing here decides.

One asyncio loop runs everything; signal handlers only set the ``stop`` event, which the loops
notice within one tick.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Protocol

from warmgate.config.model import Config
from warmgate.decide.gate import (
    FAILED_CLOSED,
    OPENED_ON_TIMEOUT,
    WARM,
    Thresholds,
    Verdict,
    thresholds_text,
)
from warmgate.decide.judge import Judge
from warmgate.decide.lifecycle import Action, Event, Lifecycle, Policy, State, Transition
from warmgate.decide.outcomes import CONNECTION_ERROR
from warmgate.decide.reach import Down, Reach, most_telling
from warmgate.decide.window import Sample
from warmgate.kernel.redaction import Secrets
from warmgate.kernel.units import format_duration
from warmgate.report.record import Point, Record, Recorder
from warmgate.runtime.publisher import Publisher, Sink
from warmgate.serve.logs import Log
from warmgate.serve.metrics import Metrics
from warmgate.serve.status import WARMING, Status
from warmgate.traffic.driver import Driver
from warmgate.traffic.loadgen import CRASH_CHARS, Load
from warmgate.traffic.targets import CompiledTarget, WaitPlan, open_drivers
from warmgate.traffic.web.driver import UrlProbe, make_client

TICK = 0.25
"""Seconds between evaluations of the gate while warming."""
CONFIRM_HOLD = 0.5
"""The hold of the confirmation after warmgate's own restart: the app was warm moments ago."""
_VERDICT_EVENTS = {
    WARM: Event.WARM,
    OPENED_ON_TIMEOUT: Event.TIMED_OUT_OPEN,
    FAILED_CLOSED: Event.TIMED_OUT_CLOSED,
}


Opener = Callable[
    [Config, Sequence[CompiledTarget], AsyncExitStack, Callable[[str], None], Secrets],
    Awaitable[Sequence[Driver]],
]
"""Opens the drivers of the compiled targets, in their order (:func:`open_drivers`)."""


class Probe(Protocol):
    """Anything that can tell whether a target accepts connections."""

    async def probe(self) -> Down | None:
        """``None`` when up, else how it failed and why."""
        ...


def thresholds_of(config: Config) -> Thresholds:
    """The pure core's view of the gate configuration."""
    gate = config.gate
    return Thresholds(
        success_rate=gate.success_rate,
        p50=None if gate.p50 == "auto" else gate.p50,
        p95=None if gate.p95 == "auto" else gate.p95,
        p99=None if gate.p99 == "auto" else gate.p99,
        plateau=gate.p95 == "auto",
        auto=tuple(name for name in ("p50", "p99") if getattr(gate, name) == "auto"),
        plateau_tolerance=gate.plateau_tolerance,
        min_requests=gate.min_requests,
        window=gate.span,
        window_auto=gate.window == "auto",
        hold=gate.hold,
        timeout=gate.timeout,
        fail_closed=gate.on_timeout == "fail",
    )


def policy_of(config: Config) -> Policy:
    """The lifecycle machine's view of the configuration."""
    return Policy(
        wait_timeout=config.wait.timeout,
        gate_timeout=config.gate.timeout,
        fail_closed=config.gate.on_timeout == "fail",
        rearm_after=config.after_ready.rearm_after,
        retry_after=config.after_ready.retry_after,
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


class WarmUp:
    """Drives one warm-up: wait, warm (or confirm), reach an outcome; the publisher tells."""

    def __init__(
        self,
        config: Config,
        compiled: Sequence[CompiledTarget],
        *,
        metrics: Metrics,
        log: Log,
        sink: Sink | None = None,
        mode: str = "prime",
        resume: bool = False,
        keep_warm: bool = False,
        rearms: int = 0,
        wait: WaitPlan | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        opener: Opener = open_drivers,
        writer: concurrent.futures.Executor | None = None,
    ) -> None:
        self.config = config
        self.compiled = compiled
        self._opener = opener
        self.metrics = metrics
        self.log = log
        self._clock = clock
        self._resume = resume
        self._wait = wait
        """The ``wait.url`` probe; without it the targets probe themselves."""
        self._keep_warm = keep_warm
        self.publisher = Publisher(
            config, metrics, log, sink, mode=mode, rearms=rearms, clock=clock, wall=wall,
            writer=writer,
        )  # fmt: skip
        self.machine = Lifecycle(policy_of(config))
        names = tuple(item.target.name for item in compiled)
        thresholds = thresholds_of(config)
        load = config.load
        weights = [item.target.weight for item in compiled]
        self.judge = Judge(
            thresholds, load.concurrency, names, load.ramp_step, load.rate, weights=weights
        )
        # The confirmation judges at the target level at once, briefly, and never times out
        # by itself: the machine's budget for it decides.
        confirm = replace(thresholds, hold=min(thresholds.hold, CONFIRM_HOLD), timeout=math.inf)
        self.confirmer = Judge(
            confirm, load.concurrency, names, load.ramp_step, load.rate, weights=weights
        )
        self._active = self.judge
        self._warming = False
        self._level = 0
        self._down = ""
        self._verdict: Verdict | None = None
        self._probes: list[Probe] = []
        self.recorder = self._new_recorder()
        self.record: Record | None = None

    @property
    def status(self) -> Status:
        """The current status snapshot."""
        return self.publisher.status

    def _new_recorder(self) -> Recorder:
        gate = self.judge.gate
        limits = {"success_rate": f"{gate.thresholds.success_rate:g}"}
        limits.update(thresholds_text(gate.thresholds))
        return Recorder(gate.targets, gate.target_level, limits, gate.thresholds.timeout)

    def _since_start(self) -> float:
        return self._clock() - self.publisher.started

    async def run(self, stop: asyncio.Event) -> Status:
        """Run until an outcome (or, keeping warm, until ``stop``); returns the last status."""
        async with AsyncExitStack() as stack:
            secrets = self.log.secrets
            drivers = await self._opener(self.config, self.compiled, stack, self._warn, secrets)
            self._probes = list(drivers)
            if self._wait is not None:
                tls = self._wait.tls
                client = make_client(1, self.config.traffic, tls.context if tls else None)
                stack.push_async_callback(client.aclose)
                # wait.url stands for the HTTP targets; other kinds still probe themselves.
                others = [d for d, c in zip(drivers, self.compiled, strict=True) if not c.web]
                self._probes = [UrlProbe(self._wait.url, client, tls), *others]
            load = Load(
                drivers,
                [item.target.weight for item in self.compiled],
                self.config.load.concurrency,
                self._record,
                rate_caps=[item.target.rate for item in self.compiled],
                on_crash=self._crash,
                secrets=secrets,
            )
            load.start()
            stack.push_async_callback(load.stop)
            await self._lifecycle(stop, load)
        return self.status

    async def _lifecycle(self, stop: asyncio.Event, load: Load) -> None:
        first = Event.RESUME if self._resume else Event.ARM
        await self._apply(self.machine.handle(first, self._clock()), stop, load)
        backoff = self.config.wait.initial_backoff
        while not stop.is_set() and self.machine.state not in (State.READY, State.FAILED):
            timed = self.machine.tick(self._clock())
            if timed is not None:
                await self._apply(timed, stop, load)
            elif self.machine.state in (State.WAITING, State.RESUMING):
                backoff = await self._wait_step(stop, load, backoff)
            else:
                backoff = self.config.wait.initial_backoff
                await self._warm_step(stop, load)
        keep_warm = self.config.after_ready.keep_warm_rate
        if keep_warm and self._keep_warm and self.machine.answered and self.machine.ready:
            self._configure(load, 1, keep_warm)
            await stop.wait()

    async def _wait_step(self, stop: asyncio.Event, load: Load, backoff: float) -> float:
        """One probe of every target; sleep the back-off if it is not up yet."""
        down = most_telling(await asyncio.gather(*(probe.probe() for probe in self._probes)))
        if down is None:
            self.recorder.up(self._since_start())
            self.log.event("up", "the target answers; priming starts")
        else:
            self._down = down.reason
        state = self.machine.state
        step = self.machine.probe(Reach.UP if down is None else down.reach, self._clock())
        await self._apply(step, stop, load)
        if self.machine.state is not state or down is None:
            return self.config.wait.initial_backoff
        await self._say(f"waiting for the target to answer: {down.reason}")
        remaining = self.machine.deadline() - self._clock()
        await sleep_or_stop(stop, min(backoff, max(0.0, remaining)))
        return min(backoff * 2, self.config.wait.max_backoff)

    async def _warm_step(self, stop: asyncio.Event, load: Load) -> None:
        """One evaluation of the gate (or the confirmation) and the ramp."""
        if await sleep_or_stop(stop, TICK):
            return
        now = self._clock()
        judge = self._active
        step, verdict = judge.tick(now, load.open_requests())
        confirming = judge is self.confirmer
        if step.changed and not confirming:
            self._configure(load, step.level, self._rate_at(step.level))
            self.log.event("ramp", step.reason, level=step.level, previous=step.previous)
        self._remember(verdict)
        self._verdict = verdict
        if verdict.outcome is not None:
            await self._apply(
                self.machine.handle(_VERDICT_EVENTS[verdict.outcome], now), stop, load
            )
        elif (lost := self.machine.traffic(now, connecting_fails=self._lost(now))) is not None:
            self.log.event(
                "lost",
                f"the target answered nothing but connection errors for "
                f"{format_duration(self.machine.policy.lost_after)}; waiting for it again",
            )
            await self._apply(lost, stop, load)
        else:
            reason = verdict.reason
            if confirming:
                reason = f"confirming the app is still warm after warmgate restarted: {reason}"
            await self._say(reason, verdict)

    async def _apply(self, step: Transition, stop: asyncio.Event, load: Load) -> None:
        """Carry out what a transition asks."""
        if step.changed:
            self.log.event(
                "transition",
                f"{step.previous.value} -> {step.state.value} ({step.event.value})",
                previous=step.previous.value,
                state=step.state.value,
            )
        published = False
        for action in step.actions:
            if action is Action.STOP_LOAD:
                self._warming = False
                self._configure(load, 0, None)
            elif action is Action.START_LOAD:
                await self._start_ramp(stop, load, jitter=step.previous is State.WAITING)
                published = True
            elif action is Action.START_LOAD_AT_TARGET:
                await self._start_confirmation(load)
                published = True
            elif action is Action.FINISH:
                await self._finish(step)
                published = True
            elif action is Action.PUBLISH and not published and step.changed:
                if step.state is State.STOPPED:
                    continue
                await self._say("waiting for the target to answer", phase_start=True)

    async def _start_ramp(self, stop: asyncio.Event, load: Load, *, jitter: bool) -> None:
        pause = random.uniform(0, self.config.load.jitter) if jitter else 0.0
        if pause:
            reason = f"waiting {format_duration(pause)} before priming (jitter)"
            await self._say(reason)
            if await sleep_or_stop(stop, pause):
                return
        now = self._clock()
        self.judge.start(now)
        self.machine.load_started(now)
        self._active = self.judge
        self._warming = True
        self._configure(load, self.judge.level, self._rate_at(self.judge.level))
        await self._say("priming has started at concurrency 1", phase_start=True)

    async def _start_confirmation(self, load: Load) -> None:
        now = self._clock()
        target = self.config.load.concurrency
        self.confirmer.start(now)
        self.confirmer.ramp.start(now, target)
        self.machine.load_started(now)
        self._active = self.confirmer
        self._warming = True
        self._configure(load, target, self._rate_at(target))
        reason = (
            f"confirming the app is still warm after warmgate restarted: checking at "
            f"concurrency {target}"
        )
        await self._say(reason, phase_start=True)

    async def _say(
        self,
        reason: str,
        verdict: Verdict | None = None,
        *,
        outcome: str | None = None,
        phase_start: bool = False,
    ) -> None:
        """Publish the lifecycle's public state and readiness, with what only this shell
        knows: the load's level, whether the target answered.

        An outcome shows the level its verdict was reached at (the load has stopped by then).
        """
        state, ready = self.machine.public()
        level = verdict.level if outcome is not None and verdict is not None else self._level
        await self.publisher.publish(
            state, ready, reason, verdict, level=level, answered=self.machine.answered,
            outcome=outcome, phase_start=phase_start,
        )  # fmt: skip

    def _rate_at(self, level: int) -> float | None:
        rate = self.config.load.rate
        return None if rate is None else rate * level / self.config.load.concurrency

    def _configure(self, load: Load, level: int, rate: float | None) -> None:
        load.configure(level, rate)
        self._level = load.level

    def _lost(self, now: float) -> bool:
        """Whether every request of the last ``lost_after`` seconds failed to connect."""
        recent = self._active.window.stats(now, since=now - self.machine.policy.lost_after)
        return bool(recent.requests) and recent.outcomes.get(CONNECTION_ERROR) == recent.requests

    def _remember(self, verdict: Verdict) -> None:
        """Add the last second of requests, at any level, to the warm-up record."""
        now = self._clock()
        recent = self._active.window.stats(now, since=now - 1.0)
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
        start = verdict.window_start
        since_start = None if start is None else round(start - self.publisher.started, 3)
        self.recorder.evaluation(point, verdict.passing, verdict.window, since_start)

    async def _finish(self, step: Transition) -> None:
        """Publish the outcome the transition reached, and record the warm-up."""
        verdict = self._verdict
        if step.event is Event.WARM and verdict is not None:
            outcome, reason = WARM, verdict.reason
        else:
            fail = step.state is State.FAILED
            outcome = FAILED_CLOSED if fail else OPENED_ON_TIMEOUT
            verb = "failed closed" if fail else "opened anyway"
            if verdict is not None and verdict.outcome == outcome:
                reason = verdict.reason
            elif self.machine.warming_since is None:
                waited = format_duration(self.config.wait.timeout)
                reason = f"{verb}: the target did not answer within {waited}: {self._down}"
            else:
                last = verdict.reason if verdict is not None else self._down
                timeout = format_duration(self.config.gate.timeout)
                reason = f"not warm after {timeout}, {verb}: {last}"
            self.log.event("timeout", reason, outcome=outcome)
        await self._say(reason, verdict, outcome=outcome, phase_start=True)
        record = self.recorder.finish(self._since_start(), outcome, self.log.secrets.redact(reason))
        self.record = record
        await self.publisher.write_report(record.to_json())

    def _record(self, sample: Sample) -> None:
        self.metrics.observe(sample)
        if self._warming:
            self._active.record(sample)
            self.recorder.sample(sample.target, sample.latency, sample.ok)

    def _warn(self, message: str) -> None:
        """A driver's warning (a role that can write, a row cap reached), in the log."""
        self.log.event("warning", message)

    def _crash(self, target: str, exc: BaseException) -> None:
        """A driver raised instead of returning an outcome: say so once per kind of error."""
        error = self.log.secrets.shorten(f"{type(exc).__name__}: {exc}", CRASH_CHARS)
        self.log.event(
            "driver_error",
            f"target '{target}': unexpected {error}; counted as an error",
            target=target,
        )

    async def stopped(self, why: str) -> None:
        """Write the final status after a signal.

        Before an outcome the state becomes ``stopped`` (not ready; ``prime`` exits 1). After
        one, the outcome stands: a finished ``prime``'s marker is its purpose.
        """
        if self.machine.state not in (State.READY, State.FAILED):
            self.machine.handle(Event.STOP, self._clock())
            await self._say(f"stopped by {why} before the target was warm", phase_start=True)
        self.log.event("stop", f"stopped by {why}", state=self.status.state)
