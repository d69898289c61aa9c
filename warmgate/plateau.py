"""The latency plateau (``p95: auto``): warm once latency has stopped improving.

Theory of operation: comparing two windows cannot tell a plateau from a slow decay — an app
whose p95 falls 8% per window passes a "within ±10%" comparison while it still has halves to
go. So the plateau is judged as a *trend*. At the target level the gate cuts time into spans of
half a window (:meth:`Plateau.span`), each closed only once it holds at least
:data:`SPAN_REQUESTS` requests, and keeps the p95 of the last :data:`SPANS_KEPT` spans. A
least-squares line through ``ln(p95)`` against time gives the relative change per window; the
plateau holds when that change, projected over :data:`HORIZON` windows, lies within
``±tolerance`` with 95% confidence on each side (an equivalence test: the 90% confidence
interval of the projected change must lie inside the band). Logarithms make the test relative to
the level: 5 ms → 4.5 ms is the same trend as 500 ms → 450 ms.

What it costs and where it can be fooled (see docs/deciding.md): a flat app needs at least
:data:`SPANS_MIN` spans, two windows at the target level, before the first verdict, and longer
when its p95 is noisy (the interval must narrow into the band). A decay slower than
``tolerance / HORIZON`` per window (3.3% with the default 10%) is indistinguishable from flat by
design: it is the improvement the tolerance says not to wait for.

Pure code, no I/O.
"""

from __future__ import annotations

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

# One-sided 95% quantiles of Student's t by degrees of freedom (two-sided 90%).
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860}


@dataclass(frozen=True, slots=True)
class Trend:
    """The fitted p95 trend. Changes are relative (``-0.2`` is 20% faster) over
    :data:`HORIZON` windows; ``low``..``high`` is the 90% confidence interval."""

    spans: int
    first: float | None = None
    last: float | None = None
    change: float | None = None
    low: float | None = None
    high: float | None = None

    def flat(self, tolerance: float) -> bool:
        """Whether the trend is, with 95% confidence each way, within ``±tolerance``."""
        if self.low is None or self.high is None or self.spans < SPANS_MIN:
            return False
        return 1 / (1 + tolerance) - 1 <= self.low and self.high <= tolerance


def fit(points: list[tuple[float, float]], window: float) -> Trend:
    """The trend through ``(time, p95)`` points, time in seconds, ``window`` in seconds."""
    n = len(points)
    if n < 3:
        return Trend(n, points[0][1] if points else None, points[-1][1] if points else None)
    xs = [t / window for t, _ in points]
    ys = [math.log(max(p95, 1e-9)) for _, p95 in points]
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx <= 0:
        return Trend(n, points[0][1], points[-1][1])
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
    residuals = [y - (y_mean + slope * (x - x_mean)) for x, y in zip(xs, ys, strict=True)]
    error = math.sqrt(sum(r * r for r in residuals) / (n - 2) / sxx)
    margin = _T95.get(n - 2, 1.645) * error
    change, low, high = ((slope + d) * HORIZON for d in (0.0, -margin, margin))
    return Trend(
        n, points[0][1], points[-1][1], math.expm1(change), math.expm1(low), math.expm1(high)
    )


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
