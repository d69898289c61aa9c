"""The gate: decide, from the samples in the window, whether the target is warm.

Theory of operation: the gate looks only at samples *issued at the target concurrency level*,
because a cold app that copes with one request at a time but not with sixteen must not pass. On
every evaluation it runs a list of checks over the window (enough requests, success rate,
p50/p95/p99, or the latency plateau when ``p95: auto``), overall and for every target. The
thresholds must keep passing, evaluation after evaluation, for ``hold`` seconds; any failing
evaluation restarts the hold. When the hold completes the gate opens for good (``warm``). When
``timeout`` passes first, the gate either opens anyway (``opened_on_timeout``, fail open) or stays
shut (``failed_closed``), as configured. Every verdict carries a reason written as a sentence.

Pure code: the caller passes ``now`` and feeds samples; no I/O, no asyncio.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from warmgate.units import format_duration, format_latency, format_percent
from warmgate.window import Sample, Stats, Tally, Window

WARM = "warm"
OPENED_ON_TIMEOUT = "opened_on_timeout"
FAILED_CLOSED = "failed_closed"

_LATENCY_QUANTILES = ("p50", "p95", "p99")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What "warm" means. Durations and latencies are in seconds."""

    success_rate: float = 0.99
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    plateau: bool = False
    plateau_tolerance: float = 0.10
    min_requests: int = 20
    window: float = 10.0
    hold: float = 5.0
    timeout: float = 300.0
    fail_closed: bool = False

    def latency_limits(self) -> list[tuple[str, float]]:
        """The configured ``(quantile, limit)`` pairs, in p50, p95, p99 order."""
        limits = ((name, getattr(self, name)) for name in _LATENCY_QUANTILES)
        return [(name, limit) for name, limit in limits if limit is not None]


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold, evaluated. ``reason`` is a sentence when the check fails, else empty."""

    name: str
    passed: bool
    actual: str
    limit: str
    reason: str = ""


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

    @property
    def done(self) -> bool:
        """Whether warming has ended, one way or the other."""
        return self.outcome is not None


_NOUNS = {
    "timeout": ("timeout", "timeouts"),
    "connection_error": ("connection error", "connection errors"),
    "error": ("error", "errors"),
    "write_rejected": ("rejected write", "rejected writes"),
    "unexpected_status": ("unexpected result", "unexpected results"),
}
_OBVIOUS_DETAILS = frozenset({"", "timed out"})


def describe_failures(stats: Stats) -> str:
    """Why requests failed, most common first: ``"12 timeouts, 3 answers 503"``.

    Failures without an HTTP status carry the driver's most common detail, so a reason can say
    ``"120 errors (relation "orders" does not exist)"``.
    """
    parts: list[tuple[int, str]] = []
    for status, count in stats.failed_statuses.items():
        parts.append((count, f"{count} {'answer' if count == 1 else 'answers'} {status}"))
    with_status = sum(stats.failed_statuses.values())
    for outcome, total in stats.outcomes.items():
        # Unexpected statuses were counted above; what is left failed without one (SQL rows).
        count = total - with_status if outcome == "unexpected_status" else total
        if outcome == "ok" or count <= 0:
            continue
        singular, plural = _NOUNS.get(outcome, (outcome.replace("_", " "),) * 2)
        text = f"{count} {singular if count == 1 else plural}"
        detail = stats.details.get(outcome, "")
        if detail not in _OBVIOUS_DETAILS:
            text += f" ({detail})"
        parts.append((count, text))
    parts.sort(key=lambda part: -part[0])
    return ", ".join(text for _, text in parts[:3])


def drift_hint(stats: Stats) -> str:
    """A sentence when most failures are 404s, which usually means the warm-up path is wrong."""
    not_found = stats.failed_statuses.get(404, 0)
    if stats.requests and not_found * 2 > stats.failures:
        share = format_percent(not_found / stats.requests)
        return f"{share} of answers were 404: the warm-up path may have drifted"
    return ""


def success_check(stats: Stats, threshold: float, where: str) -> Check:
    """Whether the success ratio of ``stats`` meets ``threshold``."""
    ratio = stats.success_ratio or 0.0
    actual, limit = format_percent(ratio), format_percent(threshold)
    if ratio >= threshold:
        return Check("success_rate", True, actual, limit)
    reason = f"success {actual} < {limit} {where}"
    hint = drift_hint(stats)
    details = hint or describe_failures(stats)
    if details:
        reason += f": {details}"
    return Check("success_rate", False, actual, limit, reason)


def latency_checks(stats: Stats, limits: list[tuple[str, float]], where: str) -> list[Check]:
    """One check per configured latency quantile."""
    checks = []
    for name, limit in limits:
        value: float | None = getattr(stats, name)
        actual, limit_text = format_latency(value), format_latency(limit)
        if value is not None and value <= limit:
            checks.append(Check(name, True, actual, limit_text))
        else:
            reason = f"{name} {actual} > {limit_text} {where}"
            checks.append(Check(name, False, actual, limit_text, reason))
    return checks


def thresholds_text(thresholds: Thresholds) -> dict[str, str]:
    """The latency limits as text, keyed by quantile (``"auto"`` for the plateau mode)."""
    limits = {name: format_latency(limit) for name, limit in thresholds.latency_limits()}
    if thresholds.plateau:
        limits["p95"] = "auto"
    return limits


def summarize(stats: Stats, limits: dict[str, str]) -> str:
    """``"480 requests, success 100%, p95 12ms (limit 200ms)"`` for the reasons and logs."""
    parts = [f"{stats.requests} requests", f"success {format_percent(stats.success_ratio)}"]
    for name in _LATENCY_QUANTILES:
        if name in limits:
            value = format_latency(getattr(stats, name))
            parts.append(f"{name} {value} (limit {limits[name]})")
    return ", ".join(parts)


class Gate:
    """Evaluates the thresholds over a window and latches the final outcome."""

    def __init__(
        self,
        thresholds: Thresholds,
        target_level: int,
        window: Window,
        targets: tuple[str, ...] = (),
        where: str | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.target_level = target_level
        self.window = window
        self.targets = targets
        self.where = where or f"at concurrency {target_level}"
        """How reasons name the full load: ``at concurrency 16``, or ``at 400 req/s``."""
        self._started_at: float | None = None
        self._passing_since: float | None = None
        self._plateau_history: deque[tuple[float, float]] = deque()
        self._final: Verdict | None = None

    def start(self, now: float) -> None:
        """Start the clock for ``timeout``; forget any earlier hold or outcome."""
        self._started_at = now
        self._passing_since = None
        self._plateau_history.clear()
        self._final = None

    def record(self, sample: Sample) -> None:
        """Feed one completed sample."""
        self.window.add(sample)

    def evaluate(self, now: float, level: int) -> Verdict:
        """The verdict at ``now`` while the load runs at concurrency ``level``."""
        if self._final is not None:
            return self._final
        if self._started_at is None:
            self.start(now)
        started_at = self._started_at if self._started_at is not None else now
        elapsed = now - started_at
        where = self.where
        level_tallies = {
            name: self.window.tally(now, level=self.target_level, target=name)
            for name in self.targets
        }
        if level_tallies:
            overall = Tally()
            for tally in level_tallies.values():
                overall.merge(tally)
        else:
            overall = self.window.tally(now, level=self.target_level)
        stats = overall.stats(from_histogram=True)
        per_target = {
            name: tally.stats(from_histogram=True) for name, tally in level_tallies.items()
        }
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
        )
        if outcome is not None:
            self._final = verdict
        return verdict

    def _checks(
        self, now: float, level: int, stats: Stats, per_target: dict[str, Stats], where: str
    ) -> list[Check]:
        thresholds = self.thresholds
        minimum = thresholds.min_requests
        window_text = format_duration(thresholds.window)
        if stats.requests < minimum:
            if stats.requests == 0 and level < self.target_level:
                reason = self._ramping_reason(now, level)
            else:
                reason = (
                    f"only {stats.requests} requests {where} in the last {window_text}; "
                    f"need at least {minimum}"
                )
            # Without enough requests the percentiles mean nothing; say only this.
            return [Check("requests", False, str(stats.requests), str(minimum), reason)]

        checks = [Check("requests", True, str(stats.requests), str(minimum))]
        checks.append(success_check(stats, thresholds.success_rate, where))
        checks.extend(latency_checks(stats, thresholds.latency_limits(), where))
        if thresholds.plateau:
            checks.append(self._plateau_check(now, stats, where))
        for name, target_stats in per_target.items():
            target_where = f"for target '{name}' {where}"
            if target_stats.requests == 0:
                reason = f"no requests {target_where} in the last {window_text} yet"
                checks.append(Check(f"target:{name}", False, "0", "1", reason))
                continue
            checks.append(success_check(target_stats, thresholds.success_rate, target_where))
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
        target_level = self.window.stats(now, level=self.target_level)
        if not target_level.requests:
            reason += f", no requests at concurrency {self.target_level} yet"
        where = f"at concurrency {level}"
        current = self.window.stats(now, level=level)
        if current.requests:
            check = success_check(current, self.thresholds.success_rate, where)
            if not check.passed:
                reason += f"; {check.reason}"
                if len(self.targets) > 1:
                    # Name the target that fails worst, so the reader knows where to look.
                    def success(name: str) -> float:
                        ratio = self.window.stats(now, level=level, target=name).success_ratio
                        return 1.0 if ratio is None else ratio

                    worst = min(self.targets, key=success)
                    reason += f" (worst: target '{worst}', {format_percent(success(worst))})"
        return reason

    def _plateau_check(self, now: float, stats: Stats, where: str) -> Check:
        """``p95: auto``: pass once p95 stops changing between successive windows."""
        tolerance = self.thresholds.plateau_tolerance
        span = self.thresholds.window
        history = self._plateau_history
        current = stats.p95
        limit = f"±{format_percent(tolerance)}"
        if current is None:
            return Check("plateau", False, "-", limit, f"no latency measured {where} yet")
        history.append((now, current))
        # Keep the newest entry at least one window old as the reference, and everything after.
        while len(history) >= 2 and history[1][0] <= now - span:
            history.popleft()
        then, previous = history[0]
        if then > now - span:
            waited = format_duration(now - then)
            reason = (
                f"measuring the latency plateau {where}: {waited} of "
                f"{format_duration(span)} of history"
            )
            return Check("plateau", False, "-", limit, reason)
        change = (current - previous) / previous if previous > 0 else 0.0
        actual = f"{change * 100:+.0f}%"
        if abs(change) <= tolerance:
            return Check("plateau", True, actual, limit)
        reason = (
            f"p95 still changing {where}: {format_latency(previous)} -> "
            f"{format_latency(current)} over {format_duration(span)} ({actual}; "
            f"a plateau is within {limit})"
        )
        return Check("plateau", False, actual, limit, reason)
