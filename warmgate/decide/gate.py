"""The gate: decide, from the samples in the window, whether the target is warm.

Theory of operation: the gate looks only at samples *issued at the target concurrency level*,
because a cold app that copes with one request at a time but not with sixteen must not pass, and
only at those that completed *since the level last reached the target* (bounded by the window):
failures from an earlier visit, before a back-off, say nothing about how the app copes now. On
every evaluation it runs a list of checks over that evidence (enough requests, success rate,
p50/p95/p99, or the latency plateau when ``p95: auto``), overall and for every target — each
target needing its weight's share of ``min_requests``. The thresholds must keep passing,
evaluation after evaluation, for ``hold`` seconds; any failing evaluation restarts the hold. When
the hold completes the gate opens for good (``warm``). When ``timeout`` passes first, the gate
either opens anyway (``opened_on_timeout``, fail open) or stays shut (``failed_closed``), as
configured. Every verdict carries a reason written as a sentence.

Latency is judged as users would feel it. In a closed loop the percentiles are corrected for
coordinated omission (:mod:`warmgate.decide.omission`); paced load is measured from the intended
send time already and is not corrected again. A request still in flight at the target level that is
already older than the smallest latency limit (or, for ``p95: auto``, than the p95) counts as a
slow request now, with its age so far as its latency. The raw percentiles stay in the verdict's
:class:`Stats` beside the judged ones.

Pure code: the caller passes ``now`` and feeds samples; no I/O, no asyncio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from warmgate.decide.checks import (
    LATENCY_QUANTILES,
    Check,
    latency_checks,
    success_check,
    summarize,
)
from warmgate.decide.evidence import (
    CONFIDENCE,
    quantile_needed,
    success_needed,
    success_requests,
)
from warmgate.decide.omission import expected_interval
from warmgate.decide.plateau import SPAN_REQUESTS, Plateau, plateau_window
from warmgate.decide.window import Pending, Sample, Stats, Tally, Window
from warmgate.kernel.units import format_duration, format_latency, format_percent

QUANTILE_OF = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
RAMPING_SPAN = 10.0
"""With ``window: auto``, the seconds a "ramping up" reason looks back over."""
WARM = "warm"
OPENED_ON_TIMEOUT = "opened_on_timeout"
FAILED_CLOSED = "failed_closed"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What "warm" means. Durations and latencies are in seconds."""

    success_rate: float = 0.99
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    plateau: bool = False
    """``p95: auto``."""
    auto: tuple[str, ...] = ()
    """Other quantiles judged by their plateau (``p50``, ``p99``); ``p95`` is :attr:`plateau`."""
    plateau_tolerance: float = 0.10
    min_requests: int = 20
    window: float = 10.0
    """The window's span; with :attr:`window_auto` the longest it may grow (60s)."""
    window_auto: bool = False
    """``window: auto``: judge just enough of the most recent requests (:mod:`.evidence`)."""
    confidence: float = CONFIDENCE
    """With :attr:`window_auto`, the confidence each threshold is judged with."""
    hold: float = 5.0
    timeout: float = 300.0
    fail_closed: bool = False

    def latency_limits(self) -> list[tuple[str, float]]:
        """The configured ``(quantile, limit)`` pairs, in p50, p95, p99 order."""
        limits = ((name, getattr(self, name)) for name in LATENCY_QUANTILES)
        return [(name, limit) for name, limit in limits if limit is not None]

    def needed(self) -> int:
        """With :attr:`window_auto`: the requests that judge every threshold with
        :attr:`confidence` (the success rate, each latency limit), before ``min_requests``."""
        needs = [success_needed(self.success_rate, self.confidence)]
        needs += [
            quantile_needed(QUANTILE_OF[name], self.confidence) for name, _ in self.latency_limits()
        ]
        return max(needs)

    def plateau_window(self) -> float:
        """The window the plateau's spans are a quarter of: the window, or with
        :attr:`window_auto` four thirds of the hold (spans of a third of it), at least 2s."""
        return plateau_window(self.window, self.hold, self.window_auto)

    def plateaus(self) -> tuple[str, ...]:
        """The quantiles judged by their plateau (``auto``), in p50, p95, p99 order."""
        auto = set(self.auto) | ({"p95"} if self.plateau else set())
        return tuple(name for name in LATENCY_QUANTILES if name in auto)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer at one instant."""

    ready: bool
    passing: bool
    outcome: str | None
    reason: str
    level: int
    target_level: int
    window: Stats
    targets: dict[str, Stats] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    held_for: float = 0.0
    elapsed: float = 0.0
    window_start: float | None = None
    """Where the evidence judged starts (the window, the arrival at the target level or, with
    ``window: auto``, just enough recent requests); ``None`` before any evaluation."""

    @property
    def done(self) -> bool:
        """Whether warming has ended, one way or the other."""
        return self.outcome is not None


def thresholds_text(thresholds: Thresholds) -> dict[str, str]:
    """The latency limits as text, keyed by quantile (``"auto"`` for the plateau mode)."""
    limits = {name: format_latency(limit) for name, limit in thresholds.latency_limits()}
    for name in thresholds.plateaus():
        limits[name] = "auto"
    return {name: limits[name] for name in LATENCY_QUANTILES if name in limits}


def target_minimums(min_requests: int, weights: Sequence[float]) -> list[int]:
    """Requests each target needs before it can pass: its weight's share of ``min_requests``,
    at least 1 (so no target passes on one lucky request)."""
    total = sum(weights)
    return [max(1, math.ceil(min_requests * weight / total)) for weight in weights]


class Gate:
    """Evaluates the thresholds over a window and latches the final outcome."""

    def __init__(
        self,
        thresholds: Thresholds,
        target_level: int,
        window: Window,
        targets: tuple[str, ...] = (),
        where: str | None = None,
        *,
        weights: Sequence[float] | None = None,
        closed_loop: bool = False,
    ) -> None:
        self.thresholds = thresholds
        self.target_level = target_level
        self.window = window
        self.targets = targets
        self.where = where or f"at concurrency {target_level}"
        """How reasons name the full load: ``at concurrency 16``, or ``at 400 req/s``."""
        self.closed_loop = closed_loop
        """Whether latency needs the coordinated-omission correction (not when paced)."""
        shares = list(weights) if weights is not None else [1.0] * len(targets)
        if len(shares) != len(targets) or any(w <= 0 for w in shares):
            raise ValueError("give one positive weight per target")
        minimums = target_minimums(thresholds.min_requests, shares)
        self.target_minimum = dict(zip(targets, minimums, strict=True))
        """Requests each target needs: its weight's share of ``min_requests``, at least 1."""
        self._started_at: float | None = None
        self._passing_since: float | None = None
        self._reached_at = 0.0
        self._arrived = False
        self._below = False
        self._plateaus = {
            name: Plateau(thresholds.plateau_window(), thresholds.hold)
            for name in thresholds.plateaus()
        }
        statistical = thresholds.needed() if thresholds.window_auto else 0
        self.needed = max(thresholds.min_requests, statistical)
        """Requests the evidence needs: ``min_requests``, or with ``window: auto`` at least
        enough to judge every threshold with the stated confidence."""
        self.target_needed = {
            name: max(minimum, statistical) for name, minimum in self.target_minimum.items()
        }
        self.window_start: float | None = None
        """Where the evidence judged last started."""
        self._final: Verdict | None = None

    def start(self, now: float) -> None:
        """Start the clock for ``timeout``; forget any earlier hold or outcome."""
        self._started_at = now
        self._passing_since = None
        self._reached_at = now
        self._arrived = False
        self._below = False
        self._reset_plateaus(now)
        self._final = None

    @property
    def since(self) -> float | None:
        """Where the evidence starts: the arrival at the target level, or ``None`` (the start,
        when the window was empty) if the load began there."""
        return self._reached_at if self._arrived else None

    def _reset_plateaus(self, now: float) -> None:
        for plateau in self._plateaus.values():
            plateau.reset(now)

    def record(self, sample: Sample) -> None:
        """Feed one completed sample."""
        self.window.add(sample)

    def evidence(
        self, now: float, in_flight: Iterable[Pending] = ()
    ) -> tuple[Stats, dict[str, Stats]]:
        """The judged statistics at the target level since it was reached: overall, per target.

        ``in_flight`` lists the requests still open; those at the target level older than the
        latency limit join the percentiles.
        """
        level = self.target_level
        since = self.since
        start = self.window.observed(now, self._reached_at)
        start = now - start
        if self.thresholds.window_auto:
            needs: dict[str | None, int] = {None: self.needed}
            needs.update(self.target_needed)
            rate, certainty = self.thresholds.success_rate, self.thresholds.confidence
            recent = self.window.start_holding(
                now,
                needs,
                level=level,
                since=since,
                success=lambda failures: success_requests(rate, failures, certainty),
                budget=1 - rate,
            )
            if recent is not None:
                start = max(start, recent)
                since = self.window.since_for(start)
        self.window_start = start
        blocks = self.thresholds.window_auto
        tallies = {
            name: self.window.tally(now, level=level, target=name, since=since, blocks=blocks)
            for name in self.targets
        }
        if tallies:
            overall = Tally()
            for tally in tallies.values():
                overall.merge(tally)
        else:
            overall = self.window.tally(now, level=level, since=since, blocks=blocks)
        interval = None
        if self.closed_loop:
            interval = expected_interval(level, now - start, overall.latencies.requests)
        confidence = self.thresholds.confidence if self.thresholds.window_auto else None
        stats = overall.stats(interval=interval, confidence=confidence)
        limit = self._slow_after(stats)
        slow = [(p.target, now - p.issued_at) for p in in_flight if p.level == level]
        slow = [(target, age) for target, age in slow if limit is not None and age > limit]
        if slow:
            in_flight_ages = tuple(age for _, age in slow)
            stats = overall.stats(
                interval=interval, in_flight=in_flight_ages, confidence=confidence
            )
        per_target = {
            name: tally.stats(
                interval=interval,
                in_flight=tuple(age for target, age in slow if target == name),
                confidence=confidence,
            )
            for name, tally in tallies.items()
        }
        return stats, per_target

    def _slow_after(self, stats: Stats) -> float | None:
        """The age past which an open request is surely slow: the smallest latency limit."""
        limits = [limit for _, limit in self.thresholds.latency_limits()]
        if limits:
            return min(limits)
        auto = [getattr(stats, name) for name in self.thresholds.plateaus()]
        auto = [value for value in auto if value is not None]
        return min(auto) if auto else None

    def evaluate(self, now: float, level: int, in_flight: Iterable[Pending] = ()) -> Verdict:
        """The verdict at ``now`` while the load runs at concurrency ``level``."""
        if self._final is not None:
            return self._final
        if self._started_at is None:
            self.start(now)
        started_at = self._started_at if self._started_at is not None else now
        elapsed = now - started_at
        where = self.where
        if level < self.target_level:
            self._below = True
        elif self._below:
            # Arrived at the target (climbing, or again after a back-off): judge only how the
            # app copes from now on.
            self._below = False
            self._arrived = True
            self._reached_at = now
            self._reset_plateaus(now)
        stats, per_target = self.evidence(now, in_flight)
        checks = self._checks(now, level, stats, per_target, where)
        failing = [check for check in checks if not check.passed]
        if failing:
            self._passing_since = None
        elif self._passing_since is None:
            self._passing_since = now
        held = 0.0 if self._passing_since is None else now - self._passing_since
        hold = self.thresholds.hold

        outcome: str | None = None
        if not failing and held >= hold:
            outcome = WARM
            reason = f"warm: {summarize(stats, thresholds_text(self.thresholds))} {where}, " + (
                f"held for {format_duration(held)}"
            )
        elif failing:
            reason = failing[0].reason
        else:
            reason = (
                f"holding: thresholds met {where} for {format_duration(held)} "
                f"of {format_duration(hold)}"
            )
        if outcome is None and elapsed >= self.thresholds.timeout:
            outcome = FAILED_CLOSED if self.thresholds.fail_closed else OPENED_ON_TIMEOUT
            verb = "failed closed" if self.thresholds.fail_closed else "opened anyway"
            reason = f"not warm after {format_duration(self.thresholds.timeout)}, {verb}: {reason}"

        verdict = Verdict(
            ready=outcome in (WARM, OPENED_ON_TIMEOUT),
            passing=not failing,
            outcome=outcome,
            reason=reason,
            level=level,
            target_level=self.target_level,
            window=stats,
            targets=per_target,
            checks=tuple(checks),
            held_for=held,
            elapsed=elapsed,
            window_start=self.window_start,
        )
        if outcome is not None:
            self._final = verdict
        return verdict

    def _needed_text(self) -> str:
        """Why ``window: auto`` needs more than ``min_requests``, or nothing."""
        if self.needed == self.thresholds.min_requests:
            return ""
        confidence = format_percent(self.thresholds.confidence)
        return f" to judge every threshold with {confidence} confidence"

    def _span_text(self, now: float) -> str:
        """``in the last 10s``: the window, or less early in a visit to the target level."""
        start = self._reached_at
        if self.thresholds.window_auto and self.window_start is not None:
            start = self.window_start
        return f"in the last {format_duration(min(self.thresholds.window, now - start))}"

    def _checks(
        self, now: float, level: int, stats: Stats, per_target: dict[str, Stats], where: str
    ) -> list[Check]:
        thresholds = self.thresholds
        minimum = self.needed
        if stats.requests < minimum:
            if stats.requests == 0 and level < self.target_level:
                reason = self._ramping_reason(now, level)
            elif stats.requests == 0:
                reason = f"no answers {where} yet; need at least {minimum}"
            else:
                reason = (
                    f"only {stats.requests} requests {where} {self._span_text(now)}; "
                    f"need at least {minimum}{self._needed_text()}"
                )
            # Without enough requests the percentiles mean nothing; say only this.
            return [Check("requests", False, str(stats.requests), str(minimum), reason)]

        checks = [Check("requests", True, str(stats.requests), str(minimum))]
        confidence = thresholds.confidence if thresholds.window_auto else None
        checks.append(success_check(stats, thresholds.success_rate, where, confidence))
        checks.extend(latency_checks(stats, thresholds.latency_limits(), where))
        if stats.slow_in_flight:
            checks = [_with_in_flight(check, stats.slow_in_flight) for check in checks]
        if self._plateaus:
            checks.extend(self._plateau_checks(now, stats, where))
        for name, target_stats in per_target.items():
            target_where = f"for target '{name}' {where}"
            needed = self.target_needed[name]
            if target_stats.requests < needed:
                share = self.target_minimum[name]
                why = (
                    f"its share of {thresholds.min_requests}"
                    if needed == share
                    else f"to judge its thresholds with {format_percent(thresholds.confidence)} "
                    "confidence"
                )
                reason = (
                    f"only {target_stats.requests} requests {target_where} "
                    f"{self._span_text(now)}; need at least {needed} ({why})"
                )
                checks.append(
                    Check(
                        f"requests:{name}", False, str(target_stats.requests), str(needed), reason
                    )
                )
                continue
            checks.append(
                success_check(target_stats, thresholds.success_rate, target_where, confidence)
            )
            checks.extend(latency_checks(target_stats, thresholds.latency_limits(), target_where))
        if level < self.target_level:
            # The ramp backed off: the window may still hold good answers from the target level,
            # but the app is not coping with it now, so nothing may pass (and the hold restarts).
            reason = self._ramping_reason(now, level)
            checks.append(Check("level", False, str(level), str(self.target_level), reason))
        return checks

    def _ramping_reason(self, now: float, level: int) -> str:
        """``ramping up: concurrency 4 of 16, ...`` with why the current level fails, if it does."""
        reason = f"ramping up: concurrency {level} of {self.target_level}"
        # window: auto keeps up to 60s: say how the ramp fares over the last 10s, as a default
        # window would, rather than merge a minute of slices four times a second.
        since = now - RAMPING_SPAN if self.thresholds.window_auto else None
        target_level = self.window.stats(now, level=self.target_level, since=since)
        if not target_level.requests:
            reason += f", no requests at concurrency {self.target_level} yet"
        where = f"at concurrency {level}"
        current = self.window.stats(now, level=level, since=since)
        if current.requests:
            check = success_check(current, self.thresholds.success_rate, where)
            if not check.passed:
                reason += f"; {check.reason}"
                if len(self.targets) > 1:
                    # Name the target that fails worst, so the reader knows where to look.
                    def success(name: str) -> float:
                        stats = self.window.stats(now, level=level, target=name, since=since)
                        ratio = stats.success_ratio
                        return 1.0 if ratio is None else ratio

                    worst = min(self.targets, key=success)
                    reason += f" (worst: target '{worst}', {format_percent(success(worst))})"
        return reason

    def _plateau_checks(self, now: float, stats: Stats, where: str) -> list[Check]:
        """``auto`` quantiles: pass once each is where it is heading (:mod:`.plateau`)."""
        # The plateaus close their spans together: one tally serves them all.
        first = next(iter(self._plateaus.values()))
        if first.due(now) and first.span_started is not None:
            started = first.span_started
            span = self.window.tally(now, level=self.target_level, since=started)
            interval = None
            if self.closed_loop:
                observed = self.window.observed(now, started)
                interval = expected_interval(self.target_level, observed, span.latencies.requests)
            closed = span.stats(interval=interval)
            for name, plateau in self._plateaus.items():
                plateau.close(now, span.latencies.requests, getattr(closed, name))
        return [self._plateau_check(name, stats, where) for name in self._plateaus]

    def _plateau_check(self, name: str, stats: Stats, where: str) -> Check:
        tolerance = self.thresholds.plateau_tolerance
        plateau = self._plateaus[name]
        check = "plateau" if name == "p95" else f"plateau_{name}"
        limit = f"±{format_percent(tolerance)}"
        if getattr(stats, name) is None:
            return Check(check, False, "-", limit, f"no latency measured {where} yet")
        trend = plateau.trend()
        if trend.spans < trend.needed or trend.change is None or trend.last is None:
            reason = (
                f"measuring the latency plateau {where}: {trend.spans} of {trend.needed} spans "
                f"of {format_duration(plateau.span)} with at least {SPAN_REQUESTS} requests each"
            )
            return Check(check, False, "-", limit, reason)
        actual = f"{trend.change * 100:+.0f}%"
        if trend.flat(tolerance):
            return Check(check, True, actual, limit)
        group = format_duration(plateau.span * plateau.group)
        moving = f"{format_latency(trend.previous)} -> {format_latency(trend.last)}"
        if trend.floor is None:
            reason = (
                f"{name} still changing {where}: {moving} in {group}, falling without slowing "
                "down (no floor in sight yet)"
            )
        elif not 1 / (1 + tolerance) - 1 <= trend.change <= tolerance:
            reason = (
                f"{name} still changing {where}: {moving}, {actual} in {group} "
                f"(a plateau is within {limit})"
            )
        elif trend.drift is not None and not 1 / (1 + tolerance) - 1 <= trend.drift <= tolerance:
            twice = format_duration(2 * plateau.span * plateau.group)
            reason = (
                f"{name} still changing {where}: {format_latency(trend.first)} -> "
                f"{format_latency(trend.last)}, a trend of {trend.drift * 100:+.0f}% per {twice}"
                f" (a plateau is within {limit})"
            )
        else:
            reason = (
                f"{name} still changing {where}: {format_latency(trend.last)} now, heading for "
                f"{format_latency(trend.floor)} (a plateau is within {limit} of it)"
            )
        return Check(check, False, actual, limit, reason)


def _with_in_flight(check: Check, count: int) -> Check:
    """A failing latency check says when open requests past the limit weighed in."""
    if check.passed or check.name not in LATENCY_QUANTILES:
        return check
    noun = "request" if count == 1 else "requests"
    reason = f"{check.reason} ({count} {noun} in flight past the limit)"
    return Check(check.name, False, check.actual, check.limit, reason)
