"""The checks a gate runs, and the sentences that say why one failed.

Each threshold becomes a :class:`Check`: passed or not, the value seen, the limit, and — when it
failed — a reason written for a person reading ``/readyz``: ``"p95 412ms > 200ms at concurrency
16"``, ``"success 93.2% < 99% at concurrency 16: 12 timeouts, 3 answers 503"``. The gate and the
ramp share these so they always speak alike.

Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from warmgate.decide.evidence import success_requests
from warmgate.decide.outcomes import (
    CAPTURE_FAILED,
    CONNECTION_ERROR,
    ERROR,
    OK,
    TIMEOUT,
    UNEXPECTED_STATUS,
    WRITE_REJECTED,
)
from warmgate.decide.window import Stats
from warmgate.kernel.units import format_latency, format_percent

LATENCY_QUANTILES = ("p50", "p95", "p99")


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold, evaluated. ``reason`` is a sentence when the check fails, else empty."""

    name: str
    passed: bool
    actual: str
    limit: str
    reason: str = ""


_NOUNS = {
    TIMEOUT: ("timeout", "timeouts"),
    CONNECTION_ERROR: ("connection error", "connection errors"),
    ERROR: ("error", "errors"),
    WRITE_REJECTED: ("rejected write", "rejected writes"),
    UNEXPECTED_STATUS: ("unexpected result", "unexpected results"),
    CAPTURE_FAILED: ("failed capture", "failed captures"),
}
_OBVIOUS_DETAILS = frozenset({"", "timed out"})


def describe_failures(stats: Stats) -> str:
    """Why requests failed, most common first: ``"12 timeouts, 3 answers 503"``; a gRPC status
    code is named with its share of the requests: ``"UNAVAILABLE 12%"``.

    Failures without an HTTP status carry the driver's most common detail, so a reason can say
    ``"120 errors (relation "orders" does not exist)"``.
    """
    parts: list[tuple[int, str]] = []
    for status, count in stats.failed_statuses.items():
        if isinstance(status, str):  # a gRPC status code, as a share: "UNAVAILABLE 12%"
            parts.append((count, f"{status} {format_percent(count / stats.requests)}"))
        else:
            parts.append((count, f"{count} {'answer' if count == 1 else 'answers'} {status}"))
    with_status = sum(stats.failed_statuses.values())
    for outcome, total in stats.outcomes.items():
        # Unexpected statuses were counted above; what is left failed without one (SQL rows).
        count = total - with_status if outcome == UNEXPECTED_STATUS else total
        if outcome == OK or count <= 0:
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


def success_check(
    stats: Stats, threshold: float, where: str, confidence: float | None = None
) -> Check:
    """Whether the success ratio of ``stats`` meets ``threshold``.

    With ``confidence`` (``window: auto``) the failures must also be few enough for the
    requests to show it with that confidence (:func:`.evidence.success_requests`): an app
    failing at the budget passes at most ``1 - confidence`` of the windows.
    """
    ratio = stats.success_ratio or 0.0
    actual, limit = format_percent(ratio), format_percent(threshold)
    if ratio >= threshold:
        if confidence is None:
            return Check("success_rate", True, actual, limit)
        needed = success_requests(threshold, stats.failures, confidence)
        if needed is not None and stats.requests >= needed:
            return Check("success_rate", True, actual, limit)
        failures = stats.failures
        noun = "failure" if failures == 1 else "failures"
        reason = (
            f"success {actual} over {stats.requests} requests {where} does not show {limit} "
            f"with {format_percent(confidence)} confidence yet: {failures} {noun} "
            f"need at least {needed} requests"
        )
    else:
        reason = f"success {actual} < {limit} {where}"
    hint = drift_hint(stats)
    details = hint or describe_failures(stats)
    if details:
        reason += f": {details}" if ratio < threshold else f" ({details})"
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


def summarize(stats: Stats, limits: dict[str, str]) -> str:
    """``"480 requests, success 100%, p95 12ms (limit 200ms)"`` for the reasons and logs."""
    parts = [f"{stats.requests} requests", f"success {format_percent(stats.success_ratio)}"]
    for name in LATENCY_QUANTILES:
        if name in limits:
            value = format_latency(getattr(stats, name))
            parts.append(f"{name} {value} (limit {limits[name]})")
    return ", ".join(parts)
