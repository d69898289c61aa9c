"""The ramp: how many requests may be in flight right now.

Theory of operation: like TCP slow start for a fragile cold app. The level starts at 1. Every
``step`` seconds (and once the current level has produced enough samples to judge) the ramp looks
at the requests issued since the level last changed. If they were healthy — the success rate
met — the level doubles, capped at the target. If not, it halves, never below 1. Latency does
not hold the ramp back: a cold app is slow by definition and often warms *through* traffic (its
pools and JIT need requests), so high latency is the gate's business, not the ramp's; overload
shows up as errors and timeouts, which are. At the target it stays while healthy. The level
never exceeds the cap, so a paced (open-model) load scales its rate with it:
``rate * level / target``.

Pure code: callers pass ``now`` and the samples; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from warmgate.gate import Thresholds, success_check
from warmgate.window import Stats


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

    def start(self, now: float, level: int = 1) -> None:
        """Begin (again) at ``level``, clamped to 1..target."""
        self.level = max(1, min(self.target, level))
        self.changed_at = now

    def decide(self, now: float, relevant: Stats) -> Step:
        """Judge the requests at the current level since the last judgement; maybe move.

        ``relevant`` summarises the requests at ``self.level`` that completed after
        ``self.changed_at``.
        """
        previous = self.level
        if now - self.changed_at < self.step:
            return Step(previous, previous, "")
        # A slow app may not answer enough within one step; judge only once it has.
        if relevant.requests < min(self.min_samples, previous * 2):
            return Step(previous, previous, "")
        where = f"at concurrency {previous}"
        health = success_check(relevant, self.thresholds.success_rate, where)
        if not health.passed:
            level = max(1, previous // 2)
            reason = f"backing off to {level}: {health.reason}"
        elif previous < self.target:
            level = min(self.target, previous * 2)
            reason = f"raising to {level}: healthy {where}"
        else:
            level = previous
            reason = ""
        # Every judgement starts a fresh step, so old samples never dilute the next one.
        self.level = level
        self.changed_at = now
        return Step(level, previous, reason)
