"""Latency histograms with log-spaced buckets: constant memory, percentiles within 1%.

Theory of operation: a latency falls into bucket ``i`` when it lies between the bucket's lower
and upper edge, each edge 1% above the one before, from 0.1 ms up. Counting is O(1) per request
and merging two histograms costs one step per occupied bucket, so the window and the warm-up
record keep counts instead of every request. A percentile is read as the upper edge of the
bucket holding its rank: never below the exact value, at most 1% above it — a gate that errs,
errs on the side of "not yet".

Pure code, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from warmgate.kernel.units import milliseconds

BUCKET_RATIO = 1.01
"""Each bucket is 1% wider than the one before: percentiles are within 1%, never below."""
_MIN_LATENCY = 0.0001
BUCKETS = 2000  # 0.1 ms .. beyond an hour


def bucket_index(latency: float) -> int:
    """The bucket a latency falls into."""
    if latency <= _MIN_LATENCY:
        return 0
    index = int(math.log(latency / _MIN_LATENCY, BUCKET_RATIO)) + 1
    return min(index, BUCKETS - 1)


def bucket_value(index: int) -> float:
    """The upper edge of a bucket: percentiles never understate latency."""
    return float(_MIN_LATENCY * BUCKET_RATIO**index)


@dataclass
class Histogram:
    """Counts of requests by latency bucket (1% wide), with successes counted apart."""

    requests: int = 0
    successes: int = 0
    buckets: dict[int, int] = field(default_factory=dict)

    def add(self, latency: float, ok: bool) -> None:
        """Count one request."""
        self.requests += 1
        self.successes += ok
        index = bucket_index(latency)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: Histogram) -> None:
        """Add every count of ``other``."""
        self.requests += other.requests
        self.successes += other.successes
        buckets = self.buckets
        for index, count in other.buckets.items():
            buckets[index] = buckets.get(index, 0) + count

    def percentile(self, q: float) -> float | None:
        """The latency at quantile ``q``, at most 1% above the exact value; ``None`` if empty."""
        if not self.requests:
            return None
        rank = max(1, math.ceil(q * self.requests))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.buckets))

    def summary(self) -> dict[str, float | int | None]:
        """Requests, success ratio and p50/p95/p99 in milliseconds."""

        return {
            "requests": self.requests,
            "success_ratio": round(self.successes / self.requests, 6) if self.requests else None,
            "p50_ms": milliseconds(self.percentile(0.50)),
            "p95_ms": milliseconds(self.percentile(0.95)),
            "p99_ms": milliseconds(self.percentile(0.99)),
        }

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "requests": self.requests,
            "successes": self.successes,
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        """The inverse of :meth:`to_json`."""
        buckets = {int(k): int(v) for k, v in data.get("buckets", {}).items()}
        return cls(int(data.get("requests", 0)), int(data.get("successes", 0)), buckets)
