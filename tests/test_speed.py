"""Open as soon as the evidence allows: cold apps simulated on a fake clock under the real judge.

Each app is simulated request by request (:mod:`tests.cold_apps`), so "ready" is known exactly
and the tests say when the gate opened relative to it, over many seeds.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cold_apps import TICK, App, drive
from warmgate.decide.gate import OPENED_ON_TIMEOUT, WARM, Thresholds
from warmgate.decide.judge import Judge
from warmgate.decide.ramp import Ramp
from warmgate.decide.window import Stats

# 1. p95: auto decides on evidence --------------------------------------------------------------

BASE = 0.005
COLD = 0.295
NOISE = 0.15
"""Log-normal noise of every answer (sigma of ln latency): the app's p95 is 1.28 x its median."""
SCALE = 1830.0
"""Requests per e-fold of the cold part: within 25% of warm after ~10,000 requests."""


def jit_app(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
    """300ms cold, 5ms warm, the cold part decaying exponentially with the requests served."""
    return (BASE + COLD * math.exp(-served / SCALE)) * math.exp(rng.gauss(0, NOISE)), True


def jit_ready_after() -> int:
    """Requests served when the app's p95 is within 25% of its warm p95 (noise multiplies both)."""
    return math.ceil(SCALE * math.log(COLD / (0.25 * BASE)))


@pytest.mark.parametrize("seed", range(8))
def test_p95_auto_opens_within_30s_of_the_jit_app_being_near_warm_and_never_before(
    seed: int,
) -> None:
    """The issue's JIT-like app at concurrency 16, window 5s, hold 3s: opens 0..30s after ready."""
    thresholds = Thresholds(success_rate=0.99, plateau=True, window=5.0, hold=3.0, timeout=300.0)
    judge = Judge(thresholds, 16, ("app",))
    run = drive(judge, jit_app, 200.0, seed=seed, keep=True)
    assert run.opened_at is not None, run.last.reason
    ready_at = run.served_at[jit_ready_after() - 1]
    assert ready_at <= run.opened_at <= ready_at + 30.0
    # Opened on evidence: the p95 the gate saw is within 25% of the warm p95.
    warm_p95 = BASE * math.exp(1.645 * NOISE)
    assert run.last.window.p95 is not None
    assert run.last.window.p95 <= 1.25 * warm_p95


@pytest.mark.parametrize(("scale", "noise"), [(600, 0.05), (600, 0.3), (4000, 0.05), (4000, 0.3)])
def test_p95_auto_opens_on_time_for_faster_slower_and_noisier_decays(
    scale: float, noise: float
) -> None:
    """The same, for cold parts falling by e every 600 or 4,000 requests and answers with 5% or
    30% noise: a slow decay seen through noisy spans (the hardest case) is not opened early."""

    def app(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        cold = COLD * math.exp(-served / scale)
        return (BASE + cold) * math.exp(rng.gauss(0, noise)), True

    thresholds = Thresholds(success_rate=0.99, plateau=True, window=5.0, hold=3.0, timeout=300.0)
    run = drive(Judge(thresholds, 16, ("app",)), app, 250.0, seed=1, keep=True)
    assert run.opened_at is not None, run.last.reason
    ready_after = math.ceil(scale * math.log(COLD / (0.25 * BASE)))
    assert len(run.served_at) >= ready_after, "opened before the app was near warm"
    ready_at = run.served_at[ready_after - 1]
    assert ready_at <= run.opened_at <= ready_at + 30.0


def test_p95_auto_gives_the_same_answer_for_the_same_run() -> None:
    """Deterministic: the same samples give the same verdicts, tick for tick."""
    thresholds = Thresholds(success_rate=0.99, plateau=True, window=5.0, hold=3.0, timeout=300.0)
    runs = [drive(Judge(thresholds, 16, ("app",)), jit_app, 200.0, seed=3) for _ in range(2)]
    assert runs[0].opened_at == runs[1].opened_at
    assert [v.reason for v in runs[0].verdicts] == [v.reason for v in runs[1].verdicts]


@pytest.mark.parametrize("quantile", ["p50", "p99"])
def test_p50_and_p99_auto_also_wait_for_the_floor(quantile: str) -> None:
    """``p50: auto`` and ``p99: auto`` judge their own quantile's plateau the same way."""
    thresholds = Thresholds(success_rate=0.99, auto=(quantile,), window=5.0, hold=3.0)
    run = drive(Judge(thresholds, 16, ("app",)), jit_app, 200.0, seed=1, keep=True)
    assert run.opened_at is not None, run.last.reason
    ready_at = run.served_at[jit_ready_after() - 1]
    assert ready_at <= run.opened_at <= ready_at + 30.0
    names = [check.name for check in run.last.checks]
    assert f"plateau_{quantile}" in names
    assert "plateau" not in names


def test_a_slow_steady_decay_never_opens_p95_auto() -> None:
    """Latency falling 2.5% a second towards zero (9% per group, within the tolerance) never
    opens: there is no floor near."""

    def decaying(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        return 0.3 * 0.975**sent_at * math.exp(rng.gauss(0, NOISE)), True

    thresholds = Thresholds(success_rate=0.99, plateau=True, window=5.0, hold=3.0)
    run = drive(Judge(thresholds, 16, ("app",)), decaying, 120.0, seed=0)
    assert run.opened_at is None
    assert not any(v.outcome == WARM for v in run.verdicts)


# 2. Slow answers: the ramp judges each level on its first answers ------------------------------


def constant(latency: float) -> App:
    """An endpoint that always answers in ``latency`` seconds."""

    def app(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        return latency, True

    return app


def test_a_5_5s_endpoint_opens_within_35s_of_being_ready() -> None:
    """The issue's case: 5.5s answers, concurrency 8, min_requests 10, p95 <= 7s, hold 3s.

    Ramping 1 -> 8 takes three answer times, the evidence at 8 two more, then the hold.
    """
    thresholds = Thresholds(success_rate=0.99, p95=7.0, min_requests=10, window=10.0, hold=3.0)
    run = drive(Judge(thresholds, 8, ("app",)), constant(5.5), 120.0)
    assert run.opened_at is not None, run.last.reason
    assert run.opened_at <= 35.0
    assert [level for _, level in run.levels] == [2, 4, 8]
    # Each level was judged on its first answers, one answer time after it was reached.
    assert [at for at, _ in run.levels] == pytest.approx([5.5, 11.0, 16.5], abs=0.3)


def test_a_slow_level_is_not_doubled_on_a_single_answer() -> None:
    """Answers slower than a step: levels 1 and 2 are judged on one answer (their one new
    worker's), level 4 waits for two — the first answer alone says nothing about the three
    still in flight."""
    thresholds = Thresholds(success_rate=0.99, p95=7.0, min_requests=10)
    ramp = Ramp(8, thresholds, step=1.0)
    ramp.start(0.0)
    one_slow = Stats(requests=1, successes=1, raw_p50=5.5)
    two_slow = Stats(requests=2, successes=2, raw_p50=5.5)
    assert ramp.decide(5.5, one_slow).level == 2
    assert ramp.decide(11.0, one_slow).level == 4
    ramp.start(6.0, level=4)
    assert not ramp.enough(one_slow)
    assert ramp.decide(11.5, one_slow).level == 4
    assert ramp.enough(two_slow)
    assert ramp.decide(12.5, two_slow).level == 8


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=1.0, max_value=8.0), st.integers(min_value=2, max_value=16))
def test_slow_answers_cost_one_answer_time_per_level(latency: float, target: int) -> None:
    """Property: answers slower than a step reach the target in one answer time per doubling,
    never back off, and open within two more answer times and the hold (each seen at a tick)."""
    thresholds = Thresholds(
        success_rate=0.99, p95=latency * 1.3, min_requests=target, window=3 * latency, hold=3.0
    )
    run = drive(Judge(thresholds, target, ("app",)), constant(latency), 300.0)
    assert run.opened_at is not None, run.last.reason
    doublings = math.ceil(math.log2(target))
    assert all(later > earlier for (_, earlier), (_, later) in itertools.pairwise(run.levels))
    # Each answer time is seen at the next tick, a quarter of a second later at most.
    assert run.opened_at <= (doublings + 2) * (latency + TICK) + thresholds.hold + 2 * TICK


def test_slow_failing_answers_neither_ramp_nor_open() -> None:
    """5.5s answers that all fail: judged on the first answers too, but a failing level is never
    raised, and the gate never opens."""

    def failing(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        return 5.5, False

    thresholds = Thresholds(
        success_rate=0.99, p95=7.0, min_requests=10, window=10.0, hold=3.0, timeout=60.0
    )
    judge = Judge(thresholds, 8, ("app",))
    run = drive(judge, failing, 120.0)
    assert run.opened_at is None
    assert run.levels == []
    assert judge.level == 1
    assert run.last.outcome == OPENED_ON_TIMEOUT
