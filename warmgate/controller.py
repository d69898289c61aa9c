"""The decision core in one object: the window, the ramp and the gate, fed together.

The runner records every completed sample and calls :meth:`Controller.tick` a few times a
second; the controller answers with the ramp's step (a new concurrency level, perhaps) and the
gate's verdict. Pure code: no clock of its own, no I/O.
"""

from __future__ import annotations

from warmgate.gate import Gate, Thresholds, Verdict
from warmgate.ramp import Ramp, Step
from warmgate.window import Sample, Window


class Controller:
    """Window + ramp + gate for one warm-up."""

    def __init__(
        self,
        thresholds: Thresholds,
        target_level: int,
        targets: tuple[str, ...] = (),
        ramp_step: float = 1.0,
        rate: float | None = None,
    ) -> None:
        self.window = Window(thresholds.window)
        # Paced, the full load is a rate (with the concurrency as a cap): say so in reasons.
        where = f"at {rate:g} req/s" if rate else None
        self.gate = Gate(thresholds, target_level, self.window, targets, where)
        self.ramp = Ramp(target_level, thresholds, ramp_step)
        self.started_at = 0.0

    @property
    def level(self) -> int:
        """The concurrency level the load should run at now."""
        return self.ramp.level

    def start(self, now: float) -> None:
        """Begin a warm-up from nothing: empty window, level 1, fresh deadline."""
        self.started_at = now
        self.window.clear()
        self.gate.start(now)
        self.ramp.start(now)

    def record(self, sample: Sample) -> None:
        """Feed one completed request."""
        self.window.add(sample)

    def tick(self, now: float) -> tuple[Step, Verdict]:
        """Let the ramp move the level, then let the gate judge the window."""
        ramp = self.ramp
        step = ramp.decide(now, self.window.stats(now, level=ramp.level, since=ramp.changed_at))
        return step, self.gate.evaluate(now, ramp.level)
