"""The warm-up record: what happened, phase by phase, kept small enough for a sidecar.

Theory of operation: while warming, the warm-up feeds every completed request to a
:class:`Recorder` together with the phase it belongs to, and one :class:`Point` per evaluation
(downsampled to at most two per second). Latencies go into fixed log-spaced histograms, so a
five-minute warm-up at thousands of requests per second costs a few kilobytes. Requests belong to
the *ramp* until the gate starts the passing streak that ends in ``warm``: a streak that breaks
is folded back into the ramp, so *hold* holds exactly the requests of the final streak.

The record also keeps the gate's last evidence at the target level (``judged``): the percentiles
the gate judged — corrected for coordinated omission in a closed loop, with hung requests
counted — beside the raw ones as measured, so a report shows both and misleads nobody.

The record is plain data (``to_json``/``from_json``): ``prime`` writes it to
``<status-dir>/report.json`` and ``warmgate report`` renders it later. Pure code, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from warmgate.decide.histogram import BUCKET_RATIO, Histogram
from warmgate.decide.window import Stats

PHASES = ("ramp", "hold")


@dataclass(frozen=True, slots=True)
class Point:
    """The window at one instant. ``t`` is seconds since start; latencies in seconds."""

    t: float
    state: str
    level: int
    requests: int
    success_ratio: float | None
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass
class Record:
    """Everything a report needs. Times are seconds since warmgate started."""

    target_level: int
    thresholds: dict[str, str]
    timeout: float
    targets: dict[str, dict[str, Histogram]] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    up_at: float | None = None
    hold_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    reason: str = ""
    judged: dict[str, Any] | None = None
    """The gate's last evidence (:meth:`Stats.as_dict`): judged and raw percentiles."""
    window_start: float | None = None
    """Where the evidence of the last evaluation started (with ``window: auto``, just enough
    recent requests), in seconds since start; the chart marks it."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``report.json``."""
        return {
            "bucket_ratio": BUCKET_RATIO,
            "target_level": self.target_level,
            "thresholds": self.thresholds,
            "timeout": self.timeout,
            "targets": {
                name: {phase: hist.to_json() for phase, hist in phases.items()}
                for name, phases in self.targets.items()
            },
            "points": [
                [p.t, p.state, p.level, p.requests, p.success_ratio, p.p50, p.p95, p.p99]
                for p in self.points
            ],
            "up_at": self.up_at,
            "hold_at": self.hold_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "judged": self.judged,
            "window_start": self.window_start,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """The inverse of :meth:`to_json`; ``ValueError`` for a record of another format."""
        if data.get("bucket_ratio") != BUCKET_RATIO:
            raise ValueError("it was written by a warmgate with other latency buckets")
        return cls(
            target_level=int(data["target_level"]),
            thresholds=dict(data.get("thresholds", {})),
            timeout=float(data.get("timeout", 0.0)),
            targets={
                name: {phase: Histogram.from_json(h) for phase, h in phases.items()}
                for name, phases in data.get("targets", {}).items()
            },
            points=[Point(*row) for row in data.get("points", [])],
            up_at=data.get("up_at"),
            hold_at=data.get("hold_at"),
            ended_at=data.get("ended_at"),
            outcome=data.get("outcome"),
            reason=str(data.get("reason", "")),
            judged=data.get("judged"),
            window_start=data.get("window_start"),
        )

    def phase_totals(self, phase: str) -> Histogram:
        """All targets together, for one phase."""
        total = Histogram()
        for phases in self.targets.values():
            if phase in phases:
                total.merge(phases[phase])
        return total


class Recorder:
    """Builds a :class:`Record` from the warm-up's samples and evaluations."""

    POINT_INTERVAL = 0.5

    def __init__(
        self,
        targets: tuple[str, ...],
        target_level: int,
        thresholds: dict[str, str],
        timeout: float,
    ) -> None:
        self.record = Record(target_level, thresholds, timeout)
        for name in targets:
            self.record.targets[name] = {phase: Histogram() for phase in PHASES}
        self._streak: dict[str, Histogram] = {name: Histogram() for name in targets}
        self._in_streak = False

    def up(self, t: float) -> None:
        """The target started answering at ``t``."""
        self.record.up_at = t

    def sample(self, target: str, latency: float, ok: bool) -> None:
        """One completed request of the current phase."""
        histograms = self._streak if self._in_streak else None
        if histograms is not None and target in histograms:
            histograms[target].add(latency, ok)
        elif target in self.record.targets:
            self.record.targets[target]["ramp"].add(latency, ok)

    def evaluation(
        self,
        point: Point,
        passing: bool,
        judged: Stats | None = None,
        window_start: float | None = None,
    ) -> None:
        """One gate evaluation: keep a point and the gate's evidence (and where it started),
        track the passing streak."""
        if judged is not None and judged.requests:
            self.record.judged = judged.as_dict()
            self.record.window_start = window_start
        points = self.record.points
        if not points or point.t - points[-1].t >= self.POINT_INTERVAL:
            points.append(point)
        if passing and not self._in_streak:
            self._in_streak = True
            self.record.hold_at = point.t
        elif not passing and self._in_streak:
            self._in_streak = False
            self.record.hold_at = None
            for name, histogram in self._streak.items():
                self.record.targets[name]["ramp"].merge(histogram)
                self._streak[name] = Histogram()

    def finish(self, t: float, outcome: str | None, reason: str) -> Record:
        """The warm-up ended at ``t``: fold the streak into hold (or ramp) and return the record."""
        phase = "hold" if outcome == "warm" else "ramp"
        for name, histogram in self._streak.items():
            self.record.targets[name][phase].merge(histogram)
            self._streak[name] = Histogram()
        if outcome != "warm":
            self.record.hold_at = None
        self._in_streak = False
        self.record.ended_at = t
        self.record.outcome = outcome
        self.record.reason = reason
        return self.record
