"""The decision end to end: the real CLI against simulated apps that stall, warm by use, or err."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import items_url, run_cli
from warmgate.demo.simapp import Behavior, SimApp

pytestmark = pytest.mark.slow


def prime(app: SimApp, status_dir: Path, *flags: str, timeout: float = 90) -> tuple[int, Any]:
    """Run ``warmgate prime`` against ``app``; the exit code and the final status."""
    result = run_cli(
        "prime", "--url", items_url(app.port), "--status-dir", str(status_dir),
        "--log-format", "json", *flags, timeout=timeout,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    status = json.loads((status_dir / "status.json").read_text())
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, (status, events)


def test_a_stalling_app_fails_p95_in_the_closed_loop(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """Frozen 0.45s every second, the app stays shut at p95 200ms though its raw p95 is a few ms."""
    # A quarter of users at the observed rate wait more than 200ms, whatever that rate is; and
    # any 2 s hold holds a whole freeze (a freeze ends at most 1 s after any instant), so no
    # phase between the ramp and the freezes lets the hold pass between two of them.
    stalling = sim_app(
        Behavior(start_capacity=16, full_capacity=16, stall_every=1.0, stall_for=0.45)
    )
    gate = ["--concurrency", "16", "--p95", "200ms", "--window", "6s", "--hold", "2s"]
    code, (status, _) = prime(
        stalling, tmp_path / "stalling", *gate, "--timeout", "15s", "--on-timeout", "fail"
    )
    assert code == 1
    assert status["outcome"] == "failed_closed"
    window = status["window"]
    assert window["p95_ms"] > 200
    assert window["raw_p95_ms"] < 200  # what a closed loop alone would have reported
    assert "p95" in status["reason"]

    steady = sim_app(Behavior(start_capacity=16, full_capacity=16))
    code, (status, _) = prime(steady, tmp_path / "steady", *gate, "--timeout", "30s")
    assert code == 0
    assert status["outcome"] == "warm"


@pytest.mark.timeout(200)  # a noisy shared machine makes the trend slow to settle
def test_auto_plateau_waits_until_an_app_warming_by_use_has_stopped_improving(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """300ms cold, 5ms warm, halving every 300 requests: p95 auto opens only near the floor."""
    behavior = Behavior(
        start_capacity=8, full_capacity=8, base_latency=0.005, cold_latency=0.3, jit_half_life=300
    )
    app = sim_app(behavior)
    code, (status, _) = prime(
        app, tmp_path / "wg", "--concurrency", "8", "--p95", "auto", "--window", "6s",
        "--hold", "1s", "--timeout", "100s", "--on-timeout", "fail", timeout=150,
    )  # fmt: skip
    assert code == 0, status["reason"]
    assert status["outcome"] == "warm"
    # When it opened, the cold part of the latency had shrunk below the warm latency itself.
    halvings = app.stats.served / behavior.jit_half_life
    assert halvings >= math.log2(behavior.cold_latency / behavior.base_latency)


def test_sparse_errors_at_a_low_rate_never_back_off_at_the_target(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """0.6% errors at 80 req/s under a 99% threshold: warm, and the ramp never leaves 16."""
    app = sim_app(Behavior(start_capacity=16, full_capacity=16, error_every=170))
    code, (status, events) = prime(
        app, tmp_path / "wg", "--concurrency", "16", "--rate", "80", "--success-rate", "0.99",
        "--window", "10s", "--hold", "3s", "--timeout", "60s", "--on-timeout", "fail",
    )  # fmt: skip
    assert code == 0, status["reason"]
    assert status["outcome"] == "warm"
    assert app.stats.errors > 0
    ramps = [e for e in events if e.get("event") == "ramp"]
    assert [e["level"] for e in ramps][-1] == 16
    assert not [e for e in ramps if e["level"] < e["previous"]], ramps


def test_window_auto_is_wired_through_prime_and_the_report(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """--window auto reaches the gate: a steady app opens judged on just enough recent requests
    (at least the 321 a 99% rate needs without a failure), and the report marks where that window started."""
    app = sim_app(Behavior(start_capacity=16, full_capacity=16))
    code, (status, _) = prime(
        app, tmp_path / "wg", "--concurrency", "16", "--p95", "200ms", "--window", "auto",
        "--hold", "2s", "--timeout", "60s", "--on-timeout", "fail",
    )  # fmt: skip
    assert code == 0, status["reason"]
    assert status["outcome"] == "warm"
    assert status["window"]["requests"] >= 321
    report = run_cli("report", "--status-dir", str(tmp_path / "wg"), "--output",
                     str(tmp_path / "report.svg"))  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "the window judged last started at" in (tmp_path / "report.svg").read_text()
