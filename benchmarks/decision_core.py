"""CPU cost of the decision core: per recorded sample, and per evaluation tick.

Feeds a :class:`~warmgate.decide.judge.Judge` 800 req/s of synthetic samples over two targets
(lognormal latencies around 7 ms, 0.05% timeouts) at the target level 16 with a 10 s window, and
ticks it four times a second as the runner does, with a p95 limit that never passes (so every
tick evaluates everything). Reports the CPU time (``time.process_time``, so other processes on
the machine matter less) per sample and per tick, closed loop and paced, best of ``--repeat``,
for each mode of the gate: a fixed 10 s window or ``window: auto`` (at most 60 s), each with a
p95 limit or ``p95: auto``, and ``window: auto`` with a p99 limit and 99.9% success (2,995
requests, almost 4 s of this load). A mode the checkout does not know (``window: auto`` before
it existed) is skipped, so the same script measures an older checkout.

Compare two checkouts by pointing ``PYTHONPATH`` at each::

    PYTHONPATH=. .venv/bin/python benchmarks/decision_core.py
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/decision_core.py
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time

from warmgate.decide.gate import Thresholds
from warmgate.decide.judge import Judge
from warmgate.decide.window import Sample

RATE = 800
TICK = 0.25


def synthetic(count: int, start: float, rng: random.Random) -> list[Sample]:
    """``count`` samples completing at ``RATE`` per second from ``start``."""
    samples = []
    for index in range(count):
        at = start + index / RATE
        latency = rng.lognormvariate(-5, 0.5)
        outcome = "ok" if rng.random() > 0.0005 else "timeout"
        samples.append(Sample(at - latency, at, 16, "a" if index % 3 else "b", outcome))
    return samples


MODES: dict[str, dict[str, object]] = {
    "10s, p95 limit": {"p95": 0.0005, "window": 10.0},
    "auto, p95 limit": {"p95": 0.0005, "window": 60.0, "window_auto": True},
    "10s, p95 auto": {"plateau": True, "window": 10.0},
    "auto, p95 auto": {"plateau": True, "window": 60.0, "window_auto": True},
    "auto, 99.9%": {"p99": 0.0005, "success_rate": 0.999, "window": 60.0, "window_auto": True},
}
"""Window and latency threshold of each mode measured."""


def thresholds_for(mode: dict[str, object]) -> Thresholds | None:
    """The mode's thresholds, or ``None`` when this checkout does not know one of its fields."""
    known = {field.name for field in dataclasses.fields(Thresholds)}
    if not set(mode) <= known:
        return None
    return Thresholds(hold=5.0, timeout=1e9, **mode)  # type: ignore[arg-type]


def measure(
    thresholds: Thresholds, rate: float | None, ticks: int, rng: random.Random
) -> tuple[float, float]:
    """Microseconds of CPU per recorded sample, milliseconds per tick."""
    judge = Judge(thresholds, 16, ("a", "b"), 1.0, rate)
    judge.start(0.0)
    judge.ramp.start(0.0, 16)
    warm = synthetic(RATE * 10, 0.0, rng)
    started = time.process_time()
    for sample in warm:
        judge.record(sample)
    per_sample = (time.process_time() - started) / len(warm)
    per_tick_samples = int(RATE * TICK)
    later = synthetic(per_tick_samples * ticks, 10.0, rng)
    now = 10.0
    started = time.process_time()
    for tick in range(ticks):
        for sample in later[tick * per_tick_samples : (tick + 1) * per_tick_samples]:
            judge.record(sample)
        now += TICK
        judge.tick(now)
    spent = time.process_time() - started - per_sample * len(later)
    return per_sample * 1e6, spent / ticks * 1e3


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'window, threshold':<18}{'load':<8}{'per sample':>14}{'per tick':>12}")
    for mode, fields in MODES.items():
        thresholds = thresholds_for(fields)
        if thresholds is None:
            print(f"{mode:<18}(not in this checkout)")
            continue
        for name, rate in (("closed", None), ("paced", float(RATE))):
            rng = random.Random(1)
            runs = [measure(thresholds, rate, args.ticks, rng) for _ in range(args.repeat)]
            sample_us = min(run[0] for run in runs)
            tick_ms = min(run[1] for run in runs)
            print(f"{mode:<18}{name:<8}{sample_us:>11.2f} µs{tick_ms:>9.2f} ms")


if __name__ == "__main__":
    main()
