"""``window: auto``: just enough of the most recent requests to judge each threshold.

The statistics are checked against exact binomial sums and by coverage over many draws; the gate
is checked on cold apps simulated on a fake clock under the real judge (:mod:`tests.cold_apps`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cold_apps import App, drive
from warmgate.decide.checks import success_check
from warmgate.decide.evidence import quantile_needed, success_needed, success_requests, upper_rank
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
    """59 answers bound a p95, 299 a p99, 5 a median; 321 clean answers show 99% success (the
    clean window spends 80% of the 5%: ``0.99^321 <= 0.04``)."""
    assert quantile_needed(0.95) == 59
    assert quantile_needed(0.99) == 299
    assert quantile_needed(0.50) == 5
    assert success_needed(0.99) == 321
    assert success_needed(0.999) == 3218
    assert success_needed(1.0) == 1
    assert 0.99**321 <= 0.04 < 0.99**320
    assert [success_requests(0.99, k) for k in range(4)] == [321, 639, 909, 1144]
    assert success_requests(1.0, 0) == 1
    assert success_requests(1.0, 1) is None
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


def binomial_at_most(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)``, summed exactly in logarithms."""

    def mass(i: int) -> float:
        log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        return math.exp(log + i * math.log(p) + (n - i) * math.log1p(-p))

    return math.fsum(mass(i) for i in range(min(k, n) + 1))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=4000),
    st.integers(min_value=0, max_value=60),
    st.sampled_from([0.9, 0.95, 0.99, 0.995, 0.999]),
)
def test_the_success_check_passes_only_where_the_exact_binomial_tail_allows(
    n: int, failures: int, rate: float
) -> None:
    """Property: ``failures`` among ``n`` pass under window auto exactly when ``n`` reaches the
    sequential test's need, and never where an app failing at the budget shows that few failures
    more than 5% of the time (the one-sided Clopper-Pearson bound above the budget); the need
    grows with the failures seen. Without confidence the check is the plain ratio."""
    failures = min(failures, n)
    stats = Stats(requests=n, successes=n - failures)
    needed = success_requests(rate, failures)
    assert needed is not None
    passed = success_check(stats, rate, "", confidence=0.95).passed
    assert passed == (n >= needed)
    if passed:
        assert binomial_at_most(failures, n, 1 - rate) <= 0.05
    assert binomial_at_most(failures, needed, 1 - rate) <= 0.05
    assert success_requests(rate, failures + 1) > needed  # type: ignore[operator]
    assert success_check(stats, rate, "").passed == (stats.successes / n >= rate)


def test_the_sequential_test_spends_at_most_5_percent_in_all() -> None:
    """Exactly, request by request over 6,000 answers: the chance that an app failing at the
    1% budget ever shows ``n_k`` answers with at most ``k`` failures is within 5% (and spends
    most of it: the test is not needlessly slow)."""
    p = 0.01
    needs = [success_requests(0.99, k) for k in range(80)]
    alive = {0: 1.0}  # failures so far -> chance, among the paths that have not passed
    passed = 0.0
    k = 0
    for n in range(1, 6001):
        moved: dict[int, float] = {}
        for failures, chance in alive.items():
            moved[failures] = moved.get(failures, 0.0) + chance * (1 - p)
            moved[failures + 1] = moved.get(failures + 1, 0.0) + chance * p
        while needs[k + 1] <= n:  # type: ignore[operator]
            k += 1
        allowed = k if needs[k] <= n else -1  # type: ignore[operator]
        passed += math.fsum(chance for failures, chance in moved.items() if failures <= allowed)
        alive = {f: c for f, c in moved.items() if f > allowed and c > 1e-18}
    assert 0.045 <= passed <= 0.05


def walk_passes(rng: random.Random, p: float, longest: int, needed: Callable[[int], int]) -> bool:
    """One walk back from the newest answer over ``longest`` answers failing at rate ``p``:
    whether some length holds at least ``needed(k)`` answers with its ``k`` failures."""
    position = 0  # answers before the next failure, drawn as geometric gaps
    for k in range(longest):
        gap = int(math.log(1.0 - rng.random()) / math.log1p(-p))
        position += gap
        if min(position, longest) >= needed(k):
            return True
        if position >= longest:
            return False
        position += 1
    return False


def pointwise_needs(p: float, count: int) -> list[int]:
    """The shortest window in which ``k`` failures pass the exact tail on their own, for each
    ``k`` below ``count`` (each search starts from the previous need)."""
    needs: list[int] = []
    n = 1
    for k in range(count):
        n = max(n, k + 1)
        while binomial_at_most(k, n, p) > 0.05:
            n += 1
        needs.append(n)
    return needs


def test_an_app_failing_at_the_budget_passes_under_5_percent_of_walks() -> None:
    """Simulation, 20,000 seeded windows that grow back over up to 6,000 answers: an app failing
    exactly 1% passes fewer than 6% of them (testing each length on its own tail would pass
    about one in four), an app failing 0.2% passes almost every one."""
    rng = random.Random(11)
    walks = 20_000

    def sequential(k: int) -> int:
        return success_requests(0.99, k) or 0

    at_budget = sum(walk_passes(rng, 0.01, 6000, sequential) for _ in range(walks)) / walks
    assert at_budget < 0.06
    pointwise = pointwise_needs(0.01, 100)
    naive = sum(walk_passes(rng, 0.01, 6000, pointwise.__getitem__) for _ in range(walks)) / walks
    assert naive > 0.15
    healthy = sum(walk_passes(rng, 0.002, 6000, sequential) for _ in range(2000)) / 2000
    assert healthy > 0.99


def test_the_gate_opens_an_app_at_the_budget_in_under_5_percent_of_windows() -> None:
    """The gate itself, 1,000 seeded windows of 1,500 answers at exactly 1% failures: the success
    check passes fewer than 6% of them (2.0% when measured; the same windows judged on their
    ratio pass 61.6%, and 299 answers judged on their ratio pass about 42%)."""
    rng = random.Random(5)
    passed = ratio_passed = 0
    windows = 1000
    for _ in range(windows):
        gate = Gate(auto(p95=None, hold=0.0), TARGET, Window(60.0), ("app",))
        gate.start(0.0)
        for index in range(1500):
            at = index * 0.002 + 0.001
            ok = rng.random() >= 0.01
            gate.record(Sample(at - 0.001, at, TARGET, "app", "ok" if ok else "error"))
        verdict = gate.evaluate(3.0, TARGET)
        passed += next(c for c in verdict.checks if c.name == "success_rate").passed
        ratio_passed += success_check(verdict.window, 0.99, "").passed
    assert passed / windows < 0.06
    assert ratio_passed / windows > 0.3  # the same windows, judged on their ratio


def test_a_window_grows_past_its_failures_until_they_are_few_enough() -> None:
    """A failure among the newest requests: the window grows to 639 requests, not 321; two
    failures close together with no room behind them: nothing passes, and the reason says what
    the failures need."""
    gate = Gate(auto(p95=None, hold=0.0), TARGET, Window(60.0), ("app",))
    gate.start(0.0)
    for index in range(1000):
        at = index * 0.01 + 0.005
        outcome = "error" if index == 990 else "ok"
        gate.record(Sample(at - 0.001, at, TARGET, "app", outcome))
    verdict = gate.evaluate(10.0, TARGET)
    assert verdict.passing, verdict.reason
    assert 639 <= verdict.window.requests <= 650
    assert verdict.window.failures == 1

    gate = Gate(auto(p95=None, hold=0.0), TARGET, Window(60.0), ("app",))
    gate.start(0.0)
    for index in range(700):
        at = index * 0.01 + 0.005
        outcome = "error" if index in (100, 650) else "ok"
        gate.record(Sample(at - 0.001, at, TARGET, "app", outcome))
    verdict = gate.evaluate(7.0, TARGET)
    assert not verdict.passing
    assert verdict.window.requests == 700
    assert verdict.reason.startswith(
        "success 99.7% over 700 requests at concurrency 16 does not show 99% with 95% "
        "confidence yet: 2 failures need at least 909 requests"
    ), verdict.reason


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=30.0),
            st.sampled_from([True] * 19 + [False]),  # 5% failures under a 10% budget
            st.sampled_from(["a", "b"]),
            st.sampled_from([8, TARGET]),
        ),
        max_size=600,
    ),
    st.integers(min_value=0, max_value=60),
    st.floats(min_value=20.0, max_value=40.0),
)
def test_merging_whole_blocks_counts_as_merging_slices(
    samples: list[tuple[float, bool, str, int]], need: int, now: float
) -> None:
    """Property: with blocks (window auto), the tally of a long window and where the window
    starts are those of the plain walk over slices, late samples included (a brute-force walk
    that judges every start)."""
    window = Window(60.0)
    for index, (at, ok, target, level) in enumerate(samples):
        window.add(Sample(at - 0.001, at, level, target, "ok" if ok else "error"))
        if index % 7 == 3:  # read in between, so blocks are built and then hit by late samples
            window.tally(now, level=TARGET, target="a", blocks=True)
    for target in ("a", "b", None):
        plain = window.tally(now, level=TARGET, target=target)
        merged = window.tally(now, level=TARGET, target=target, blocks=True)
        assert merged.latencies.requests == plain.latencies.requests
        assert merged.latencies.successes == plain.latencies.successes
        assert merged.latencies.buckets == plain.latencies.buckets
        assert merged.outcomes == plain.outcomes

    def success(failures: int) -> int | None:
        return success_requests(0.9, failures)

    needs: dict[str | None, int] = {None: need, "a": need // 2}
    start = window.start_holding(now, needs, level=TARGET, success=success, budget=0.1)
    expected = None
    for index in sorted({math.floor(at / 0.1) for at, *_ in samples}, reverse=True):
        since = window.since_for(index * 0.1)
        holds = True
        for name, least in needs.items():
            tally = window.tally(now, level=TARGET, target=name, since=since).latencies
            wanted = success(tally.requests - tally.successes)
            holds &= tally.requests >= least and wanted is not None and tally.requests >= wanted
        if holds:
            expected = index * 0.1
            break
    assert start == (None if expected is None else pytest.approx(expected))


def test_a_long_walk_over_blocks_starts_where_a_walk_over_slices_does() -> None:
    """60 seeded windows of up to 3,000 requests over 30s, 1-9% failures under a 10% budget:
    the walk that counts whole blocks at once starts each window where judging every start
    slice by slice does (many of them seconds back)."""
    grown = 0
    for seed in range(60):
        rng = random.Random(seed)
        window = Window(60.0)
        share = rng.choice([0.01, 0.03, 0.06, 0.09])
        ats = [rng.uniform(0.0, 30.0) for _ in range(rng.randint(100, 3000))]
        for index, at in enumerate(ats):
            outcome = "ok" if rng.random() > share else "error"
            target, level = rng.choice("ab"), rng.choice([8, TARGET])
            window.add(Sample(at - 0.001, at, level, target, outcome))
            if index % 50 == 3:  # blocks built early, then hit by late samples
                window.tally(31.0, level=TARGET, target="a", blocks=True)
        needs: dict[str | None, int] = {None: 20, "a": 10}

        def success(failures: int) -> int | None:
            return success_requests(0.9, failures)

        start = window.start_holding(31.0, needs, level=TARGET, success=success, budget=0.1)
        expected = None
        for index in sorted({math.floor(at / 0.1) for at in ats}, reverse=True):
            since = window.since_for(index * 0.1)
            holds = True
            for name, least in needs.items():
                tally = window.tally(31.0, level=TARGET, target=name, since=since).latencies
                wanted = success(tally.requests - tally.successes)
                holds &= tally.requests >= least and wanted is not None and tally.requests >= wanted
            if holds:
                expected = index * 0.1
                break
        assert start == (None if expected is None else pytest.approx(expected)), seed
        grown += start is not None and start < 26.0
    assert grown >= 12  # the blocks were walked past, not only the newest slices


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
    """Two targets: each needs 321 answers (99% success with 95% confidence), not a share."""
    gate = Gate(auto(p95=None), TARGET, Window(60.0), ("a", "b"), weights=[3.0, 1.0])
    assert gate.needed == 321
    assert gate.target_needed == {"a": 321, "b": 321}
    gate.start(0.0)
    for index in range(2000):
        at = index * 0.001 + 0.001
        gate.record(Sample(at - 0.001, at, TARGET, "a" if index % 10 else "b"))
    verdict = gate.evaluate(2.0, TARGET)
    assert not verdict.passing
    assert "for target 'b'" in verdict.reason
    assert "to judge its thresholds with 95% confidence" in verdict.reason
    assert verdict.window.requests >= 321


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
