"""The load generator's schedule on a virtual clock: pacing, queueing and rate caps, exactly.

Drivers here answer after a fixed ``asyncio.sleep`` and the event loop's clock is virtual
(tests/virtual_time.py), so each test states the schedule the load must keep, to the request.
The same load against a real server is tests/test_http_driver.py; rates and latencies on real
hardware are benchmarks/http_driver.py.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter
from dataclasses import dataclass

from tests import virtual_time
from warmgate.decide.outcomes import OK
from warmgate.decide.reach import Down
from warmgate.decide.window import Sample, Stats
from warmgate.traffic.driver import Outcome
from warmgate.traffic.loadgen import Load


@dataclass
class SleepyDriver:
    """A driver whose every request takes ``latency`` seconds of the loop's clock."""

    name: str
    latency: float

    async def execute(self) -> Outcome:
        await asyncio.sleep(self.latency)
        return Outcome(OK)

    async def probe(self) -> Down | None:
        return None

    async def aclose(self) -> None:
        return None


def run_load(
    drivers: list[SleepyDriver],
    *,
    level: int,
    rate: float | None,
    seconds: float,
    cap: int,
    rate_caps: list[float | None] | None = None,
) -> list[Sample]:
    """Run the load for ``seconds`` of virtual time, then stop it; every sample it recorded."""
    samples: list[Sample] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        load = Load(
            drivers, [1.0] * len(drivers), cap, samples.append, rate_caps=rate_caps, clock=loop.time
        )
        load.start()
        load.configure(level, rate)
        await asyncio.sleep(seconds)  # virtual: the span of the schedule under test
        await load.stop()

    virtual_time.run(scenario())
    return samples


def test_paced_load_holds_the_rate() -> None:
    """Paced at 200 req/s for 2s, 400 requests are meant 5ms apart; latency counts from then."""
    samples = run_load([SleepyDriver("app", 0.002)], level=8, rate=200.0, seconds=2.0, cap=8)
    intended = sorted(sample.issued_at for sample in samples)
    # The send meant for the very instant the load is stopped may go out or not: count before it.
    assert len([t for t in intended if t < 2.0 - 1e-6]) == 400
    assert intended[0] == 0.0
    assert intended[-1] < 2.0 + 1e-6
    assert all(math.isclose(b - a, 0.005) for a, b in itertools.pairwise(intended))
    stats = Stats.of(samples)
    assert stats.success_ratio == 1.0
    assert all(math.isclose(sample.latency, 0.002) for sample in samples)


def test_paced_latency_counts_queueing() -> None:
    """One worker meant to send every 10ms, 50ms per answer: each request also waits its queue."""
    samples = run_load([SleepyDriver("app", 0.05)], level=1, rate=100.0, seconds=1.0, cap=1)
    latencies = [sample.latency for sample in sorted(samples, key=lambda s: s.issued_at)]
    assert len(latencies) == 20
    # Request k is meant for k * 10ms, goes out when request k-1 ends (k * 50ms), ends 50ms later.
    for k, latency in enumerate(latencies):
        assert math.isclose(latency, (k + 1) * 0.05 - k * 0.01)
    p95 = Stats.of(samples).p95
    assert p95 is not None
    assert p95 > 0.7


def test_a_capped_target_leaves_the_slack_to_the_others() -> None:
    """A target capped at 20 req/s never gets two requests within 50ms; the other takes the rest."""
    drivers = [SleepyDriver("db", 0.002), SleepyDriver("app", 0.002)]
    samples = run_load(drivers, level=8, rate=None, seconds=2.0, cap=8, rate_caps=[20.0, None])
    db = sorted(sample.issued_at for sample in samples if sample.target == "db")
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(db))
    # Every 2ms eight workers each pick db with chance 1/2 when its slot is free; a slot only
    # goes unused if 25 rounds in a row (2^-200) miss it, so 2s at 20 req/s is 40 requests.
    assert len(db) == 40
    assert Counter(sample.target for sample in samples)["app"] > 5 * len(db)
