"""The warm-up record and its renderings: histograms, phases, text, SVG, HTML, live view."""

from __future__ import annotations

import io
import json
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.helpers import run_cli
from warmgate.decide.histogram import Histogram
from warmgate.decide.window import percentile
from warmgate.demo.simapp import Behavior, SimApp
from warmgate.report.record import Point, Record, Recorder
from warmgate.report.render import render_html, render_svg, render_text, suggestions
from warmgate.runtime.primer import publish_report
from warmgate.serve.live import render_status
from warmgate.serve.logs import Log
from warmgate.serve.status import Status, StatusDir


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0002, max_value=100.0), min_size=1, max_size=300))
def test_histogram_percentiles_within_one_percent(latencies: list[float]) -> None:
    """Property: histogram percentiles are never below the exact value, and within 1% above."""
    histogram = Histogram()
    for latency in latencies:
        histogram.add(latency, ok=True)
    exact = sorted(latencies)
    for q in (0.5, 0.95, 0.99):
        value = histogram.percentile(q)
        truth = percentile(exact, q)
        assert value is not None
        assert truth is not None
        assert truth <= value <= truth * 1.0101


def point(t: float, level: int = 16, p95: float = 0.01) -> Point:
    """A point at ``t`` seconds."""
    return Point(t, "warming", level, 100, 1.0, p95 / 2, p95, p95 * 2)


def test_broken_streak_folds_back_into_the_ramp() -> None:
    """Requests of a passing streak that breaks count as ramp; the final streak is hold."""
    recorder = Recorder(("app",), 16, {"p95": "200ms"}, 60.0)
    recorder.up(1.0)
    recorder.evaluation(point(2.0), passing=True)
    for _ in range(10):
        recorder.sample("app", 0.01, ok=True)
    recorder.evaluation(point(3.0), passing=False)
    recorder.evaluation(point(4.0), passing=True)
    for _ in range(5):
        recorder.sample("app", 0.02, ok=True)
    record = recorder.finish(9.0, "warm", "warm: fine")
    assert record.targets["app"]["ramp"].requests == 10
    assert record.targets["app"]["hold"].requests == 5
    assert record.hold_at == 4.0
    assert record.to_json() == Record.from_json(json.loads(json.dumps(record.to_json()))).to_json()


def sample_record(outcome: str = "warm") -> Record:
    """A plausible record: 2s wait, ramp to 16, hold from 10s to 15s."""
    recorder = Recorder(("items", "search"), 16, {"success_rate": "0.99", "p95": "200ms"}, 300.0)
    recorder.up(2.0)
    rng = random.Random(7)
    for tenth in range(20, 150):
        t = tenth / 10
        level = min(16, 2 ** int((t - 2) / 1.5))
        recorder.evaluation(point(t, level, 0.3 / t), passing=t >= 10)
        for name in ("items", "search"):
            recorder.sample(name, rng.uniform(0.005, 0.3 / t), ok=rng.random() > 0.01)
    return recorder.finish(15.0, outcome, "warm: 900 requests, success 100%")


def test_text_report_has_table_chart_and_suggestions() -> None:
    """The terminal report: phases, one row per target and phase, a chart, advice."""
    text = render_text(sample_record())
    assert text.startswith("warm-up report: warm after 15s (wait 2s, ramp 8s, hold 5s)")
    assert "items / ramp" in text
    assert "search / hold" in text
    assert "all / hold" in text
    assert "  p95      " in text
    assert "level    " in text
    assert "gate.timeout: 50s" in text


def test_suggestions_when_not_warm() -> None:
    """A failed warm-up names the lowest p95 seen at the target level."""
    advice = suggestions(sample_record(outcome="failed_closed"))
    assert advice[0].startswith("not warm: the lowest p95 seen at concurrency 16 was ")


def test_svg_and_html_are_well_formed() -> None:
    """The SVG parses as XML with the three panels; the HTML embeds it and the table."""
    record = sample_record()
    root = ET.fromstring(render_svg(record))
    assert root.tag.endswith("svg")
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 5  # p50, p95, p99, success, level
    page = render_html(record)
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "items / hold" in page
    assert "src=" not in page  # self-contained


def test_live_view_marks_each_threshold() -> None:
    """The live panel shows level vs target, each threshold with a pass or fail mark."""
    now = time.time()
    status = Status(
        state="warming",
        ready=False,
        reason="p95 412ms > 200ms at concurrency 16",
        started_at=now,
        updated_at=now,
        phase_started_at=now,
        level=16,
        target_level=16,
        window={
            "requests": 480,
            "success_ratio": 1.0,
            "p50_ms": 100.0,
            "p95_ms": 412.0,
            "p99_ms": 500.0,
        },
        hold_required_s=5.0,
        timeout_s=300.0,
        elapsed_s=12.0,
        checks=(
            {"name": "requests", "passed": True, "actual": "480", "limit": "20"},
            {"name": "success_rate", "passed": True, "actual": "100%", "limit": "99%"},
            {"name": "p95", "passed": False, "actual": "412ms", "limit": "200ms"},
        ),
    )
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render_status(status))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "WARMING" in text
    assert "16/16" in text
    assert "412ms (limit 200ms)" in text
    assert "✗" in text
    assert text.count("✓") == 2
    assert "12s/5m" in text


@pytest.mark.slow
def test_prime_report_files_and_report_command(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """prime --report writes the page; `warmgate report` re-renders the recorded run."""
    app = sim_app(Behavior(start_capacity=1, full_capacity=16, warm_requests=300))
    page = tmp_path / "warmup.html"
    url = f"http://127.0.0.1:{app.port}/items/{{{{ randint(1, 100) }}}}"
    result = run_cli("prime", "--url", url, "--concurrency", "16", "--window", "3s", "--hold", "1s",
                     "--status-dir", str(tmp_path / "wg"), "--report", str(page), "--log-format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "<svg" in page.read_text()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    [summary] = [e for e in events if e["event"] == "report" and "targets" in e]
    assert summary["targets"]["target-1"]["hold"]["requests"] > 0
    assert summary["hold_s"] >= 1.0
    assert summary["ramp_s"] > 0
    shown = run_cli("report", "--status-dir", str(tmp_path / "wg"))
    assert shown.returncode == 0
    assert shown.stdout.startswith("warm-up report: warm after ")
    svg = tmp_path / "chart.svg"
    assert run_cli("report", "--status-dir", str(tmp_path / "wg"), "-o", str(svg)).returncode == 0
    ET.fromstring(svg.read_text())


def test_report_errors_exit_2(tmp_path: Path) -> None:
    """A bad --report suffix or a missing record is a one-sentence error, exit 2."""
    bad = run_cli("prime", "--url", "http://127.0.0.1:9/", "--report", str(tmp_path / "r.png"))
    assert bad.returncode == 2
    assert "must end in .html" in bad.stderr
    missing = run_cli("report", "--status-dir", str(tmp_path))
    assert missing.returncode == 2
    assert "no warm-up has finished with this --status-dir yet" in missing.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[" * 100_000 + "]" * 100_000, "is nested deeper than 32 levels"),
        ('{"targets":' * 40 + "{}" + "}" * 40, "is nested deeper than 32 levels"),
        ("[]", "does not hold a warm-up record"),
        ('{"bucket_ratio": 1.01, "target_level": 1, "points": [[1]]}', "cannot be read as a"),
    ],
    ids=["past-the-parser", "past-the-bound", "a-list", "short-points"],
)
def test_a_damaged_record_is_one_sentence_and_exit_2(
    tmp_path: Path, content: str, said: str
) -> None:
    """report reads report.json with bounds: a record too deep or of the wrong shape is one
    sentence, exit 2, never a traceback."""
    (tmp_path / "report.json").write_text(content)
    result = run_cli("report", "--status-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"warmgate: {tmp_path / 'report.json'} ")
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_report_output_errors_name_the_output_option(tmp_path: Path) -> None:
    """`report -o` to a missing directory or with a wrong suffix exits 2 naming --output."""
    StatusDir(tmp_path).write_report(sample_record().to_json())
    for output, message in [
        ("/nonexistent/dir/x.svg", "--output: cannot write /nonexistent/dir/x.svg (No such file or directory)"),
        (str(tmp_path / "x.png"), f"--output: {tmp_path / 'x.png'} must end in .html"),
    ]:  # fmt: skip
        result = run_cli("report", "--status-dir", str(tmp_path), "-o", output)
        assert result.returncode == 2
        assert message in result.stderr
        assert "--report" not in result.stderr
        assert "Traceback" not in result.stderr
    written = run_cli("report", "--status-dir", str(tmp_path), "-o", str(tmp_path / "x.svg"))
    assert written.returncode == 0, written.stderr
    ET.fromstring((tmp_path / "x.svg").read_text())


def test_a_report_that_cannot_be_written_at_the_end_is_logged(tmp_path: Path) -> None:
    """If the report's directory vanished during the warm-up, the failure is a log event, not an error."""
    stream = io.StringIO()
    target = tmp_path / "gone" / "report.html"
    publish_report(sample_record(), Log(stream), target)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [event["event"] for event in events] == ["report", "report"]
    assert events[-1]["error"] is True
    assert events[-1]["message"].startswith(
        f"the report was not written: --report: cannot write {target} (No such file or directory)"
    )
    assert not target.parent.exists()
