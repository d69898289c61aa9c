"""`warmgate demo`: a simulated cold app and a SQLite database, gated end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_cli
from warmgate.demo.simapp import Behavior
from warmgate.demo.tour import demo_command, run_demo, summary
from warmgate.kernel.errors import ConfigError


@pytest.mark.slow
def test_demo_gate_opens_only_after_the_app_copes(tmp_path: Path) -> None:
    """The gate opens after the simulated app first copes with the target concurrency."""
    behavior = Behavior(start_capacity=1, full_capacity=32, warm_requests=300, cold_latency=0.05)
    overrides = {"gate": {"hold": "1s", "window": "3s"}, "log_format": "json"}
    result = run_demo(behavior, overrides, tmp_path / "demo.html")
    assert result.status.ready
    assert result.status.outcome == "warm"
    assert result.capable_after is not None
    assert result.ready_after is not None
    assert result.ready_after >= result.capable_after + 1.0
    assert set(result.status.targets) == {"catalog", "orders-db"}
    assert result.status.targets["orders-db"]["requests"] > 0
    assert "<svg" in (tmp_path / "demo.html").read_text()
    text = summary(result, 16, 1.0, 3.0)
    assert text.startswith("the app first coped with 16 concurrent requests ")


def test_the_demo_chart_marks_where_an_auto_window_started(tmp_path: Path) -> None:
    """With --window auto the demo's chart draws where the last judged window began, and the
    punchline says what was judged."""
    behavior = Behavior(start_capacity=1, full_capacity=32, warm_requests=300, cold_latency=0.05)
    overrides = {"gate": {"hold": "1s", "window": "auto"}, "log_format": "json"}
    result = run_demo(behavior, overrides, tmp_path / "demo.svg", sql=False)
    assert result.status.outcome == "warm", result.status.reason
    assert result.window == "auto"
    svg = (tmp_path / "demo.svg").read_text()
    assert "the window judged last started at" in svg
    text = summary(result, 16, 1.0, result.window)
    assert "judged over just enough of the most recent requests (window: auto)" in text


@pytest.mark.slow
def test_demo_command_runs_as_documented() -> None:
    """The CLI demo exits 0 with the report and the punchline."""
    result = run_cli(
        "demo", "--app-warm-requests", "200", "--hold", "1s", "--log-format", "human", timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "warm-up report: warm after" in result.stdout
    assert "orders-db / hold" in result.stdout
    assert "the gate opened" in result.stdout


def test_demo_rejects_a_bad_duration() -> None:
    """A demo option without a unit is a one-sentence error, exit 2."""
    result = run_cli("demo", "--app-cold-latency", "150")
    assert result.returncode == 2
    assert "'150' has no unit" in result.stderr


def test_demo_command_checks_its_options_before_starting_anything() -> None:
    """demo_command, behind the CLI's demo, refuses a duration without a unit before any app starts."""
    with pytest.raises(ConfigError, match=re.escape("--app-cold-latency/--app-compile-delay: '300' has no unit")):  # fmt: skip
        demo_command(32, 500, "150ms", "300", concurrency=16, p95="100ms", hold="3s",
                     timeout="2m", sql=False, report=None, log_format="json")  # fmt: skip
