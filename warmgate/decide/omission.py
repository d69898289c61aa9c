"""Coordinated omission: latency as users arriving at the observed rate would feel it.

Theory of operation: a closed-loop worker sends its next request only when the last one ends.
When the app freezes for 0.8 s, each worker records one slow request and then nothing until the
freeze ends, so the freeze is a handful of samples among thousands — yet users arriving at the
same rate during those 0.8 s would all have waited. The expected-interval correction
(HdrHistogram's ``recordValueWithExpectedInterval``, wrk's ``stats_correct``) puts those users
back: with ``I`` the interval between one worker's requests at the observed rate, a request that
took ``v`` stands for the requests that would have been sent ``I, 2I, …`` after it, which would
have waited ``v - I, v - 2I, …`` down to ``I``.

``I`` is measured, not assumed: ``level * seconds observed / requests completed``, the mean time
between one worker's requests (wrk's formula). A stall lengthens it, which makes the correction
milder, not stronger. The correction changes latency percentiles only — never request counts or
success ratios — and applies only to the closed loop: paced load already measures from the
intended send time, so correcting it again would count the same wait twice.

Requests still in flight can join the percentiles too (``extra``): their age so far is a lower
bound of their latency, so counting one never makes a percentile look better than it is.

The synthetic requests are counted, never stored: for a candidate latency ``x``, a value ``v``
contributes itself when ``v > x`` plus ``ceil((v - x) / I) - 1`` synthetic values above ``x``
(all ``floor(v / I) - 1`` of them when ``x < I``). A percentile is the smallest histogram bucket
edge with enough values at or below it, found by bisection over the bucket indices: a few dozen
passes over the occupied buckets, whatever the request rate.

Pure code, no I/O.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

from warmgate.decide.histogram import BUCKETS, Histogram, bucket_index, bucket_value


def expected_interval(level: int, observed: float, requests: int) -> float | None:
    """Seconds between one closed-loop worker's requests: ``level * observed / requests``."""
    if level <= 0 or observed <= 0 or requests <= 0:
        return None
    return level * observed / requests


def synthetic(value: float, interval: float) -> int:
    """How many users a request of ``value`` seconds stands for besides itself."""
    return max(0, math.floor(value / interval) - 1)


def _synthetic_above(value: float, x: float, interval: float) -> int:
    if x < interval:
        return synthetic(value, interval)
    if value <= x:
        return 0
    return max(0, math.ceil((value - x) / interval) - 1)


def percentiles(
    histogram: Histogram,
    quantiles: Sequence[float],
    *,
    interval: float | None = None,
    extra: Iterable[float] = (),
) -> list[float | None]:
    """Nearest-rank percentiles of ``histogram`` plus ``extra`` latencies, corrected with the
    expected ``interval`` when one is given. Like the histogram's own, never below the value
    an exact computation would give, at most one bucket (1%) above it.
    """
    counts = dict(histogram.buckets)
    for latency in extra:
        index = bucket_index(latency)
        counts[index] = counts.get(index, 0) + 1
    if not counts:
        return [None for _ in quantiles]
    values = sorted((bucket_value(index), count) for index, count in counts.items())
    real = sum(count for _, count in values)
    if interval is None or interval <= 0 or values[-1][0] < 2 * interval:
        return [_plain(values, real, q) for q in quantiles]
    edges = [value for value, _ in values]
    # Requests at or above each position, so "how many real values exceed x" is one bisection.
    at_or_above = list(itertools.accumulate(reversed([count for _, count in values])))[::-1]
    at_or_above.append(0)
    first_slow = bisect.bisect_left(edges, 2 * interval)
    synthetic_total = sum(
        count * synthetic(value, interval) for value, count in values[first_slow:]
    )
    total = real + synthetic_total

    def above(x: float) -> int:
        position = bisect.bisect_right(edges, x)
        if x < interval:
            return at_or_above[position] + synthetic_total
        return at_or_above[position] + sum(
            count * _synthetic_above(value, x, interval)
            for value, count in values[max(position, first_slow) :]
        )

    top = max(counts)
    found: list[float | None] = []
    for q in quantiles:
        allowed_above = total - max(1, math.ceil(q * total))
        low, high = 0, min(top, BUCKETS - 1)
        while low < high:
            middle = (low + high) // 2
            if above(bucket_value(middle)) <= allowed_above:
                high = middle
            else:
                low = middle + 1
        found.append(bucket_value(low))
    return found


def _plain(values: list[tuple[float, int]], total: int, q: float) -> float:
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, count in values:
        seen += count
        if seen >= rank:
            return value
    return values[-1][0]
