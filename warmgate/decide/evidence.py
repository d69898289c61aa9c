"""How much evidence a threshold needs (``window: auto``): binomial bounds, exact and cached.

Theory of operation: with ``window: auto`` the gate judges the most recent requests, just enough
of them to judge every threshold with :data:`CONFIDENCE`:

- **a latency limit on quantile q.** The ``k``-th smallest of ``n`` answers lies at or above the
  true q-quantile unless ``k`` or more answers fall below it, so ``P(X_(k) >= ξ_q) =
  P(Binomial(n, q) <= k - 1)``. The judged value is the order statistic of the smallest rank
  ``k`` that makes this at least the confidence (:func:`upper_rank`): when it passes the limit,
  the true quantile does too, with that confidence. It exists once even the largest answer
  bounds the quantile, ``1 - q^n >= confidence``: ``n >= ln(1 - confidence) / ln q``
  (:func:`quantile_needed`, 59 answers for a p95, 299 for a p99 at 95%).
- **the success rate s.** ``k`` failures among ``n`` answers show the failure rate is within
  the budget ``p = 1 - s`` when an app failing at the budget would rarely show that few: the
  exact binomial tail ``P(Binomial(n, p) <= k)`` (the one-sided Clopper-Pearson bound) must be
  at most ``1 - confidence``. The window grows backwards until the failures seen allow it, and
  testing every length it passes through at ``1 - confidence`` would let an app at the budget
  pass one walk in seven over 1,200 requests and one in four over 6,000. So the tail is spent
  as a sequential test: ``k`` failures need ``n_k`` answers (:func:`success_requests`), the
  ``n_k`` chosen in turn so that the exact chance that an app failing at the budget ever shows
  ``n_k`` answers with at most ``k`` failures, over every ``k``, stays within
  ``(1 - confidence) · (1 - (1 - FIRST_SHARE) / (k + 1))`` — never more than ``1 - confidence``
  in all. Each ``n_k`` also passes the pointwise exact tail. A clean window needs
  ``ln((1 - confidence) · FIRST_SHARE) / ln s`` answers (:func:`success_needed`, 321 at 99%);
  at 99%, 1 failure needs 639, 2 need 909, 10 need 2,471.

Pure code, no I/O.
"""

from __future__ import annotations

import functools
import math

CONFIDENCE = 0.95
"""The confidence with which ``window: auto`` judges each threshold."""
FIRST_SHARE = 0.8
"""The share of the success rate's error a clean window spends; the rest covers the windows that
grow past their first failures."""
_NORMAL_FROM = 10.0
"""The binomial's standard deviation from which its normal approximation is used."""


def quantile_needed(q: float, confidence: float = CONFIDENCE) -> int:
    """Answers needed before the largest one bounds the q-quantile with ``confidence``."""
    if q <= 0:
        return 1
    return max(1, math.ceil(math.log(1 - confidence) / math.log(q) - 1e-9))


def success_needed(success_rate: float, confidence: float = CONFIDENCE) -> int:
    """Answers a clean window needs to show the failure rate is within the budget."""
    if success_rate >= 1:
        return 1  # any failure fails; one answer shows as much as many
    return _boundary(success_rate, confidence).needed(0)


def success_requests(
    success_rate: float, failures: int, confidence: float = CONFIDENCE
) -> int | None:
    """Answers a window with ``failures`` failures needs to show the failure rate is within the
    budget ``1 - success_rate`` (the sequential test above); ``None``: no number does (a 100%
    rate with a failure)."""
    if success_rate >= 1:
        return 1 if failures <= 0 else None
    return _boundary(success_rate, confidence).needed(max(0, failures))


def _boundary(success_rate: float, confidence: float) -> _Boundary:
    """The sequential test of ``success_rate`` at ``confidence``, built once."""
    boundary = _boundaries.get((success_rate, confidence))
    if boundary is None:
        boundary = _boundaries[(success_rate, confidence)] = _Boundary(
            1 - success_rate, 1 - confidence
        )
    return boundary


class _Boundary:
    """The requests ``n_k`` each failure count ``k`` needs, extended as larger counts are asked.

    Exact dynamic programming over the failures of an app failing at the budget, walked from
    the newest answer back: ``alive[i]`` is the chance that none of ``n_0 .. n_k`` has passed
    and the first ``n_k`` answers hold ``offset + i`` failures. Surviving ``n_k`` means more than
    ``k`` failures, so only the paths with exactly ``k + 1`` of them can pass at ``n_{k+1}``, if
    no failure follows: ``n_{k+1}`` is the first count at which their chance fits the spending.
    Paths dropped as negligible (under ``1e-15``) count as passed, so the error stays bounded.
    """

    __slots__ = ("alive", "budget", "error", "needs", "offset", "passed")

    def __init__(self, budget: float, error: float) -> None:
        self.budget = budget
        self.error = error
        self.needs: list[int] = []
        self.alive = [1.0]
        self.offset = 0
        self.passed = 0.0

    def needed(self, failures: int) -> int:
        needs = self.needs
        while len(needs) <= failures:
            self._extend()
        return needs[failures]

    def _extend(self) -> None:
        k = len(self.needs)
        budget, alive, offset = self.budget, self.alive, self.offset
        log_clean = math.log1p(-budget)
        spend = self.error * (1 - (1 - FIRST_SHARE) / (k + 1))
        at_k = alive[k - offset] if 0 <= k - offset < len(alive) else 0.0
        room = spend - self.passed
        gap = 0
        if at_k > room:
            gap = max(0, math.ceil(math.log(room / at_k) / log_clean - 1e-12))
        self.needs.append((self.needs[-1] if self.needs else 0) + gap)
        # Advance every surviving path by ``gap`` answers: Binomial(gap, budget) more failures.
        terms = [math.exp(gap * log_clean)]
        log_odds = math.log(budget) - log_clean
        log_term = gap * log_clean
        for j in range(gap):
            log_term += math.log(gap - j) - math.log(j + 1) + log_odds
            term = math.exp(log_term)
            terms.append(term)
            if term < _NEGLIGIBLE and j + 1 > gap * budget:
                break
        lost = 1.0 - math.fsum(terms)  # the binomial's far tail, not followed
        moved = [0.0] * (len(alive) + len(terms) - 1)
        for i, mass in enumerate(alive):
            if mass:
                for j, term in enumerate(terms):
                    moved[i + j] += mass * term
        cut = max(0, k - offset + 1)  # at most k failures among n_k answers: passed
        passed = math.fsum(moved[:cut]) + max(0.0, lost) * math.fsum(alive)
        moved = moved[cut:]
        while moved and moved[-1] < _NEGLIGIBLE:
            passed += moved.pop()
        self.passed += passed
        self.alive = moved
        self.offset = offset + cut


_NEGLIGIBLE = 1e-15
_boundaries: dict[tuple[float, float], _Boundary] = {}


@functools.lru_cache(maxsize=4096)
def upper_rank(n: int, q: float, confidence: float = CONFIDENCE) -> int | None:
    """The smallest rank ``k`` with ``P(Binomial(n, q) <= k - 1) >= confidence``; ``None`` when
    even the largest of ``n`` answers does not bound the q-quantile with that confidence.

    Exact (the upper tail summed from the top, a few hundred terms at most) while the binomial's
    standard deviation is under :data:`_NORMAL_FROM`; beyond, the normal approximation with a
    continuity correction, one rank higher to stay on the safe side.
    """
    if n <= 0 or 1 - q**n < confidence:
        return None
    deviation = math.sqrt(n * q * (1 - q))
    if deviation >= _NORMAL_FROM:
        z = _normal_quantile(confidence)
        return min(n, math.ceil(n * q + z * deviation + 0.5) + 1)
    log_q, log_rest = math.log(q), math.log1p(-q)
    log_term = n * log_q  # P(X = n)
    tail = 0.0
    for i in range(n, 0, -1):
        tail += math.exp(log_term)  # P(X >= i)
        if tail > 1 - confidence + 1e-12:
            return i + 1
        # P(X = i - 1) = P(X = i) * i / (n - i + 1) * (1 - q) / q
        log_term += math.log(i) - math.log(n - i + 1) + log_rest - log_q
    return 1


@functools.cache
def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on ``erf`` (once per confidence)."""
    low, high = -10.0, 10.0
    for _ in range(80):
        middle = (low + high) / 2
        if 0.5 * (1 + math.erf(middle / math.sqrt(2))) < p:
            low = middle
        else:
            high = middle
    return high
