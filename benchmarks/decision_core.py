"""CPU cost of the decision core: per recorded sample, and per evaluation tick.

Feeds a :class:`~warmgate.decide.judge.Judge` 800 req/s of synthetic samples over two targets
(lognormal latencies around 7 ms, 0.5% timeouts) at the target level 16 with a 10 s window, and
ticks it four times a second as the runner does, with a p95 limit that never passes (so every
tick evaluates everything). Reports the CPU time (``time.process_time``, so other processes on
the machine matter less) per sample and per tick, closed loop and paced, best of ``--repeat``.

Compare two checkouts by pointing ``PYTHONPATH`` at each::

    PYTHONPATH=. .venv/bin/python benchmarks/decision_core.py
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/decision_core.py
"""

from __future__ import annotations

import argparse
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
        outcome = "ok" if rng.random() > 0.005 else "timeout"
        samples.append(Sample(at - latency, at, 16, "a" if index % 3 else "b", outcome))
    return samples


def measure(rate: float | None, ticks: int, rng: random.Random) -> tuple[float, float]:
    """Microseconds of CPU per recorded sample, milliseconds per tick."""
    thresholds = Thresholds(p95=0.0005, window=10.0, hold=5.0, timeout=1e9)
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
    rng = random.Random(1)
    print(f"{'load':<8}{'per sample':>14}{'per tick':>12}")
    for name, rate in (("closed", None), ("paced", float(RATE))):
        runs = [measure(rate, args.ticks, rng) for _ in range(args.repeat)]
        sample_us = min(run[0] for run in runs)
        tick_ms = min(run[1] for run in runs)
        print(f"{name:<8}{sample_us:>11.2f} µs{tick_ms:>9.2f} ms")


if __name__ == "__main__":
    main()
