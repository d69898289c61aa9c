"""The ramp: how many requests may be in flight right now.

Theory of operation: like TCP slow start for a fragile cold app. The level starts at 1. Every
``step`` seconds (once the current level has produced enough samples to judge) the ramp looks at
the *evidence* of the current level: the requests issued at it since it was last reached,
bounded by the window — at the target level, exactly what the gate judges. If the success rate
is met the level doubles, capped at the target. If it is not, the level halves (never below 1)
only when the shortfall is statistically meaningful: the Chernoff bound on the binomial tail,
``P(X >= failures) <= exp(-n * KL(failures/n || budget))`` with ``budget = 1 - success_rate``,
must fall below :data:`SIGNIFICANCE`. Otherwise the ramp waits for more evidence. So one error
among five requests at 80 req/s never halves the level, a failure rate within the budget cannot
trigger a back-off except by a one-in-a-thousand (bound) fluke, and at the target level the ramp
never backs off on evidence the gate would accept (the gate needs the success rate met, which
rules a back-off out).

A level is judged once it has answered ``min(min_samples, 2 * level)`` requests, or, when its
answers take longer than a step, once ``min(level // 2, 2)`` of them (at least one) have
answered (:meth:`Ramp.enough`): a slow answer is no failure, and no reason to wait a second
answer time per level — but one answer alone would double the level while the rest of it may
be about to time out. Half the level are the workers that joined at the change and answer
first; the others are still finishing requests issued at the level before.

Latency does not hold the ramp back: a cold app is slow by definition and often warms *through*
traffic (its pools and JIT need requests), so high latency is the gate's business, not the
ramp's; overload shows up as errors and timeouts, which are. The level never exceeds the cap,
so a paced (open-model) load scales its rate with it: ``rate * level / target``.

Pure code: callers pass ``now`` and the samples; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from warmgate.decide.checks import success_check
from warmgate.decide.gate import Thresholds
from warmgate.decide.window import Stats

SIGNIFICANCE = 0.001
"""The largest (bounded) chance that a failure rate within the budget backs the ramp off."""


@dataclass(frozen=True, slots=True)
class Step:
    """A ramp decision: the new level and why."""

    level: int
    previous: int
    reason: str

    @property
    def changed(self) -> bool:
        """Whether the level moved."""
        return self.level != self.previous


def tail_bound(failures: int, requests: int, budget: float) -> float:
    """An upper bound on ``P(X >= failures)`` for ``X ~ Binomial(requests, budget)``.

    The Chernoff bound ``exp(-n * KL(k/n || p))`` for ``k/n > p``; 1 otherwise.
    """
    if requests <= 0 or failures <= budget * requests:
        return 1.0
    if budget <= 0:
        return 0.0
    share = failures / requests
    divergence = share * math.log(share / budget)
    if share < 1:
        divergence += (1 - share) * math.log((1 - share) / (1 - budget))
    return math.exp(-requests * divergence)


class Ramp:
    """Raises the concurrency level toward ``target`` while the app copes, halves it when not."""

    def __init__(
        self, target: int, thresholds: Thresholds, step: float = 1.0, min_samples: int = 5
    ) -> None:
        if target < 1:
            raise ValueError("the target concurrency must be at least 1")
        self.target = target
        self.thresholds = thresholds
        self.step = step
        self.min_samples = min_samples
        self.level = 1
        self.changed_at = 0.0
        """When the level last changed: its evidence starts here."""
        self.judged_at = 0.0

    def start(self, now: float, level: int = 1) -> None:
        """Begin (again) at ``level``, clamped to 1..target."""
        self.level = max(1, min(self.target, level))
        self.changed_at = now
        self.judged_at = now

    def due(self, now: float) -> bool:
        """Whether a step has passed since the last judgement (else :meth:`decide` waits)."""
        return now - self.judged_at >= self.step

    def decide(self, now: float, evidence: Stats) -> Step:
        """Judge the evidence of the current level; maybe move.

        ``evidence`` summarises the requests at ``self.level`` that completed after
        ``self.changed_at`` (bounded by the window).
        """
        previous = self.level
        if not self.due(now):
            return Step(previous, previous, "")
        if not self.enough(evidence):
            return Step(previous, previous, "")
        self.judged_at = now
        where = f"at concurrency {previous}"
        health = success_check(evidence, self.thresholds.success_rate, where)
        level, reason = previous, ""
        if health.passed:
            if previous < self.target:
                level = min(self.target, previous * 2)
                reason = f"raising to {level}: healthy {where}"
        elif self._meaningful(evidence):
            level = max(1, previous // 2)
            reason = f"backing off to {level}: {health.reason}"
        if level != previous:
            self.level = level
            self.changed_at = now
        return Step(level, previous, reason)

    def enough(self, evidence: Stats) -> bool:
        """Whether the current level has answered enough to be judged.

        Normally ``min(min_samples, 2 * level)`` answers. Answers slower than a step (their
        median, as measured) are judged on the first ``min(level // 2, 2)``, at least one: the
        first round comes from the ``level // 2`` workers that joined at the change, and
        waiting for a second round would cost a whole answer time per level (such an answer is
        no failure), but a single answer while others at the level are still in flight (and may
        be about to time out) is too little to double it on. At the target level the gate
        still needs its own ``min_requests``.
        """
        if evidence.requests >= min(self.min_samples, self.level * 2):
            return True
        slow = evidence.raw_p50 is not None and evidence.raw_p50 >= self.step
        return slow and evidence.requests >= max(1, min(self.level // 2, 2))

    def _meaningful(self, evidence: Stats) -> bool:
        """Whether the failures are too many to be a failure rate within the budget by chance."""
        budget = 1.0 - self.thresholds.success_rate
        return tail_bound(evidence.failures, evidence.requests, budget) < SIGNIFICANCE
