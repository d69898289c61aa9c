"""The latency plateau (``p95: auto``): warm once latency has stopped improving.

Theory of operation: comparing two windows cannot tell a plateau from a slow decay — an app
whose p95 falls 8% per window passes a "within ±10%" comparison while it still has halves to
go. So the plateau is judged as a *trend*. At the target level the gate cuts time into spans of
half a window (:meth:`Plateau.span`), each closed only once it holds at least
:data:`SPAN_REQUESTS` requests, and keeps the p95 of the last :data:`SPANS_KEPT` spans (three
windows). Two robust statistics of ``ln(p95)`` against time decide, so that one hiccup in one
span neither fakes nor hides a trend:

- the Theil-Sen slope (the median of the slopes between every pair of spans), projected over
  :data:`HORIZON` windows, must lie within ``±tolerance`` — logarithms make it relative to the
  level, so 5 ms → 4.5 ms is the same trend as 500 ms → 450 ms;
- the Mann-Kendall test must find no significant monotonic trend (two-sided, exact
  permutation p-value ≥ :data:`SIGNIFICANCE`): a series that keeps falling span after span is
  still improving, however gently.

What it costs and where it can be fooled (see docs/deciding.md): a flat app needs at least
:data:`SPANS_MIN` spans, two windows at the target level, before the first verdict; a noisy one
longer. A decay slower than ``tolerance / HORIZON`` per window (3.2% with the default 10%)
buried in span-to-span noise can pass: it is the improvement the tolerance says not to wait for.

Pure code, no I/O.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import deque
from dataclasses import dataclass

SPANS_MIN = 4
"""Spans needed before a trend is judged: fewer cannot separate a trend from noise."""
SPANS_KEPT = 6
"""Spans in the fit (three windows): older ones would let an earlier decay hide a plateau."""
SPAN_REQUESTS = 20
"""Requests a span needs before its p95 counts (the 19th of 20 is the first p95 that is not
the maximum)."""
HORIZON = 3
"""Windows over which the fitted change must stay within the tolerance."""

SIGNIFICANCE = 0.05
"""Mann-Kendall p-value below which a monotonic trend is real, not noise."""


@dataclass(frozen=True, slots=True)
class Trend:
    """The p95 trend of the spans kept. ``change`` is relative (``-0.2``: 20% faster) over
    :data:`HORIZON` windows; ``p_value`` is the Mann-Kendall test's for any monotonic trend."""

    spans: int
    first: float | None = None
    last: float | None = None
    change: float | None = None
    p_value: float = 1.0

    def flat(self, tolerance: float) -> bool:
        """Whether the p95 has stopped moving: within ``±tolerance`` and no significant trend."""
        if self.change is None or self.spans < SPANS_MIN:
            return False
        within = 1 / (1 + tolerance) - 1 <= self.change <= tolerance
        return within and self.p_value >= SIGNIFICANCE


@functools.cache
def _kendall_counts(n: int) -> dict[int, int]:
    """How many orderings of ``n`` distinct values have each Mann-Kendall ``S``."""
    counts: dict[int, int] = {}
    for order in itertools.permutations(range(n)):
        s = sum(
            (order[j] > order[i]) - (order[j] < order[i]) for i in range(n) for j in range(i + 1, n)
        )
        counts[s] = counts.get(s, 0) + 1
    return counts


def mann_kendall(values: list[float]) -> float:
    """The exact two-sided p-value of the Mann-Kendall trend test (ties count as no change)."""
    n = len(values)
    if n < 3:
        return 1.0
    s = sum(
        (values[j] > values[i]) - (values[j] < values[i]) for i in range(n) for j in range(i + 1, n)
    )
    counts = _kendall_counts(n)
    extreme = sum(count for other, count in counts.items() if abs(other) >= abs(s))
    return extreme / math.factorial(n)


def fit(points: list[tuple[float, float]], window: float) -> Trend:
    """The trend through ``(time, p95)`` points, time and ``window`` in seconds."""
    n = len(points)
    first = points[0][1] if points else None
    last = points[-1][1] if points else None
    if n < 2:
        return Trend(n, first, last)
    xs = [t / window for t, _ in points]
    ys = [math.log(max(p95, 1e-9)) for _, p95 in points]
    slopes = sorted(
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(n)
        for j in range(i + 1, n)
        if xs[j] > xs[i]
    )
    if not slopes:
        return Trend(n, first, last)
    middle = len(slopes) // 2
    slope = slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2
    return Trend(n, first, last, math.expm1(slope * HORIZON), mann_kendall(ys))


class Plateau:
    """The p95 of consecutive spans at the target level, and their trend."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._points: deque[tuple[float, float]] = deque(maxlen=SPANS_KEPT)
        self.span_started: float | None = None

    @property
    def span(self) -> float:
        """Seconds a span lasts at least: half a window."""
        return self.window / 2

    def reset(self, now: float | None = None) -> None:
        """Forget the history (the level left the target); the next span starts at ``now``."""
        self._points.clear()
        self.span_started = now

    def due(self, now: float) -> bool:
        """Whether the current span has lasted long enough to be closed."""
        if self.span_started is None:
            self.span_started = now
        return now - self.span_started >= self.span

    def close(self, now: float, requests: int, p95: float | None) -> None:
        """End the current span with its count and p95, unless it holds too few requests yet."""
        if self.span_started is None or requests < SPAN_REQUESTS or p95 is None:
            return
        self._points.append(((self.span_started + now) / 2, p95))
        self.span_started = now

    def trend(self) -> Trend:
        """The trend through the spans kept."""
        return fit(list(self._points), self.window)
