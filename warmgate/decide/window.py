"""Samples and the sliding window they are judged over.

Theory of operation: every synthetic request becomes one :class:`Sample` when it completes —
when it was meant to be sent, when it finished, the concurrency level it was issued at, and how
it ended. The :class:`Window` does not keep samples: it counts them into *slices* of
``slice_width`` seconds (by completion time), one :class:`Tally` per (level, target) in each
slice — a latency histogram plus outcome counts. A query merges the tallies of the slices that
lie wholly inside the window, so a sample that completed ``span`` or more seconds ago never
counts, and the cost of a query depends on the number of slices and occupied latency buckets,
not on the request rate. Memory stays flat at any throughput, and the event loop that measures
latency is not kept busy judging it. A ``window: auto`` that grows towards its minute merges
whole seconds (:data:`BLOCK` slices, merged once and kept) instead of every slice, and its walk
back counts a second at once where no start within it can hold what is needed.

Percentiles come from the histogram (never below the exact value, at most 1% above);
:meth:`Stats.of` computes exact nearest-rank statistics for a list of samples. The percentiles a
gate judges may be corrected for coordinated omission and include requests still in flight
(:mod:`warmgate.decide.omission`); :class:`Stats` keeps the raw ones, as measured, beside them.

Failure details (driver messages) are counted per slice in at most :data:`DETAILS_KEPT` entries
(the space-saving algorithm), so an app that puts a fresh id in every error message cannot grow
the window.

Pure code: no clock of its own (callers pass ``now``), no I/O.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from warmgate.decide.evidence import upper_rank
from warmgate.decide.histogram import Histogram
from warmgate.decide.omission import percentiles
from warmgate.decide.outcomes import OK
from warmgate.kernel.units import milliseconds

DETAILS_KEPT = 8
"""Distinct failure details counted per slice and target; rarer ones give way."""
_QUANTILES = (0.50, 0.95, 0.99)
BLOCK = 10
"""Slices per block a long ``window: auto`` merges at once (a second of 100 ms slices)."""


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
    status: int | str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.outcome == OK

    @property
    def latency(self) -> float:
        """Seconds from the intended send time to completion."""
        return self.completed_at - self.issued_at


@dataclass(frozen=True, slots=True)
class Pending:
    """A request still in flight: when it was (meant to be) sent, its level and target."""

    issued_at: float
    level: int
    target: str


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0..1) of already sorted values; ``None`` when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Stats:
    """A summary of a set of requests. Latencies are in seconds."""

    requests: int = 0
    successes: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    failed_statuses: dict[int | str, int] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    """The most common detail of each failing outcome (``"connection refused"``)."""
    raw_p50: float | None = None
    raw_p95: float | None = None
    raw_p99: float | None = None
    """The percentiles of the completed requests as measured, before any correction (the
    judged ``p50``/``p95``/``p99`` may count stalls as users would have met them, and requests
    still in flight past the limit)."""
    slow_in_flight: int = 0
    """Requests still in flight, already past the latency limit, counted in the percentiles."""

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
        """Exact statistics of ``samples``. Percentiles cover every request, failed included."""
        tally = Tally()
        latencies: list[float] = []
        for sample in samples:
            tally.add(sample)
            latencies.append(sample.latency)
        latencies.sort()
        exact = [percentile(latencies, q) for q in _QUANTILES]
        return tally.stats(exact=(exact[0], exact[1], exact[2]))

    def as_dict(self) -> dict[str, float | int | None]:
        """The JSON shape used in the status file: latencies in milliseconds."""

        ratio = self.success_ratio
        return {
            "requests": self.requests,
            "success_ratio": None if ratio is None else round(ratio, 6),
            "p50_ms": milliseconds(self.p50),
            "p95_ms": milliseconds(self.p95),
            "p99_ms": milliseconds(self.p99),
            "raw_p50_ms": milliseconds(self.raw_p50),
            "raw_p95_ms": milliseconds(self.raw_p95),
            "raw_p99_ms": milliseconds(self.raw_p99),
            "slow_in_flight": self.slow_in_flight,
        }


@dataclass
class Tally:
    """Counts of a set of requests: latency histogram, outcomes, failed statuses, details."""

    latencies: Histogram = field(default_factory=Histogram)
    outcomes: Counter[str] = field(default_factory=Counter)
    failed_statuses: Counter[int | str] = field(default_factory=Counter)
    details: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, sample: Sample) -> None:
        """Count one request."""
        ok = sample.outcome == OK
        self.latencies.add(sample.completed_at - sample.issued_at, ok)
        self.outcomes[sample.outcome] += 1
        if not ok:
            if sample.status is not None:
                self.failed_statuses[sample.status] += 1
            elif sample.detail:
                self._count_detail((sample.outcome, sample.detail), 1)

    def _count_detail(self, key: tuple[str, str], count: int) -> None:
        """Space-saving: a new detail in a full table takes the place of the rarest one."""
        details = self.details
        if key not in details and len(details) >= DETAILS_KEPT:
            rarest, least = min(details.items(), key=lambda item: item[1])
            del details[rarest]
            count += least
        details[key] += count

    def merge(self, other: Tally) -> None:
        """Add every count of ``other``."""
        self.latencies.merge(other.latencies)
        # Plain loops: Counter.update's generality costs more than these few keys (hot path).
        outcomes = self.outcomes
        for outcome, count in other.outcomes.items():
            outcomes[outcome] += count
        if other.failed_statuses:
            statuses = self.failed_statuses
            for status, count in other.failed_statuses.items():
                statuses[status] += count
        if other.details:
            self.details.update(other.details)
            if len(self.details) > DETAILS_KEPT:
                self.details = Counter(dict(self.details.most_common(DETAILS_KEPT)))

    def stats(
        self,
        *,
        exact: tuple[float | None, float | None, float | None] | None = None,
        interval: float | None = None,
        in_flight: tuple[float, ...] = (),
        confidence: float | None = None,
    ) -> Stats:
        """The summary, percentiles read from the histogram (or ``exact`` ones as given).

        ``interval`` corrects the judged percentiles for coordinated omission (the closed
        loop's expected interval); ``in_flight`` adds the ages of slow requests still open.
        With ``confidence`` (``window: auto``) each judged percentile is the order statistic
        that bounds the true one with that confidence (:func:`.evidence.upper_rank`; the
        largest answer when none does), taken as the same share of a corrected count.
        """
        histogram = self.latencies
        raw = exact or tuple(histogram.percentile(q) for q in _QUANTILES)
        judged = raw
        quantiles: tuple[float, ...] = _QUANTILES
        if confidence is not None:
            n = histogram.requests + len(in_flight)
            ranks = [upper_rank(n, q, confidence) for q in _QUANTILES]
            quantiles = tuple(1.0 if k is None else (k - 0.5) / n for k in ranks)
        if interval is not None or in_flight or confidence is not None:
            judged = tuple(percentiles(histogram, quantiles, interval=interval, extra=in_flight))
        found: dict[str, str] = {}
        for (outcome, detail), _ in self.details.most_common():
            found.setdefault(outcome, detail)
        return Stats(
            requests=self.latencies.requests,
            successes=self.latencies.successes,
            p50=judged[0],
            p95=judged[1],
            p99=judged[2],
            outcomes=dict(self.outcomes),
            failed_statuses=dict(self.failed_statuses),
            details=found,
            raw_p50=raw[0],
            raw_p95=raw[1],
            raw_p99=raw[2],
            slow_in_flight=len(in_flight),
        )


class Window:
    """Counts of the requests that completed within the last ``span`` seconds."""

    def __init__(self, span: float, slice_width: float = 0.1) -> None:
        if span <= 0 or slice_width <= 0:
            raise ValueError("the window span and slice width must be positive")
        self.span = span
        self.slice_width = slice_width
        self._slices: dict[int, dict[tuple[int, str], Tally]] = {}
        self._order: deque[int] = deque()
        self._blocks: dict[int, dict[tuple[int, str], Tally]] = {}
        """Merged cells of whole blocks of :data:`BLOCK` slices, built when a long walk asks."""

    def add(self, sample: Sample) -> None:
        """Count a completed sample in the slice of its completion time."""
        index = math.floor(sample.completed_at / self.slice_width)
        cells = self._slices.get(index)
        if cells is None:
            cells = self._slices[index] = {}
            self._order.append(index)
            if len(self._order) > 1 and self._order[-2] > index:
                # A sample finished "before" the newest slice (clocks are monotonic, but be safe).
                self._order = deque(sorted(self._order))
            # Forget old slices here too, so a window nobody reads stays bounded.
            self.expire(sample.completed_at)
        if self._blocks:
            self._blocks.pop(index // BLOCK, None)  # a late sample in a block already merged
        key = (sample.level, sample.target)
        tally = cells.get(key)
        if tally is None:
            tally = cells[key] = Tally()
        tally.add(sample)

    def expire(self, now: float) -> None:
        """Forget slices that start at or before ``now - span``."""
        first = self._first_index(now - self.span)
        while self._order and self._order[0] < first:
            del self._slices[self._order.popleft()]
        if self._blocks:
            for block in [block for block in self._blocks if block * BLOCK < first]:
                del self._blocks[block]

    def _first_index(self, since: float) -> int:
        """The first slice that starts strictly after ``since``."""
        return math.floor(since / self.slice_width) + 1

    def _live_from(self, now: float, since: float | None) -> int:
        """Expire to ``now``; the first slice inside the window (and after ``since``)."""
        self.expire(now)
        first = self._first_index(now - self.span)
        if since is not None:
            first = max(first, self._first_index(since))
        return first

    def tally(
        self,
        now: float,
        *,
        level: int | None = None,
        target: str | None = None,
        since: float | None = None,
        blocks: bool = False,
    ) -> Tally:
        """Merged counts of the slices inside the window (and after ``since``), filtered.

        With ``blocks`` (a window of up to a minute) whole blocks of :data:`BLOCK` slices
        older than the newest are merged once and kept, so a long window costs a tenth of the
        merges; the counts are the same.
        """
        first = self._live_from(now, since)
        merged = Tally()
        newest = self._order[-1] // BLOCK if self._order else 0
        done = None
        for index in reversed(self._order):
            if index < first:
                break
            block = index // BLOCK
            if block == done:
                continue
            cells = self._slices[index]
            if blocks and block < newest and block * BLOCK >= first:
                cells, done = self._block(block), block
            for (cell_level, cell_target), tally in cells.items():
                if level is not None and cell_level != level:
                    continue
                if target is not None and cell_target != target:
                    continue
                merged.merge(tally)
        return merged

    def stats(
        self,
        now: float,
        *,
        level: int | None = None,
        target: str | None = None,
        since: float | None = None,
    ) -> Stats:
        """:class:`Stats` of :meth:`tally`, percentiles from the histogram."""
        return self.tally(now, level=level, target=target, since=since).stats()

    def start_holding(
        self,
        now: float,
        needs: dict[str | None, int],
        *,
        level: int | None = None,
        since: float | None = None,
        success: Callable[[int], int | None] | None = None,
        budget: float = 1.0,
    ) -> float | None:
        """Where the newest slices start that hold ``needs[target]`` requests of each target at
        ``level`` (``needs[None]``: of all targets together), inside the window and after
        ``since``; ``None`` when the whole window holds fewer.

        With ``success`` each also needs ``success(failures)`` requests for the failures among
        them (``None``: no number will do), so the window grows past failures until they are
        few enough; ``budget`` (the failure rate allowed) skips asking while they are plainly
        too many (``success(k)`` is at least ``k / budget``).
        """
        first = self._live_from(now, since)
        counts: dict[str | None, int] = dict.fromkeys(needs, 0)
        failures: dict[str | None, int] = dict.fromkeys(needs, 0)
        short = {name for name, need in needs.items() if need > 0}
        known: dict[int, int | None] = {}  # success(failures), asked once per count
        newest = self._order[-1] // BLOCK if self._order else 0
        done = seen = None
        for index in reversed(self._order):
            if index < first:
                break
            block = index // BLOCK
            if block == done:
                continue
            if success is not None and block != seen and block < newest and block * BLOCK >= first:
                # A whole block no length within which can hold: count it at once.
                seen = block
                grown, more = dict(counts), dict(failures)
                _count(self._block(block), level, grown, more)
                if not _may_hold(needs, failures, grown, success, budget=budget, known=known):
                    counts, failures, done = grown, more, block
                    continue
            _count(self._slices[index], level, counts, failures)
            short = {name for name in short if counts[name] < needs[name]}
            if short:
                continue
            if success is None or _shows_success(counts, failures, success, budget, known):
                return index * self.slice_width
        return None

    def _block(self, block: int) -> dict[tuple[int, str], Tally]:
        """The cells of the slices of ``block`` merged, newest first (built once)."""
        cached = self._blocks.get(block)
        if cached is None:
            cached = self._blocks[block] = {}
            for index in range((block + 1) * BLOCK - 1, block * BLOCK - 1, -1):
                for key, tally in self._slices.get(index, {}).items():
                    cell = cached.get(key)
                    if cell is None:
                        cell = cached[key] = Tally()
                    cell.merge(tally)
        return cached

    def since_for(self, start: float) -> float:
        """The ``since`` that makes :meth:`tally` begin with the slice starting at ``start``."""
        return start - self.slice_width / 2

    def observed(self, now: float, since: float | None = None) -> float:
        """Seconds the window's counts cover at ``now``: whole slices, and not before ``since``."""
        start = self._first_index(now - self.span) * self.slice_width
        if since is not None:
            start = max(start, since)
        return max(0.0, now - start)

    def clear(self) -> None:
        """Forget everything (a re-armed gate starts from nothing)."""
        self._slices.clear()
        self._order.clear()
        self._blocks.clear()


def _count(
    cells: dict[tuple[int, str], Tally],
    level: int | None,
    counts: dict[str | None, int],
    failures: dict[str | None, int],
) -> None:
    """Add the requests and failures of ``cells`` at ``level`` to each name's counts."""
    for (cell_level, cell_target), tally in cells.items():
        if level is not None and cell_level != level:
            continue
        requests = tally.latencies.requests
        failed = requests - tally.latencies.successes
        if None in counts:
            counts[None] += requests
            failures[None] += failed
        if cell_target in counts:
            counts[cell_target] += requests
            failures[cell_target] += failed


def _may_hold(
    needs: dict[str | None, int],
    failures: dict[str | None, int],
    grown: dict[str | None, int],
    success: Callable[[int], int | None],
    *,
    budget: float,
    known: dict[int, int | None],
) -> bool:
    """Whether some length within a block may hold every need: each name's requests with the
    whole block (``grown``) reach its need and what the failures before the block need."""
    for name, requests in grown.items():
        failed = failures[name]
        if requests < needs[name] or (failed and requests * budget < failed):
            return False
        needed = _success_need(failed, success, known)
        if needed is None or requests < needed:
            return False
    return True


def _success_need(
    failed: int, success: Callable[[int], int | None], known: dict[int, int | None]
) -> int | None:
    """``success(failed)``, asked once per count of a walk."""
    needed = known.get(failed, -1)
    if needed == -1:
        needed = known[failed] = success(failed)
    return needed


def _shows_success(
    counts: dict[str | None, int],
    failures: dict[str | None, int],
    success: Callable[[int], int | None],
    budget: float,
    known: dict[int, int | None],
) -> bool:
    """Whether each count holds enough requests for its failures (``known`` remembers the
    needs asked so far, so a walk asks ``success`` once per failure count)."""
    for name, requests in counts.items():
        failed = failures[name]
        if failed and requests * budget < failed:
            return False  # more failures than the budget allows: no count would do yet
        needed = _success_need(failed, success, known)
        if needed is None or requests < needed:
            return False
    return True
