"""Samples and the sliding window they are judged over.

Theory of operation: every synthetic request becomes one :class:`Sample` when it completes —
when it was meant to be sent, when it finished, the concurrency level it was issued at, and how
it ended. The :class:`Window` keeps the samples that completed in the last ``span`` seconds and
summarises any slice of them (by level, by target, by issue time) into :class:`Stats`: counts,
success ratio and nearest-rank latency percentiles.

Pure code: no clock of its own (callers pass ``now``), no I/O.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

OK = "ok"
"""The outcome of a request that succeeded."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One completed synthetic request.

    ``issued_at`` is the *intended* send time when the load is paced, so queueing delay in the
    client counts as latency (no coordinated omission).
    """

    issued_at: float
    completed_at: float
    level: int
    target: str
    outcome: str = OK
    status: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.outcome == OK

    @property
    def latency(self) -> float:
        """Seconds from the intended send time to completion."""
        return self.completed_at - self.issued_at


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0..1) of already sorted values; ``None`` when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Stats:
    """A summary of a set of samples. Latencies are in seconds."""

    requests: int = 0
    successes: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    failed_statuses: dict[int, int] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    """The most common detail of each failing outcome (``"connection refused"``)."""

    @property
    def success_ratio(self) -> float | None:
        """Share of requests that succeeded, or ``None`` without requests."""
        return self.successes / self.requests if self.requests else None

    @property
    def failures(self) -> int:
        """Requests that did not succeed."""
        return self.requests - self.successes

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Stats:
        """Summarise ``samples``. Percentiles cover every request, failed ones included."""
        latencies: list[float] = []
        outcomes: Counter[str] = Counter()
        statuses: Counter[int] = Counter()
        details: Counter[tuple[str, str]] = Counter()
        for sample in samples:
            latencies.append(sample.latency)
            outcomes[sample.outcome] += 1
            if not sample.ok:
                if sample.status is not None:
                    statuses[sample.status] += 1
                elif sample.detail:
                    details[sample.outcome, sample.detail] += 1
        latencies.sort()
        return cls(
            requests=len(latencies),
            successes=outcomes[OK],
            p50=percentile(latencies, 0.50),
            p95=percentile(latencies, 0.95),
            p99=percentile(latencies, 0.99),
            outcomes=dict(outcomes),
            failed_statuses=dict(statuses),
            details=_most_common_detail(details),
        )

    def as_dict(self) -> dict[str, float | int | None]:
        """The JSON shape used in the status file: latencies in milliseconds."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        ratio = self.success_ratio
        return {
            "requests": self.requests,
            "success_ratio": None if ratio is None else round(ratio, 6),
            "p50_ms": ms(self.p50),
            "p95_ms": ms(self.p95),
            "p99_ms": ms(self.p99),
        }


def _most_common_detail(details: Counter[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for (outcome, detail), _ in details.most_common():
        found.setdefault(outcome, detail)
    return found


class Window:
    """The samples that completed within the last ``span`` seconds."""

    def __init__(self, span: float) -> None:
        if span <= 0:
            raise ValueError("the window span must be positive")
        self.span = span
        self._samples: deque[Sample] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: Sample) -> None:
        """Record a completed sample."""
        self._samples.append(sample)

    def expire(self, now: float) -> None:
        """Forget samples that completed at or before ``now - span``."""
        cutoff = now - self.span
        samples = self._samples
        # Samples arrive in completion order, so the oldest are on the left.
        while samples and samples[0].completed_at <= cutoff:
            samples.popleft()

    def select(
        self,
        now: float,
        *,
        level: int | None = None,
        target: str | None = None,
        issued_since: float | None = None,
    ) -> Iterator[Sample]:
        """Samples in the window at ``now``, optionally only those matching every filter."""
        self.expire(now)
        for sample in self._samples:
            if level is not None and sample.level != level:
                continue
            if target is not None and sample.target != target:
                continue
            if issued_since is not None and sample.issued_at < issued_since:
                continue
            yield sample

    def clear(self) -> None:
        """Forget every sample (a re-armed gate starts from nothing)."""
        self._samples.clear()
