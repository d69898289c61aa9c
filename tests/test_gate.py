"""The pure decision core: window, gate, ramp and judge, fed plain data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmgate.decide.gate import FAILED_CLOSED, OPENED_ON_TIMEOUT, WARM, Gate, Thresholds
from warmgate.decide.judge import Judge
from warmgate.decide.ramp import Ramp
from warmgate.decide.window import Sample, Stats, Window, percentile

TARGET = 16


def sample(
    at: float,
    latency: float = 0.01,
    *,
    level: int = TARGET,
    outcome: str = "ok",
    status: int | None = 200,
    target: str = "app",
) -> Sample:
    """A sample completed at ``at`` after ``latency`` seconds."""
    return Sample(at - latency, at, level, target, outcome, status)


def feed(gate: Gate, start: float, end: float, per_second: int, **kwargs: object) -> None:
    """Samples evenly spread over ``[start, end)``."""
    count = int((end - start) * per_second)
    for index in range(count):
        gate.record(sample(start + index / per_second, **kwargs))  # type: ignore[arg-type]


def make_gate(**overrides: object) -> Gate:
    """A gate with a 10s window, 5s hold, 20 requests minimum, p95 <= 200ms."""
    values: dict[str, object] = {"p95": 0.2, "window": 10.0, "hold": 5.0, "timeout": 60.0}
    values.update(overrides)
    thresholds = Thresholds(**values)  # type: ignore[arg-type]
    gate = Gate(thresholds, TARGET, Window(thresholds.window), ("app",))
    gate.start(0.0)
    return gate


def test_percentile_is_nearest_rank() -> None:
    """Nearest-rank percentiles: p50 of 1..100 is 50, p95 is 95, p99 is 99, empty is None."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile([], 0.5) is None


def test_window_forgets_old_samples() -> None:
    """Samples that completed a window ago or more are gone; filters pick level and target."""
    window = Window(10.0)
    window.add(sample(1.05))
    window.add(sample(5.05))
    window.add(sample(5.05, level=8, target="other"))
    assert window.stats(10.5).requests == 3
    assert window.stats(11.1).requests == 2
    assert window.stats(11.1, level=16).requests == 1
    assert window.stats(11.1, target="other").requests == 1
    assert window.stats(16.0).requests == 0


def test_window_percentiles_are_within_one_percent() -> None:
    """Window percentiles come from 1% buckets: never below the exact value."""
    window = Window(10.0)
    samples = [sample(1.0 + i / 1000, latency=(i + 1) / 1000) for i in range(1000)]
    for each in samples:
        window.add(each)
    exact = Stats.of(samples)
    approx = window.stats(2.0)
    for name in ("p50", "p95", "p99"):
        assert getattr(exact, name) <= getattr(approx, name) <= getattr(exact, name) * 1.0101


def test_gate_opens_after_hold() -> None:
    """Healthy traffic at the target level opens the gate once the hold has passed."""
    gate = make_gate()
    feed(gate, 0.0, 4.0, 50)
    verdict = gate.evaluate(4.0, TARGET)
    assert verdict.passing
    assert not verdict.ready
    assert verdict.reason.startswith("holding")
    feed(gate, 4.0, 9.0, 50)
    verdict = gate.evaluate(9.0, TARGET)
    assert verdict.ready
    assert verdict.outcome == WARM
    assert "at concurrency 16" in verdict.reason
    assert verdict.held_for == pytest.approx(5.0)


def test_a_failing_evaluation_restarts_the_hold() -> None:
    """One failing evaluation inside the hold sends it back to zero."""
    gate = make_gate(hold=3.0)
    feed(gate, 0.0, 2.0, 50)
    assert gate.evaluate(2.0, TARGET).passing
    feed(gate, 2.0, 3.0, 50, latency=1.0)
    failing = gate.evaluate(3.0, TARGET)
    assert not failing.passing
    assert failing.held_for == 0.0
    assert failing.reason.startswith("p95 1.00s > 200ms at concurrency 16")


def test_only_target_level_counts() -> None:
    """Perfect answers at lower levels never open the gate."""
    gate = make_gate()
    feed(gate, 0.0, 9.0, 200, level=8)
    verdict = gate.evaluate(9.0, 8)
    assert not verdict.passing
    assert verdict.window.requests == 0
    assert verdict.reason == "ramping up: concurrency 8 of 16, no requests at concurrency 16 yet"


def test_success_reason_names_the_failures() -> None:
    """The reason counts timeouts and statuses, most common first."""
    gate = make_gate()
    feed(gate, 0.0, 5.0, 10)
    feed(gate, 5.0, 6.0, 12, outcome="timeout", status=None)
    feed(gate, 6.0, 7.0, 3, outcome="unexpected_status", status=503)
    reason = gate.evaluate(7.0, TARGET).reason
    assert reason == "success 76.9% < 99% at concurrency 16: 12 timeouts, 3 answers 503"


def test_drift_hint_for_404s() -> None:
    """Mostly 404 answers suggest the warm-up path is wrong."""
    gate = make_gate()
    feed(gate, 0.0, 5.0, 10, outcome="unexpected_status", status=404)
    feed(gate, 5.0, 6.0, 10)
    reason = gate.evaluate(6.0, TARGET).reason
    assert reason.endswith("83.3% of answers were 404: the warm-up path may have drifted")


def test_min_requests_reason() -> None:
    """Too few requests at the target level is a reason of its own."""
    gate = make_gate(min_requests=100)
    feed(gate, 0.0, 1.0, 30)
    verdict = gate.evaluate(1.0, TARGET)
    assert verdict.reason == (
        "only 30 requests at concurrency 16 in the last 1s; need at least 100"
    )


def test_per_target_thresholds() -> None:
    """A failing target keeps the gate shut even when the total looks fine."""
    thresholds = Thresholds(window=10.0, hold=0.0, success_rate=0.9)
    gate = Gate(thresholds, TARGET, Window(10.0), ("a", "b"))
    gate.start(0.0)
    for index in range(95):
        gate.record(sample(index / 100, target="a"))
    for index in range(10):
        gate.record(sample(0.9 + index / 100, target="b", outcome="timeout", status=None))
    verdict = gate.evaluate(1.0, TARGET)
    assert not verdict.ready
    assert verdict.reason.startswith("success 0% < 90% for target 'b' at concurrency 16")
    assert verdict.targets["a"].requests == 95


@pytest.mark.parametrize(("fail_closed", "outcome", "ready"), [
    (False, OPENED_ON_TIMEOUT, True),
    (True, FAILED_CLOSED, False),
])  # fmt: skip
def test_timeout_opens_or_fails(fail_closed: bool, outcome: str, ready: bool) -> None:
    """At the deadline the gate opens anyway or fails closed, with the last reason."""
    gate = make_gate(timeout=30.0, fail_closed=fail_closed)
    feed(gate, 20.0, 30.0, 50, latency=0.5)
    verdict = gate.evaluate(30.0, TARGET)
    assert verdict.outcome == outcome
    assert verdict.ready is ready
    assert verdict.reason.startswith("not warm after 30s")
    assert "p95 500ms > 200ms at concurrency 16" in verdict.reason


def test_final_verdict_is_latched() -> None:
    """Once decided, later evaluations return the same verdict."""
    gate = make_gate(hold=0.0)
    feed(gate, 0.0, 1.0, 50)
    first = gate.evaluate(1.0, TARGET)
    assert first.outcome == WARM
    assert gate.evaluate(50.0, 1) is first


def test_plateau_waits_for_flat_latency() -> None:
    """p95: auto passes only once the p95 trend over several windows is within the tolerance."""
    gate = make_gate(p95=None, plateau=True, window=5.0, hold=0.0, plateau_tolerance=0.1)
    now = 0.0
    latency = 0.4
    verdicts = []
    while now < 60:
        feed(gate, now, now + 1.0, 40, latency=latency)
        now += 1.0
        verdicts.append(gate.evaluate(now, TARGET))
        if verdicts[-1].done:
            break
        latency = max(0.05, latency * 0.8)  # a JIT warming up, then flat at 50ms
    assert verdicts[0].reason.startswith("measuring the latency plateau")
    assert any(v.reason.startswith("p95 still changing") for v in verdicts)
    assert verdicts[-1].outcome == WARM
    assert verdicts[-1].window.p95 == pytest.approx(0.05, rel=0.011)


latencies = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)
outcomes = st.sampled_from(["ok", "ok", "ok", "timeout", "unexpected_status"])
levels = st.integers(min_value=1, max_value=TARGET)
samples = st.lists(st.tuples(latencies, outcomes, levels), max_size=400)


@settings(max_examples=150, deadline=None)
@given(samples, st.integers(min_value=1, max_value=300))
def test_never_ready_below_min_requests(data: list[tuple[float, str, int]], minimum: int) -> None:
    """Property: fewer target-level requests than min_requests never open the gate."""
    gate = make_gate(p95=None, hold=0.0, min_requests=minimum, success_rate=0.5)
    for index, (latency, outcome, level) in enumerate(data):
        gate.record(sample(index * 0.01, latency, level=level, outcome=outcome, status=None))
    now = len(data) * 0.01
    verdict = gate.evaluate(now, TARGET)
    counted = sum(1 for _, _, level in data if level == TARGET)
    if counted < minimum:
        assert not verdict.ready


@settings(max_examples=150, deadline=None)
@given(samples, st.floats(min_value=0.5, max_value=1.0))
def test_never_ready_below_success_rate(data: list[tuple[float, str, int]], rate: float) -> None:
    """Property: a target-level success ratio below the threshold never opens the gate."""
    gate = make_gate(p95=None, hold=0.0, min_requests=1, success_rate=rate)
    for index, (latency, outcome, level) in enumerate(data):
        gate.record(sample(index * 0.001, latency, level=level, outcome=outcome, status=None))
    verdict = gate.evaluate(len(data) * 0.001, TARGET)
    ratio = verdict.window.success_ratio
    if ratio is None or ratio < rate:
        assert not verdict.ready
    else:
        assert verdict.ready


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=200),
    st.floats(min_value=0.0, max_value=20.0),
)
def test_old_samples_never_count(times: list[float], after: float) -> None:
    """Property: samples that completed a window or more ago never count; recent ones do."""
    gate = make_gate(p95=None, hold=0.0, min_requests=1)
    for at in sorted(times):
        gate.record(sample(at))
    now = max(times) + after
    counted = gate.evaluate(now, TARGET).window.requests
    inside = sum(1 for at in times if at > now - 10.0)
    # The window counts whole 100 ms slices: only the oldest, partly covered one is left out.
    surely_inside = sum(1 for at in times if at >= now - 10.0 + 0.1 + 1e-9)
    assert surely_inside <= counted <= inside


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=64),
    st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=40)), max_size=60),
)
def test_ramp_never_exceeds_cap(cap: int, steps: list[tuple[bool, int]]) -> None:
    """Property: whatever the answers, the level stays within 1..cap."""
    ramp = Ramp(cap, Thresholds(p95=0.1), step=1.0, min_samples=1)
    ramp.start(0.0)
    now = 0.0
    for healthy, count in steps:
        issued = now + 0.01
        now += 1.0
        outcome = "ok" if healthy else "timeout"
        batch = [Sample(issued, issued + 0.01, ramp.level, "app", outcome) for _ in range(count)]
        step = ramp.decide(now, Stats.of(batch))
        assert 1 <= step.level <= cap
        assert ramp.level == step.level


def test_ramp_doubles_then_halves() -> None:
    """Healthy steps double the level up to the target; a failing step halves it."""
    ramp = Ramp(16, Thresholds(success_rate=0.99), step=1.0)
    ramp.start(0.0)
    levels = []
    now = 0.0
    for _ in range(5):
        now += 1.0
        batch = [Sample(now - 0.5, now - 0.4, ramp.level, "app") for _ in range(40)]
        levels.append(ramp.decide(now, Stats.of(batch)).level)
    assert levels == [2, 4, 8, 16, 16]
    now += 1.0
    bad = [Sample(now - 0.5, now - 0.4, 16, "app", "timeout") for _ in range(40)]
    step = ramp.decide(now, Stats.of(bad))
    assert step.level == 8
    assert step.reason.startswith("backing off to 8: success 0% < 99% at concurrency 16")


def test_ramp_is_not_held_back_by_latency() -> None:
    """Slow but successful answers still raise the level: a cold app warms through traffic."""
    ramp = Ramp(16, Thresholds(p95=0.1), step=1.0)
    ramp.start(0.0)
    slow = [Sample(0.5, 1.0, 1, "app") for _ in range(10)]
    assert ramp.decide(1.0, Stats.of(slow)).level == 2


def test_ramp_waits_for_enough_samples() -> None:
    """A step with too few answers is not judged yet."""
    ramp = Ramp(16, Thresholds(), step=1.0, min_samples=5)
    ramp.start(0.0)
    assert not ramp.decide(2.0, Stats.of([Sample(0.5, 0.6, 1, "app")])).changed
    assert ramp.level == 1


def test_controller_reaches_target_then_opens() -> None:
    """The judge ramps 1->16 on healthy answers and then opens after the hold."""
    thresholds = Thresholds(p95=0.2, window=10.0, hold=2.0, min_requests=20, timeout=60.0)
    judge = Judge(thresholds, TARGET, ("app",), ramp_step=1.0)
    judge.start(0.0)
    now = 0.0
    verdict = None
    while now < 30.0:
        level = judge.level
        for index in range(level * 5):
            issued = now + index * (0.25 / (level * 5))
            judge.record(Sample(issued, issued + 0.01, level, "app"))
        now += 0.25
        _, verdict = judge.tick(now)
        if verdict.done:
            break
    assert verdict is not None
    assert verdict.outcome == WARM
    assert verdict.level == TARGET
    assert now < 10.0


def test_stats_as_dict_uses_milliseconds() -> None:
    """The status JSON shape: milliseconds, success ratio, request count."""
    stats = Stats.of([sample(1.0, 0.25), sample(2.0, 0.5, outcome="timeout", status=None)])
    assert stats.as_dict() == {
        "requests": 2,
        "success_ratio": 0.5,
        "p50_ms": 250.0,
        "p95_ms": 500.0,
        "p99_ms": 500.0,
        "raw_p50_ms": 250.0,
        "raw_p95_ms": 500.0,
        "raw_p99_ms": 500.0,
        "slow_in_flight": 0,
    }


def test_failure_details_reach_the_reason() -> None:
    """Failures without a status carry the driver's detail, with readable plurals."""
    gate = make_gate()
    feed(gate, 0.0, 5.0, 10)
    for index in range(30):
        at = 5.0 + index / 30
        gate.record(Sample(at - 0.01, at, TARGET, "app", "error", None, 'relation "orders" does not exist'))  # fmt: skip
    for index in range(4):
        at = 6.0 + index / 10
        gate.record(Sample(at - 0.01, at, TARGET, "app", "write_rejected", None, "read-only"))
    reason = gate.evaluate(6.5, TARGET).reason
    assert reason.endswith(
        ': 30 errors (relation "orders" does not exist), 4 rejected writes (read-only)'
    )


def test_window_memory_is_bounded_without_reads() -> None:
    """A window that is only written to still forgets old slices (no leak while keeping warm)."""
    window = Window(10.0)
    for index in range(100_000):
        window.add(sample(index * 0.01))
    assert len(window._order) <= 101
    assert 990 <= window.stats(1000.0).requests <= 999  # the last 10 s, less a partial slice


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([TARGET, TARGET, 8, 4]), min_size=1, max_size=40))
def test_never_ready_below_target_level(levels: list[int]) -> None:
    """Property: whatever the window holds, a tick at a level below the target never passes."""
    gate = make_gate(p95=None, hold=0.0, min_requests=1)
    now = 0.0
    for level in levels:
        feed(gate, now, now + 0.5, 40)
        now += 0.5
        verdict = gate.evaluate(now, level)
        if level < TARGET:
            assert not verdict.passing
            assert not verdict.ready
            assert verdict.reason.startswith("ramping up: concurrency")
        if verdict.done:
            break


def test_back_off_restarts_the_hold() -> None:
    """Good answers at 16 then a back-off to 8: the hold restarts and the gate stays shut."""
    gate = make_gate(hold=1.0)
    feed(gate, 0.0, 0.9, 50)
    assert gate.evaluate(0.9, TARGET).passing
    verdict = gate.evaluate(1.0, 8)
    assert not verdict.passing
    assert verdict.held_for == 0.0
    assert verdict.reason == "ramping up: concurrency 8 of 16"


def test_paced_reasons_name_the_rate() -> None:
    """With a rate, reasons speak of the full rate, not of the concurrency cap."""
    judge = Judge(Thresholds(p95=0.2, hold=5.0), TARGET, ("app",), 1.0, rate=400.0)
    judge.start(0.0)
    judge.ramp.start(0.0, TARGET)
    for index in range(100):
        judge.record(sample(index / 100, latency=0.5))
    _, verdict = judge.tick(1.0)
    assert verdict.reason == "p95 500ms > 200ms at 400 req/s"


def test_ramping_reason_names_the_worst_target() -> None:
    """Below the target level with several targets, the reason names the one failing worst."""
    gate = Gate(Thresholds(hold=0.0), TARGET, Window(10.0), ("catalog", "search"))
    gate.start(0.0)
    for index in range(20):
        gate.record(sample(index / 20, level=2, target="catalog"))
        gate.record(sample(index / 20, level=2, target="search", outcome="timeout", status=None))
    reason = gate.evaluate(1.0, 2).reason
    assert reason.startswith("ramping up: concurrency 2 of 16, no requests at concurrency 16 yet;")
    assert reason.endswith("(worst: target 'search', 0%)")
