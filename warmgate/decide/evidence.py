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
- **the success rate s.** A window without failures shows the failure rate is within the budget
  ``p = 1 - s`` once an app failing at the budget would rarely be that clean: the binomial tail
  bound the ramp uses, ``exp(-n · KL(0 ‖ p)) = (1 - p)^n``, must be at most ``1 - confidence``:
  ``n >= ln(1 - confidence) / ln s`` (:func:`success_needed`, 299 at 99%).

Pure code, no I/O.
"""

from __future__ import annotations

import functools
import math

CONFIDENCE = 0.95
"""The confidence with which ``window: auto`` judges each threshold."""
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
    return max(1, math.ceil(math.log(1 - confidence) / math.log(success_rate) - 1e-9))


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
