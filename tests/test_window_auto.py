"""``window: auto``: just enough of the most recent requests to judge each threshold.

The statistics are checked against exact binomial sums and by coverage over many draws; the gate
is checked on cold apps simulated on a fake clock under the real judge (:mod:`tests.cold_apps`).
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cold_apps import App, drive
from warmgate.decide.evidence import quantile_needed, success_needed, upper_rank
from warmgate.decide.gate import WARM, Gate, Thresholds
from warmgate.decide.judge import Judge
from warmgate.decide.window import Pending, Sample, Stats, Tally, Window
from warmgate.report.record import Point, Record, Recorder
from warmgate.report.render import render_svg

TARGET = 16


def auto(**overrides: object) -> Thresholds:
    """The issue's gate (success 99%, hold 3s) with ``window: auto`` (at most 60s)."""
    values: dict[str, object] = {
        "success_rate": 0.99,
        "p95": 0.2,
        "window": 60.0,
        "window_auto": True,
        "hold": 3.0,
        "timeout": 120.0,
    }
    values.update(overrides)
    return Thresholds(**values)  # type: ignore[arg-type]


# The statistics -------------------------------------------------------------------------------


def test_the_needed_counts_are_the_binomial_bounds() -> None:
    """59 answers bound a p95, 299 a p99, 5 a median; 299 clean answers show 99% success."""
    assert quantile_needed(0.95) == 59
    assert quantile_needed(0.99) == 299
    assert quantile_needed(0.50) == 5
    assert success_needed(0.99) == 299
    assert success_needed(0.999) == 2995
    assert success_needed(1.0) == 1
    assert 0.99**299 <= 0.05 < 0.99**298
    assert 1 - 0.95**59 >= 0.95 > 1 - 0.95**58


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=1500), st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_upper_rank_is_the_smallest_rank_that_bounds_the_quantile(n: int, q: float) -> None:
    """Property: against the exact binomial sum, the rank bounds with 95%; one less does not
    (where the normal approximation is used, at most two ranks more than needed)."""

    def mass(i: int) -> float:  # P(Binomial(n, q) = i), in logarithms to stay finite
        log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        return math.exp(log + i * math.log(q) + (n - i) * math.log1p(-q))

    def below(k: int) -> float:  # P(Binomial(n, q) <= k - 1)
        return math.fsum(mass(i) for i in range(k))

    k = upper_rank(n, q)
    if k is None:
        assert n < quantile_needed(q)
        return
    assert below(k) >= 0.95 - 1e-9
    exact = k
    while exact > 1 and below(exact - 1) >= 0.95 - 1e-9:
        exact -= 1
    if math.sqrt(n * q * (1 - q)) < 10:
        assert k == exact
    else:
        assert k - exact <= 2


def test_the_judged_quantile_bounds_the_true_one_95_times_in_100() -> None:
    """Coverage: over 2,000 windows of 59..400 exponential answers the judged p95 is at or above
    the true p95 at least 95% of the time (and the plain nearest-rank p95 is not)."""
    rng = random.Random(7)
    true_p95 = -math.log(0.05) * 0.01
    bounded = plain = 0
    trials = 2000
    for _ in range(trials):
        n = rng.randint(59, 400)
        tally = Tally()
        for _ in range(n):
            latency = rng.expovariate(100.0)
            tally.add(Sample(0.0, latency, TARGET, "app"))
        stats = tally.stats(confidence=0.95)
        assert stats.p95 is not None
        assert stats.raw_p95 is not None
        bounded += stats.p95 >= true_p95
        plain += stats.raw_p95 >= true_p95
    assert bounded / trials >= 0.95
    assert plain / trials < 0.9


def test_the_window_starts_where_just_enough_requests_are() -> None:
    """The newest slices holding the need of every target; ``None`` when the window holds less."""
    window = Window(60.0)
    for index in range(100):  # 10 requests a second for each of two targets
        at = index * 0.1 + 0.05
        window.add(Sample(at - 0.01, at, TARGET, "a"))
        window.add(Sample(at - 0.01, at, TARGET, "b"))
    now = 10.0
    assert window.start_holding(now, {None: 20}, level=TARGET) == pytest.approx(9.0)
    assert window.start_holding(now, {None: 20, "a": 15}, level=TARGET) == pytest.approx(8.5)
    assert window.start_holding(now, {None: 500}, level=TARGET) is None
    assert window.start_holding(now, {None: 20}, level=1) is None
    start = window.start_holding(now, {None: 20}, level=TARGET)
    assert start is not None
    assert window.tally(now, since=window.since_for(start)).latencies.requests == 20


# The gate on cold apps --------------------------------------------------------------------------


class Jsp:
    """A JSP-like app: the requests sent before ``compiled`` compile pages (about 2s each),
    later ones answer in 3ms. Warm once the last slow one has answered."""

    def __init__(self, compiled: float) -> None:
        self.compiled = compiled
        self.warm_at = 0.0

    def __call__(self, sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        if sent_at < self.compiled:
            latency = 2.0 * rng.uniform(0.8, 1.2)
            self.warm_at = max(self.warm_at, sent_at + latency)
            return latency, True
        return 0.003 * rng.uniform(0.8, 1.2), True


@pytest.mark.parametrize("seed", range(5))
def test_a_jsp_app_opens_within_the_hold_and_a_second_of_being_warm(seed: int) -> None:
    """Thousands of fast answers right after the last slow first hit: the auto window judges
    them at once and the gate opens within hold + 1s; a 5s window waits for the slow hits to
    leave it first."""
    app = Jsp(compiled=12.0)  # the ramp reaches 16 at about 8s: slow hits at the target too
    run = drive(Judge(auto(), TARGET, ("app",)), app, 60.0, seed=seed)
    assert run.opened_at is not None, run.last.reason
    assert app.warm_at <= run.opened_at <= app.warm_at + 3.0 + 1.0
    assert run.last.window_start is not None
    assert run.last.window_start >= app.warm_at - 0.1  # judged on fast answers only

    fixed = Thresholds(success_rate=0.99, p95=0.2, window=5.0, hold=3.0, timeout=120.0)
    app = Jsp(compiled=12.0)
    run = drive(Judge(fixed, TARGET, ("app",)), app, 60.0, seed=seed)
    assert run.opened_at is not None
    assert run.opened_at > app.warm_at + 3.0 + 1.0


def test_a_pool_that_fills_opens_within_the_hold_and_a_second() -> None:
    """A pool that grows to 16 connections over 10s: above its size every request fails fast.
    Opens within the hold, a second and the ramp's climb back (two steps) of the pool filling."""
    judge = Judge(auto(), TARGET, ("app",))

    def pool(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        capacity = 1 + int(15 * sent_at / 10.0)
        return 0.02, judge.level <= capacity

    run = drive(judge, pool, 60.0)
    assert run.opened_at is not None, run.last.reason
    assert 10.0 <= run.opened_at <= 10.0 + 3.0 + 1.0 + 2.0


def test_sparse_errors_open_within_the_hold_and_a_second() -> None:
    """0.2% errors under a 99% success rate, warm from the start: opens within the hold and a
    second of reaching the target level (four ramp steps) in most runs — a window of about 300
    requests holds 4 or more errors (1.3%) now and then, which restarts the hold — and within two
    holds in every run."""

    def sparse(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        return 0.01 * rng.uniform(0.8, 1.2), rng.random() >= 0.002

    opened = []
    for seed in range(10):
        run = drive(Judge(auto(), TARGET, ("app",)), sparse, 60.0, seed=seed)
        assert run.opened_at is not None, run.last.reason
        opened.append(run.opened_at)
    assert sum(at <= 4.0 + 3.0 + 1.0 for at in opened) >= 7, opened
    assert max(opened) <= 4.0 + 2 * 3.0 + 1.0, opened


def test_an_app_that_hangs_at_first_opens_once_its_hung_requests_are_gone() -> None:
    """The first 16 requests hang 8s: while they are in flight past the limit the gate stays
    shut; once they answer, it opens within the hold and a second."""

    def hanging(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        return (8.0 if sent_at < 4.5 else 0.01), True

    run = drive(Judge(auto(), TARGET, ("app",)), hanging, 60.0, keep=True)
    assert run.opened_at is not None, run.last.reason
    assert run.opened_at >= 12.0  # a request sent at 4.25 hangs until 12.25
    assert run.opened_at <= 12.5 + 3.0 + 1.0


@pytest.mark.parametrize(
    ("name", "app"),
    [
        ("never warms", lambda t, n, rng: (0.5, True)),
        ("answers 404", lambda t, n, rng: (0.002, False)),
        ("fails 5%", lambda t, n, rng: (0.01, rng.random() >= 0.05)),
    ],
)
def test_apps_that_are_not_warm_never_open(name: str, app: App) -> None:
    """Slow for good, failing, or failing 5%: window auto never opens them."""
    run = drive(Judge(auto(timeout=60.0), TARGET, ("app",)), app, 60.0)
    assert not any(v.outcome == WARM for v in run.verdicts), name


def test_an_app_that_stalls_every_3s_never_opens() -> None:
    """A 0.8s freeze every 3s: within any hold one freeze, whose users' wait fails the p95."""

    def stalling(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        into = sent_at % 3.0
        return (0.8 - into + 0.005 if into < 0.8 else 0.005), True

    run = drive(Judge(auto(timeout=60.0), TARGET, ("app",)), stalling, 60.0)
    assert not any(v.outcome == WARM for v in run.verdicts)


def test_cookie_bound_sessions_that_fail_now_and_then_never_open() -> None:
    """An app that fails every 50th request (a session bound to one host, say) is 98% healthy:
    window auto never opens it at a 99% success rate."""

    def sessions(sent_at: float, served: int, rng: random.Random) -> tuple[float, bool]:
        return 0.01, served % 50 != 0

    run = drive(Judge(auto(timeout=60.0), TARGET, ("app",)), sessions, 60.0)
    assert not any(v.outcome == WARM for v in run.verdicts)


# What stays as today ----------------------------------------------------------------------------


def test_each_target_needs_enough_to_judge_its_own_thresholds() -> None:
    """Two targets: each needs 299 answers (99% success with 95% confidence), not a share."""
    gate = Gate(auto(p95=None), TARGET, Window(60.0), ("a", "b"), weights=[3.0, 1.0])
    assert gate.needed == 299
    assert gate.target_needed == {"a": 299, "b": 299}
    gate.start(0.0)
    for index in range(2000):
        at = index * 0.001 + 0.001
        gate.record(Sample(at - 0.001, at, TARGET, "a" if index % 10 else "b"))
    verdict = gate.evaluate(2.0, TARGET)
    assert not verdict.passing
    assert "for target 'b'" in verdict.reason
    assert "to judge its thresholds with 95% confidence" in verdict.reason
    assert verdict.window.requests >= 299


def test_a_hung_request_still_counts_in_the_auto_window() -> None:
    """Requests in flight past the limit fail the p95 at once, as with a fixed window."""
    gate = Gate(auto(hold=0.0), TARGET, Window(60.0), ("app",))
    gate.start(0.0)
    for index in range(1000):
        at = index * 0.001 + 0.001
        gate.record(Sample(at - 0.001, at, TARGET, "app"))
    hung = [Pending(0.0, TARGET, "app")] * TARGET
    verdict = gate.evaluate(1.0, TARGET, hung)
    assert not verdict.passing
    assert "in flight past the limit" in verdict.reason
    assert gate.evaluate(1.0, TARGET).passing


def test_the_default_window_judges_as_before() -> None:
    """Without window auto the judged p95 is the nearest rank and the needed count
    ``min_requests``."""
    thresholds = Thresholds(p95=0.2, window=5.0, hold=0.0)
    gate = Gate(thresholds, TARGET, Window(5.0), ("app",))
    assert gate.needed == thresholds.min_requests
    gate.start(0.0)
    for index in range(100):
        at = index * 0.01 + 0.01
        gate.record(Sample(at - (0.3 if index == 50 else 0.01), at, TARGET, "app"))
    verdict = gate.evaluate(1.0, TARGET)
    assert verdict.window.p95 == verdict.window.raw_p95
    assert verdict.window_start == pytest.approx(0.0)


def test_the_chart_marks_where_the_window_started() -> None:
    """The report keeps where the last judged window started, and the chart draws it."""
    recorder = Recorder(("app",), TARGET, {"p95": "200ms", "success_rate": "99%"}, 60.0)
    for tenth in range(1, 60):
        t = tenth / 10
        point = Point(t, "warming", TARGET, 100, 1.0, 0.01, 0.02, 0.03)
        recorder.evaluation(point, t > 3.0, Stats(requests=300, successes=300), t - 0.2)
    record = recorder.finish(6.0, WARM, "warm")
    assert record.window_start == pytest.approx(5.7)
    again = Record.from_json(json.loads(json.dumps(record.to_json())))
    assert again.window_start == pytest.approx(5.7)
    svg = render_svg(again)
    assert "the window judged last started at 5.7s" in svg


def test_the_chart_marks_a_window_that_starts_after_the_last_point() -> None:
    """Points are kept every so often; a window of the last few hundred requests may start
    after the last of them, and is still drawn."""
    record = Record(
        target_level=TARGET,
        thresholds={"p95": "200ms"},
        timeout=60.0,
        points=[Point(t / 2, "warming", TARGET, 100, 1.0, 0.01, 0.02, 0.03) for t in range(8)],
        window_start=3.8,
    )
    assert "the window judged last started at 3.8s" in render_svg(record)
