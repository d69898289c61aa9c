"""The decision core in one object: the window, the ramp and the gate, fed together.

The warm-up (``runtime/warmup.py``) records every completed sample and calls :meth:`Judge.tick` a
few times a second, with the requests still in flight; the judge answers with the ramp's step (a new
concurrency level, perhaps) and the gate's verdict. The ramp judges each level on the requests
issued at it since it was reached, bounded by the window — at the target level the same
evidence the gate judges. Pure code: no clock of its own, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from warmgate.decide.gate import Gate, Thresholds, Verdict
from warmgate.decide.ramp import Ramp, Step
from warmgate.decide.window import Pending, Sample, Window


class Judge:
    """Window + ramp + gate for one warm-up."""

    def __init__(
        self,
        thresholds: Thresholds,
        target_level: int,
        targets: tuple[str, ...] = (),
        ramp_step: float = 1.0,
        rate: float | None = None,
        *,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.window = Window(thresholds.window)
        # Paced, the full load is a rate (with the concurrency as a cap): say so in reasons.
        where = f"at {rate:g} req/s" if rate else None
        self.gate = Gate(
            thresholds,
            target_level,
            self.window,
            targets,
            where,
            weights=weights,
            # Paced load measures from the intended send time: correcting again would count
            # the same wait twice.
            closed_loop=not rate,
        )
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

    def tick(self, now: float, in_flight: Iterable[Pending] = ()) -> tuple[Step, Verdict]:
        """Let the ramp move the level, then let the gate judge the window.

        ``in_flight`` lists the requests still open, so a hung one counts as slow already.
        """
        ramp, gate = self.ramp, self.gate
        step = Step(ramp.level, ramp.level, "")
        if ramp.due(now):  # counting the evidence costs; only when the ramp will judge it
            # At the target the ramp judges exactly what the gate judges, so it can never back
            # off on evidence the gate would accept.
            since: float | None = ramp.changed_at
            if ramp.level == gate.target_level:
                since = gate.since
                if gate.thresholds.window_auto and gate.window_start is not None:
                    # window: auto judges the most recent requests: so does the ramp.
                    since = self.window.since_for(gate.window_start)
            step = ramp.decide(now, self.window.stats(now, level=ramp.level, since=since))
        return step, gate.evaluate(now, ramp.level, in_flight)
