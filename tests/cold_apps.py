"""Cold apps simulated request by request on a fake clock, driven by the real judge.

Theory of operation: :func:`drive` plays the load generator's part exactly as far as the judge
can see it — ``level`` closed-loop workers, worker ``i`` active while ``i < level``, each sending
its next request as soon as its last one answers, a sample labelled with the level it was sent
at — and asks :meth:`Judge.tick` every :data:`TICK` seconds, with the requests in flight. An app is
a function from (send time, requests served so far, random source) to (latency, ok). Events are
processed in time order on a heap, so a run is deterministic for a seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from warmgate.decide.gate import WARM, Verdict
from warmgate.decide.judge import Judge
from warmgate.decide.window import Pending, Sample

TICK = 0.25

App = Callable[[float, int, random.Random], tuple[float, bool]]
"""``app(sent_at, served, rng) -> (latency, ok)``."""


@dataclass
class Run:
    """What happened: when the gate opened (``None``: it did not) and what it saw."""

    opened_at: float | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    levels: list[tuple[float, int]] = field(default_factory=list)
    served_at: list[float] = field(default_factory=list)
    """When the app finished its 1st, 2nd, ... request."""

    @property
    def last(self) -> Verdict:
        """The last verdict."""
        return self.verdicts[-1]


def drive(judge: Judge, app: App, until: float, seed: int = 0, keep: bool = False) -> Run:
    """Run ``app`` under the judge from 0 until the gate decides or ``until`` passes."""
    rng = random.Random(seed)
    run = Run()
    judge.start(0.0)
    heap: list[tuple[float, int, float, int]] = []  # (done_at, worker, sent_at, level)
    busy: dict[int, Pending] = {}
    served = 0

    def send(worker: int, at: float) -> None:
        latency, ok = app(at, served, rng)
        level = judge.level
        heapq.heappush(heap, (at + latency, worker, at, level if ok else -level))
        busy[worker] = Pending(at, level, "app")

    send(0, 0.0)
    now = 0.0
    while now < until:
        now += TICK
        while heap and heap[0][0] <= now:
            done_at, worker, sent_at, level = heapq.heappop(heap)
            del busy[worker]
            served += 1
            if keep:
                run.served_at.append(done_at)
            ok = level > 0
            outcome, status = ("ok", 200) if ok else ("unexpected_status", 503)
            judge.record(Sample(sent_at, done_at, abs(level), "app", outcome, status))
            if worker < judge.level:
                send(worker, done_at)
        step, verdict = judge.tick(now, list(busy.values()))
        run.verdicts.append(verdict)
        if step.changed:
            run.levels.append((now, step.level))
            for worker in range(step.level):
                if worker not in busy:
                    send(worker, now)
        if verdict.done:
            run.opened_at = now if verdict.outcome == WARM else None
            break
    return run
