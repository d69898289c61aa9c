"""The latency plateau (``p50``/``p95``/``p99: auto``): warm once latency is where it is heading.

Theory of operation: a cold app that warms through use (a JIT, caches filling) gets faster along
a decay, fast at first and ever slower: ``q(t) ≈ floor + b·e^(-t/τ)``. Waiting for such a curve
to look flat waits for as long as its tail; judging it on evidence instead asks two questions,
both answered from the quantile of consecutive *spans* at the target level (each
:meth:`Plateau.span` long, a quarter of a window, and closed only once it holds at least
:data:`SPAN_REQUESTS` requests):

1. **Where is it heading?** The last ``3·g`` spans are cut into three groups of ``g``
   (:func:`group_size`: at least 3 spans and at least the hold) and each group is summarised by
   its median, so one hiccup in one span moves nothing. For three equally spaced points of an
   exponential decay the differences ``d1 = m2 - m1``, ``d2 = m3 - m2`` shrink by the same
   factor ``r = d2 / d1`` each step, and the rest of the fall is the geometric series
   ``d2·r / (1 - r)``: the floor is ``m3 + d2·r / (1 - r)`` (Aitken's Δ² extrapolation, exact for
   an exponential decay plus a constant). A difference within the noise — twice the standard
   error of a difference of two medians, or 1.5%, the
   histogram's resolution — counts as no change; the noise is measured by :func:`noise`, blind
   to the trend itself. The ratio ``r`` is taken at the slow end of what that noise allows, so a
   noisy ratio errs towards "no floor in sight yet", never towards a plateau. A fall that is not
   slowing down (``d2`` a real fall and ``r >= 1``, or a fall after no change) has no floor in
   sight.
2. **Is it there?** The quantile now (the last group's median) is within the tolerance of the
   floor, it has not fallen (or risen) by more than the tolerance from the group before — a
   group lasts at least the hold, so at opening the latency has not fallen by more than the
   tolerance over the hold — and the robust trend of every span kept (the Theil-Sen slope of
   ``ln(quantile)`` over up to :data:`HISTORY_GROUPS` groups) does not fall or rise by more
   than the tolerance over those spans either, so a slow decay hidden in the noise of one
   group's step still shows in the slope of many spans.

The answer depends on the spans alone: the same data gives the same verdict. Where it can be
fooled (see docs/deciding.md): a decay slower than the tolerance per group whose steps hide in
the noise of the span quantiles looks flat — that is the improvement the tolerance says not to
wait for.

Pure code, no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

GROUP_MIN = 3
"""Spans in a group at least: the median of three ignores one hiccup."""
HISTORY_GROUPS = 6
"""Groups of spans kept: the floor is fitted to the last three, the Theil-Sen slope to all."""
GROUP_MAX = 12
"""Spans in a group at most, whatever the hold: the history stays bounded."""
SPAN_REQUESTS = 20
"""Requests a span needs before its quantile counts (the 19th of 20 is the first p95 that is
not the maximum)."""
RESOLUTION = 0.015
"""Relative differences this small are the histogram's 1% buckets, not a change."""
NOISE_Z = 2.0
"""Standard errors a difference of two group medians must exceed to be a real change."""


def plateau_window(window: float, hold: float, window_auto: bool) -> float:
    """The window the spans are a quarter of: the window, or with ``window: auto`` (which has no
    fixed span) four thirds of the hold, so three spans of a third of it cover it; at least 2s."""
    return max(2.0, 4 * hold / 3) if window_auto else window


def group_size(span: float, hold: float) -> int:
    """Spans in a group: at least :data:`GROUP_MIN`, and enough to cover the hold."""
    covering = math.ceil(hold / span - 1e-9) if span > 0 else GROUP_MIN
    return max(GROUP_MIN, min(GROUP_MAX, covering))


@dataclass(frozen=True, slots=True)
class Trend:
    """Where the quantile of the spans kept stands and where it is heading.

    ``last`` and ``previous`` are the medians of the last two groups, ``change`` is
    ``last / previous - 1``, ``floor`` the fitted asymptote (``None``: still falling without
    slowing down, no floor in sight).
    """

    spans: int
    needed: int
    first: float | None = None
    previous: float | None = None
    last: float | None = None
    change: float | None = None
    floor: float | None = None
    drift: float | None = None
    """The Theil-Sen trend of ``ln(quantile)`` over every span kept (up to
    :data:`HISTORY_GROUPS` groups), as the relative change over those spans: a slow decay hidden
    in the noise of one group's step still shows in the slope of many spans."""

    def flat(self, tolerance: float) -> bool:
        """Whether the quantile is where it is heading: near the floor, no longer moving."""
        if self.spans < self.needed or self.change is None or self.last is None:
            return False
        if self.floor is None or self.floor <= 0:
            return False
        low = 1 / (1 + tolerance) - 1
        within = low <= self.change <= tolerance
        if self.drift is not None:
            within = within and low <= self.drift <= tolerance
        return within and self.last <= (1 + tolerance) * self.floor


def noise(values: list[float]) -> float:
    """The span-to-span noise (a standard deviation), blind to a smooth trend.

    Each span against the mean of its neighbours, ``v[i] - (v[i-1] + v[i+1]) / 2``, cancels
    any trend that is locally straight and has variance ``1.5 s^2`` for independent noise of
    deviation ``s``; the median absolute value of these, times 1.4826 (the normal scale),
    estimates ``s * sqrt(1.5)`` robustly.
    """
    if len(values) < 3:
        return 0.0
    curvature = [
        abs(values[i] - (values[i - 1] + values[i + 1]) / 2) for i in range(1, len(values) - 1)
    ]
    return 1.4826 * statistics.median(curvature) / math.sqrt(1.5)


def _margin(level: float, error: float) -> float:
    """How far two medians may differ by noise or the histogram's resolution alone."""
    return max(NOISE_Z * error, RESOLUTION * level)


def fit(values: list[float], group: int) -> Trend:
    """The trend of a series of span quantiles (oldest first), in groups of ``group`` spans."""
    needed = 3 * group
    n = len(values)
    first = values[0] if values else None
    if n < needed:
        return Trend(n, needed, first, None, values[-1] if values else None)
    recent = values[-needed:]
    groups = [recent[i * group : (i + 1) * group] for i in range(3)]
    m1, m2, m3 = (statistics.median(g) for g in groups)
    # The standard error of a difference of two group medians (a median's is 1.2533 s / sqrt(g)).
    error = math.sqrt(2) * 1.2533 * noise(recent) / math.sqrt(group)
    margin1, margin2 = _margin(max(m1, m2), error), _margin(max(m2, m3), error)
    d1 = m2 - m1 if abs(m2 - m1) > margin1 else 0.0
    d2 = m3 - m2 if abs(m3 - m2) > margin2 else 0.0
    floor: float | None = m3
    if d2 < 0:
        # Falling: a floor is in sight only if the fall is surely slowing down. The ratio of the
        # two falls is taken at the slow end of what the noise allows, so a noisy ratio errs
        # towards "no floor yet" and a lower floor, never towards a plateau.
        ratio = (-d2 + margin2) / (-d1 - margin1) if d1 < 0 and -d1 > margin1 else math.inf
        floor = m3 + d2 * ratio / (1 - ratio) if ratio < 1 else None
    change = m3 / m2 - 1 if m2 > 0 else None
    return Trend(n, needed, first, m2, m3, change, floor, drift(values, n))


def drift(values: list[float], horizon: int) -> float | None:
    """The Theil-Sen slope of ``ln(value)`` per span (the median of the slopes between every
    pair), as the relative change over ``horizon`` spans; robust to hiccups in under 29% of
    the spans."""
    logs = [math.log(max(value, 1e-9)) for value in values]
    n = len(logs)
    slopes = [(logs[j] - logs[i]) / (j - i) for i in range(n) for j in range(i + 1, n)]
    if not slopes:
        return None
    return math.expm1(statistics.median(slopes) * horizon)


class Plateau:
    """The quantile of consecutive spans at the target level, and where it is heading."""

    def __init__(self, window: float, hold: float = 0.0) -> None:
        self.window = window
        self.group = group_size(self.span, hold)
        self._values: deque[float] = deque(maxlen=HISTORY_GROUPS * self.group)
        self._trend: Trend | None = None
        self.span_started: float | None = None

    @property
    def span(self) -> float:
        """Seconds a span lasts at least: a quarter of a window."""
        return self.window / 4

    @property
    def needed(self) -> int:
        """Spans needed before anything is called a plateau: three groups."""
        return 3 * self.group

    def reset(self, now: float | None = None) -> None:
        """Forget the history (the level left the target); the next span starts at ``now``."""
        self._values.clear()
        self._trend = None
        self.span_started = now

    def due(self, now: float) -> bool:
        """Whether the current span has lasted long enough to be closed."""
        if self.span_started is None:
            self.span_started = now
        return now - self.span_started >= self.span

    def close(self, now: float, requests: int, value: float | None) -> None:
        """End the current span with its count and quantile, unless it holds too few requests."""
        if self.span_started is None or requests < SPAN_REQUESTS or value is None:
            return
        self._values.append(value)
        self._trend = None
        self.span_started = now

    def trend(self) -> Trend:
        """The trend through the spans kept (fitted again only when a span closes)."""
        if self._trend is None:
            self._trend = fit(list(self._values), self.group)
        return self._trend
