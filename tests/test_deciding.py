"""How the core decides: stalls, hung requests, fair evidence, plateaus, back-offs, stale failures.

Everything here is plain data and a fake clock: closed-loop workers are simulated request by
request, so the tests say exactly what users of such an app would meet.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmgate.decide.checks import success_check
from warmgate.decide.gate import WARM, Gate, Thresholds, Verdict
from warmgate.decide.histogram import Histogram, bucket_index, bucket_value
from warmgate.decide.judge import Judge
from warmgate.decide.omission import expected_interval, percentiles
from warmgate.decide.outcomes import OK
from warmgate.decide.plateau import GROUP_MIN, SPAN_REQUESTS, fit
from warmgate.decide.ramp import SIGNIFICANCE, Ramp, tail_bound
from warmgate.decide.reach import Down
from warmgate.decide.window import DETAILS_KEPT, Pending, Sample, Stats, Tally, Window, percentile
from warmgate.report.record import Point, Record, Recorder
from warmgate.report.render import render_text
from warmgate.traffic.driver import Outcome
from warmgate.traffic.loadgen import Load

TARGET = 16
TICK = 0.25


def closed_loop(
    workers: int, start: float, end: float, latency: Callable[[float], float], target: str = "app"
) -> list[Sample]:
    """Samples of ``workers`` closed-loop workers: each sends again as soon as it has an answer.

    ``latency(t)`` is how long a request sent at ``t`` takes.
    """
    samples = []
    for worker in range(workers):
        t = start + worker * 1e-4
        while True:
            done = t + latency(t)
            if done >= end:
                break
            samples.append(Sample(t, done, workers, target))
            t = done
    samples.sort(key=lambda s: s.completed_at)
    return samples


def freezing(period: float, freeze: float, normal: float) -> Callable[[float], float]:
    """An app that answers in ``normal`` seconds but freezes for ``freeze`` every ``period``."""

    def latency(t: float) -> float:
        into = t % period
        if into < freeze:
            return freeze - into + normal
        return normal

    return latency


def run_gate(gate: Gate, samples: list[Sample], end: float) -> list[Verdict]:
    """Feed samples in completion order, evaluating every tick at the target level."""
    verdicts = []
    index = 0
    now = TICK
    while now <= end:
        while index < len(samples) and samples[index].completed_at <= now:
            gate.record(samples[index])
            index += 1
        verdict = gate.evaluate(now, TARGET)
        verdicts.append(verdict)
        if verdict.done:
            break
        now += TICK
    return verdicts


# 1. Coordinated omission -------------------------------------------------------------------


def test_a_stall_fails_p95_in_the_closed_loop_while_a_steady_app_passes() -> None:
    """An app frozen 0.8s every 3s fails p95 200ms once corrected; raw p95 stays a few ms."""
    thresholds = Thresholds(p95=0.2, window=10.0, hold=3.0, timeout=30.0)
    stalling = Gate(thresholds, TARGET, Window(10.0), ("app",), closed_loop=True)
    stalling.start(0.0)
    samples = closed_loop(TARGET, 0.0, 30.0, freezing(3.0, 0.8, 0.005))
    verdicts = run_gate(stalling, samples, 30.0)
    last = verdicts[-1]
    assert last.outcome != WARM
    stats = last.window
    assert stats.raw_p95 is not None
    assert stats.raw_p95 < 0.01
    assert stats.p95 is not None
    assert stats.p95 > 0.4
    assert "p95" in last.reason

    steady = Gate(thresholds, TARGET, Window(10.0), ("app",), closed_loop=True)
    steady.start(0.0)
    verdicts = run_gate(steady, closed_loop(TARGET, 0.0, 30.0, lambda _: 0.005), 30.0)
    assert verdicts[-1].outcome == WARM


def test_users_at_the_observed_rate_meet_the_stall() -> None:
    """Corrected, about a fifth of the requests land in a 0.8s-in-3.2s freeze, as users would."""
    samples = closed_loop(TARGET, 0.0, 9.6, freezing(3.2, 0.8, 0.005))
    tally = Tally()
    for each in samples:
        tally.add(each)
    interval = expected_interval(TARGET, 9.6, len(samples))
    assert interval is not None
    histogram = tally.latencies
    real = histogram.requests
    total = real + sum(
        count * max(0, math.floor(bucket_value(i) / interval) - 1)
        for i, count in histogram.buckets.items()
    )
    # Raw, the freeze is 16 workers x 3 stalls among thousands; corrected, ~20% of the users.
    assert (real - sum(1 for s in samples if s.latency < 0.05)) / real < 0.01
    assert 0.15 < (total - real) / total < 0.3


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0001, max_value=3.0), min_size=1, max_size=60),
    st.floats(min_value=0.001, max_value=0.5),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_correction_counts_what_hdrhistogram_would_record(
    latencies: list[float], interval: float, q: float
) -> None:
    """Property: corrected percentiles equal recording every synthetic value, within a bucket."""
    histogram = Histogram()
    recorded: list[float] = []
    for latency in latencies:
        histogram.add(latency, True)
        value = bucket_value(bucket_index(latency))
        recorded.append(value)
        # HdrHistogram's recordValueWithExpectedInterval, value by value.
        missing = value - interval
        while missing >= interval:
            recorded.append(missing)
            missing -= interval
    recorded.sort()
    exact = percentile(recorded, q)
    (found,) = percentiles(histogram, [q], interval=interval)
    assert exact is not None
    assert found is not None
    assert exact * 0.9999 <= found <= exact * 1.0102


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=200))
def test_paced_load_is_not_corrected_again(latencies: list[float]) -> None:
    """Property: paced (open-model) samples are judged as measured, raw equals judged."""
    gate = Gate(Thresholds(p95=0.2, hold=0.0, min_requests=1), TARGET, Window(10.0))
    gate.start(0.0)
    for index, latency in enumerate(latencies):
        at = 5.0 + index * 0.001
        gate.record(Sample(at - latency, at, TARGET, "app"))
    stats = gate.evaluate(5.0 + len(latencies) * 0.001, TARGET).window
    assert (stats.p50, stats.p95, stats.p99) == (stats.raw_p50, stats.raw_p95, stats.raw_p99)


def test_controller_corrects_only_the_closed_loop() -> None:
    """The same stalled samples fail p95 in a closed loop and are taken as measured when paced."""
    samples = closed_loop(TARGET, 0.0, 6.0, freezing(3.0, 0.8, 0.005))
    thresholds = Thresholds(p95=0.2, window=10.0, hold=0.0, timeout=60.0)
    p95s = {}
    for rate in (None, 3200.0):
        judge = Judge(thresholds, TARGET, ("app",), rate=rate)
        judge.start(0.0)
        judge.ramp.start(0.0, TARGET)
        for each in samples:
            judge.record(each)
        _, verdict = judge.tick(6.0)
        p95s[rate] = (verdict.window.p95, verdict.window.raw_p95)
    corrected, raw = p95s[None]
    assert corrected is not None
    assert raw is not None
    assert corrected > 0.2 > raw
    assert p95s[3200.0][0] == p95s[3200.0][1] == raw


# 2. Requests in flight past the limit ------------------------------------------------------


def test_a_hung_request_counts_as_slow_while_still_open() -> None:
    """A worker stuck for 1.2s fails p95 now; young or lower-level open requests do not."""

    def fed_gate() -> Gate:
        thresholds = Thresholds(p95=0.2, hold=0.0, min_requests=10)
        gate = Gate(thresholds, 2, Window(10.0), ("app",), closed_loop=True)
        gate.start(0.0)
        for index in range(20):  # the other worker, answered in 10ms
            at = 0.5 + index * 0.05
            gate.record(Sample(at - 0.01, at, 2, "app"))
        return gate

    harmless = [Pending(1.4, 2, "app"), Pending(0.0, 1, "app")]
    verdict = fed_gate().evaluate(1.5, 2, harmless)
    assert verdict.passing
    assert verdict.window.slow_in_flight == 0
    verdict = fed_gate().evaluate(1.5, 2, [Pending(0.3, 2, "app")])
    assert not verdict.passing
    assert verdict.window.slow_in_flight == 1
    assert verdict.targets["app"].slow_in_flight == 1
    assert verdict.reason.startswith("p95 ")
    assert "> 200ms at concurrency 2 (1 request in flight past the limit)" in verdict.reason
    assert verdict.window.raw_p95 is not None
    assert verdict.window.raw_p95 < 0.02


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=5.0), max_size=20))
def test_open_requests_never_make_latency_look_better(ages: list[float]) -> None:
    """Property: adding open requests never lowers a judged percentile."""
    gate = Gate(Thresholds(p95=0.05, hold=0.0, min_requests=1), TARGET, Window(10.0))
    gate.start(0.0)
    for index in range(50):
        at = 5.0 + index * 0.01
        gate.record(Sample(at - 0.001 * (index % 7 + 1), at, TARGET, "app"))
    plain = gate.evidence(6.0)[0]
    pending = [Pending(6.0 - age, TARGET, "app") for age in ages]
    with_open = gate.evidence(6.0, pending)[0]
    for name in ("p50", "p95", "p99"):
        assert getattr(with_open, name) >= getattr(plain, name)


# 3. Each target's share of the evidence ------------------------------------------------------


def test_a_target_needs_its_weighted_share_of_min_requests() -> None:
    """With weights 3:1 and min_requests 20, one lucky request cannot pass the light target."""
    thresholds = Thresholds(hold=0.0, min_requests=20)
    gate = Gate(thresholds, TARGET, Window(10.0), ("catalog", "search"), weights=[3, 1])
    assert gate.target_minimum == {"catalog": 15, "search": 5}
    gate.start(0.0)
    for index in range(40):
        gate.record(Sample(index * 0.01, index * 0.01 + 0.005, TARGET, "catalog"))
    gate.record(Sample(0.5, 0.505, TARGET, "search"))
    verdict = gate.evaluate(1.0, TARGET)
    assert not verdict.passing
    assert verdict.reason == (
        "only 1 requests for target 'search' at concurrency 16 in the last 1s; "
        "need at least 5 (its share of 20)"
    )
    for index in range(4):
        gate.record(Sample(0.6 + index * 0.05, 0.61 + index * 0.05, TARGET, "search"))
    assert gate.evaluate(1.0, TARGET).ready


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=120),
    st.integers(min_value=1, max_value=60),
)
def test_never_ready_while_a_target_lacks_its_share(
    weights: list[int], picks: list[int], minimum: int
) -> None:
    """Property: the gate never opens while any target has fewer than its share of requests."""
    names = tuple(f"t{i}" for i in range(len(weights)))
    thresholds = Thresholds(hold=0.0, min_requests=minimum)
    gate = Gate(thresholds, TARGET, Window(10.0), names, weights=weights)
    gate.start(0.0)
    counts = dict.fromkeys(names, 0)
    for index, pick in enumerate(picks):
        name = names[pick % len(names)]
        counts[name] += 1
        gate.record(Sample(index * 0.01, index * 0.01 + 0.001, TARGET, name))
    verdict = gate.evaluate(2.0, TARGET)
    share = {n: math.ceil(minimum * w / sum(weights)) for n, w in zip(names, weights, strict=True)}
    if any(counts[n] < share[n] for n in names):
        assert not verdict.ready


# 5. The plateau is a trend -----------------------------------------------------------------


def plateau_run(
    latency_at: Callable[[float], float], per_second: int, seconds: float
) -> list[Verdict]:
    """Evaluate a ``p95: auto`` gate every tick over samples of the given latency curve."""
    thresholds = Thresholds(plateau=True, window=4.0, hold=0.0, timeout=600.0)
    gate = Gate(thresholds, TARGET, Window(4.0), ("app",))
    gate.start(0.0)
    verdicts = []
    now = 0.0
    while now < seconds:
        count = int(per_second * TICK)
        for index in range(count):
            at = now + (index + 1) * TICK / count
            gate.record(Sample(at - latency_at(at), at, TARGET, "app"))
        now += TICK
        verdict = gate.evaluate(now, TARGET)
        verdicts.append(verdict)
        if verdict.done:
            break
    return verdicts


@settings(max_examples=40, deadline=None)
@given(
    st.floats(min_value=0.05, max_value=0.4),
    st.floats(min_value=0.01, max_value=0.5),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_slow_decay_is_not_a_plateau(decay: float, start: float, seed: int) -> None:
    """Property: latency falling 5-40% per window, with 2% noise, is never called a plateau."""
    rng = random.Random(seed)

    def latency(t: float) -> float:
        return float(start * (1 - decay) ** (t / 4.0) * (1 + rng.uniform(-0.02, 0.02)))

    # Run while the latency stays above a millisecond, well inside the histogram's range.
    seconds = min(40.0, 4.0 * math.log(0.001 / start) / math.log(1 - decay))
    verdicts = plateau_run(latency, 200, seconds)
    assert not any(v.outcome == WARM for v in verdicts)


@settings(max_examples=40, deadline=None)
@given(
    st.floats(min_value=0.002, max_value=0.5),
    st.floats(min_value=0.0, max_value=0.02),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_flat_series_is_a_plateau(level: float, noise: float, seed: int) -> None:
    """Property: flat latency with up to 2% noise is a plateau within three windows."""
    rng = random.Random(seed)
    verdicts = plateau_run(lambda _: level * (1 + rng.uniform(-noise, noise)), 200, 12.25)
    assert verdicts[-1].outcome == WARM
    assert verdicts[-1].elapsed >= 3 * GROUP_MIN * 1.0  # never before three groups of spans


def test_the_issue_case_jit_decay_is_not_a_plateau_at_310_requests() -> None:
    """An app going from 300ms to 5ms over thousands of requests is still improving early on."""
    served = 0

    def latency(_: float) -> float:
        nonlocal served
        served += 1
        return float(0.005 + 0.295 * 0.5 ** (served / 1500))

    verdicts = plateau_run(latency, 50, 60.0)
    assert not any(v.outcome == WARM for v in verdicts)


def test_a_plateau_needs_enough_requests_per_span() -> None:
    """At 8 req/s a span lasts until it holds 20 requests: no plateau before 9 x 20 requests."""
    verdicts = plateau_run(lambda _: 0.01, 8, 60.0)  # 8 requests per 1s span, fewer than 20
    assert verdicts[-1].outcome == WARM
    assert verdicts[-1].elapsed >= 3 * GROUP_MIN * SPAN_REQUESTS / 8
    assert any(
        v.reason.endswith("of 9 spans of 1s with at least 20 requests each") for v in verdicts
    )


def test_fit_finds_where_an_exponential_decay_is_heading() -> None:
    """Aitken's extrapolation of three group medians: never above the floor a decay heads to."""
    decay = [0.005 + 0.1 * 0.7**i for i in range(9)]
    trend = fit(decay, 3)
    assert trend.floor is not None
    assert trend.floor <= 0.005 * 1.001
    assert trend.change == pytest.approx(trend.last / trend.previous - 1)
    assert not trend.flat(0.1)  # 5ms + 6ms is not within 10% of 5ms
    assert fit([0.005 + 0.1 * 0.7**i for i in range(30, 39)], 3).flat(0.1)
    # A decay towards zero has no plateau; a fall that does not slow down has no floor.
    assert not fit([0.1 * 0.8**i for i in range(9)], 3).flat(0.1)
    assert fit([0.1 - 0.005 * i for i in range(9)], 3).floor is None
    assert fit([0.1] * 9, 3).flat(0.1)
    assert not fit([0.1] * 8, 3).flat(0.1)  # three groups are needed


def test_one_hiccup_neither_fakes_nor_hides_a_trend() -> None:
    """A flat series with one span ten times slower is still flat; a decay with one is not."""
    for where in range(9):
        flat = [0.05] * 9
        flat[where] = 0.5
        assert fit(flat, 3).flat(0.1), where
    decay = [0.3 * 0.7**i for i in range(9)]
    decay[4] = 0.001
    assert not fit(decay, 3).flat(0.1)


# 6. The ramp is never stricter than the gate --------------------------------------------------


def test_tail_bound_is_a_binomial_bound() -> None:
    """The Chernoff bound is never below the exact binomial tail, and 1 within the budget."""
    for n, k, p in ((50, 3, 0.01), (200, 10, 0.02), (20, 20, 0.01), (800, 20, 0.006)):
        exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert tail_bound(k, n, p) >= exact * (1 - 1e-9)
    assert tail_bound(1, 200, 0.01) == 1.0
    assert tail_bound(1, 5, 0.0) == 0.0


def test_one_error_among_few_requests_does_not_halve_the_level() -> None:
    """Below the target, 1 error in 5 requests is not meaningful: the ramp waits for more."""
    ramp = Ramp(16, Thresholds(success_rate=0.99), step=1.0)
    ramp.start(0.0, 8)
    few = [Sample(0.5, 0.6, 8, "app") for _ in range(4)] + [Sample(0.5, 0.6, 8, "app", "timeout")]
    step = ramp.decide(1.0, Stats.of(few))
    assert step.level == 8
    assert not step.changed


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=40)),
        min_size=1,
        max_size=30,
    ),
    st.floats(min_value=0.9, max_value=1.0),
)
def test_at_the_target_a_back_off_needs_evidence_the_gate_rejects(
    batches: list[tuple[int, int]], rate: float
) -> None:
    """Property: whenever the ramp backs off at the target, the gate's success check fails."""
    thresholds = Thresholds(success_rate=rate, window=10.0)
    judge = Judge(thresholds, TARGET, ("app",))
    judge.start(0.0)
    now = 0.0
    for good, bad in [(40, 0)] * 4 + batches:  # climb to the target first
        level = judge.level
        for index in range(good + bad):
            at = now + (index + 1) / (good + bad + 1)
            outcome = "ok" if index < good else "unexpected_status"
            judge.record(Sample(at - 0.001, at, level, "app", outcome, 500))
        now += 1.0
        was = judge.level
        evidence = judge.gate.evidence(now)[0]
        step, _ = judge.tick(now)
        if was == TARGET and step.level < TARGET:
            assert not success_check(evidence, rate, "").passed
            assert tail_bound(evidence.failures, evidence.requests, 1 - rate) < SIGNIFICANCE
            break


@pytest.mark.timeout(300)  # a thousand runs of a minute each, on a shared machine
@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.floats(min_value=0.0, max_value=0.006))
def test_sparse_errors_under_the_budget_never_back_off_at_the_target(
    seed: int, error_rate: float
) -> None:
    """Property: 80 req/s with up to 0.6% errors under a 99% threshold never backs off at 16."""
    rng = random.Random(seed)
    thresholds = Thresholds(success_rate=0.99, window=10.0, hold=5.0, min_requests=20)
    judge = Judge(thresholds, TARGET, ("app",), ramp_step=1.0)
    judge.start(0.0)
    now = 0.0
    reached = False
    while now < 60.0:
        level = judge.level
        for index in range(20):  # 80 req/s in ticks of 0.25s
            at = now + (index + 1) * TICK / 21
            failed = rng.random() < error_rate
            outcome, status = ("unexpected_status", 500) if failed else ("ok", 200)
            judge.record(Sample(at - 0.01, at, level, "app", outcome, status))
        now += TICK
        step, verdict = judge.tick(now)
        reached = reached or step.level == TARGET
        if reached:
            assert step.level == TARGET, step.reason
        if verdict.done:
            break


# 7. Stale failures age out on the next visit ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=20, max_value=400),
    st.floats(min_value=0.05, max_value=1.0),
    st.floats(min_value=0.25, max_value=8.0),
)
def test_failures_from_an_earlier_visit_do_not_hold_the_gate_shut(
    requests: int, failing: float, away: float
) -> None:
    """Property: after a back-off, the gate opens a hold after the return, whatever came before."""
    thresholds = Thresholds(success_rate=0.99, window=10.0, hold=2.0, min_requests=20)
    gate = Gate(thresholds, TARGET, Window(10.0), ("app",))
    gate.start(0.0)
    for index in range(requests):
        at = index / requests
        outcome = "timeout" if (index * failing) % 1 + failing >= 1 else "ok"
        gate.record(Sample(at, at + 0.01, TARGET, "app", outcome))
    gate.evaluate(1.0, TARGET)
    gate.evaluate(1.25, 8)  # backed off
    back = round((1.25 + away) / TICK) * TICK
    gate.evaluate(back, TARGET)  # at the target again
    now = back
    verdict = None
    while now < 30.0:
        for index in range(25):
            at = now + index * 0.01
            gate.record(Sample(at, at + 0.005, TARGET, "app"))
        now += TICK
        verdict = gate.evaluate(now, TARGET)
        if verdict.done:
            break
    assert verdict is not None
    assert verdict.outcome == WARM
    assert now <= back + thresholds.hold + 0.5  # not up to a window later, when it forgets


def simulate_pool_app(capable_at: float, hold: float) -> tuple[float | None, list[int]]:
    """A pool that copes with 1 + 15t/capable_at concurrent requests; requests above fail fast.

    Returns when the gate opened, and the levels the ramp went through.
    """
    thresholds = Thresholds(success_rate=0.99, window=10.0, hold=hold, min_requests=20)
    judge = Judge(thresholds, TARGET, ("app",), ramp_step=1.0)
    judge.start(0.0)
    levels = []
    now = 0.0
    while now < 120.0:
        level = judge.level
        capacity = min(TARGET, 1 + int(15 * now / capable_at))
        for worker in range(level):
            ok = worker < capacity
            for index in range(10):  # 25ms answers, 10 per worker per tick
                at = now + (index + 1) * 0.025
                outcome, status = ("ok", 200) if ok else ("unexpected_status", 503)
                judge.record(Sample(at - 0.025, at, level, "app", outcome, status))
        now += TICK
        step, verdict = judge.tick(now)
        levels.append(step.level)
        if verdict.done:
            return (now if verdict.outcome == WARM else None), levels
    return None, levels


@pytest.mark.parametrize("capable_at", [5.0, 12.0, 30.0])
def test_a_pool_style_cold_start_opens_within_hold_plus_two_seconds(capable_at: float) -> None:
    """The gate opens within hold + 2s of the moment the app can serve the target level."""
    opened, levels = simulate_pool_app(capable_at, hold=5.0)
    assert opened is not None
    assert capable_at <= opened <= capable_at + 5.0 + 2.0
    assert max(levels) == TARGET


# Raw figures beside the judged ones -------------------------------------------------------------


def test_the_report_shows_judged_and_raw_percentiles() -> None:
    """The record keeps the gate's judged p95 beside the raw one, and the text report says both."""
    gate = Gate(Thresholds(p95=0.2, hold=0.0), TARGET, Window(10.0), ("app",), closed_loop=True)
    gate.start(0.0)
    for each in closed_loop(TARGET, 0.0, 6.0, freezing(3.0, 0.8, 0.005)):
        gate.record(each)
    verdict = gate.evaluate(6.0, TARGET)
    recorder = Recorder(("app",), TARGET, {"p95": "200ms"}, 60.0)
    recorder.evaluation(
        Point(6.0, "warming", TARGET, 100, 1.0, None, None, None), False, verdict.window
    )
    record = recorder.finish(6.0, None, verdict.reason)
    assert record.judged is not None
    assert record.judged["p95_ms"] > 200 > record.judged["raw_p95_ms"]
    again = Record.from_json(json.loads(json.dumps(record.to_json())))
    assert again.judged == record.judged
    line = render_text(again).splitlines()[2]
    assert line.startswith("  last judged at concurrency 16: p95 ")
    assert "; as measured: p95 " in line


class HangingDriver:
    """A driver whose requests stay open until released: a stuck app, without a network."""

    name = "stuck"

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def execute(self) -> Outcome:
        """Wait until released, then succeed."""
        self.entered.set()
        await self.release.wait()
        return Outcome(OK, 200)

    async def probe(self) -> Down | None:
        """Always up."""
        return None

    async def aclose(self) -> None:
        """Nothing to close."""


def test_the_load_knows_its_open_requests() -> None:
    """Load.open_requests lists each open request's intended start, level and target."""

    async def scenario() -> tuple[list[Pending], list[Pending], list[Sample]]:
        driver = HangingDriver()
        done: list[Sample] = []
        both_done = asyncio.Event()

        def record(sample: Sample) -> None:
            done.append(sample)
            if len(done) >= 2:
                both_done.set()

        clock = iter(range(1000))
        load = Load([driver], [1.0], 2, record, clock=lambda: float(next(clock)))
        load.start()
        load.configure(2)
        async with asyncio.timeout(5):
            while len(load.open_requests()) < 2:
                await driver.entered.wait()
                driver.entered.clear()
        open_now = load.open_requests()
        driver.release.set()
        async with asyncio.timeout(5):
            await both_done.wait()
        load.configure(0)
        after = load.open_requests()
        await load.stop()
        return open_now, after, done

    open_now, after, done = asyncio.run(scenario())
    assert after == []
    assert sorted(p.level for p in open_now) == [2, 2]
    assert {p.target for p in open_now} == {"stuck"}
    assert sorted(p.issued_at for p in open_now) == sorted(s.issued_at for s in done[:2])


def test_failure_details_keep_only_the_top_few_per_slice() -> None:
    """Thousands of distinct error texts cost a few entries; the common one is still reported."""
    window = Window(10.0)
    for index in range(5000):
        detail = "relation missing" if index % 3 == 0 else f"request {index} failed"
        window.add(Sample(1.0, 1.05, TARGET, "app", "error", None, detail))
    cells = [tally for cells in window._slices.values() for tally in cells.values()]
    assert all(len(tally.details) <= DETAILS_KEPT for tally in cells)
    assert window.stats(2.0).details == {"error": "relation missing"}
    merged = Tally()
    for index in range(50):
        part = Tally()
        part.add(Sample(1.0, 1.05, TARGET, "app", "error", None, f"unique {index}"))
        part.add(Sample(1.0, 1.05, TARGET, "app", "timeout", None, "pool wait"))
        merged.merge(part)
    assert len(merged.details) <= DETAILS_KEPT
    assert merged.stats().details["timeout"] == "pool wait"
