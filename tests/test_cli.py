"""The real CLI, as a subprocess, against real local servers."""

from __future__ import annotations

import array
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    WarmgateProcess,
    cli_env,
    free_port,
    http_get,
    items_url,
    poll,
    run_cli,
)
from tests.test_config import billion_laughs
from warmgate.demo.simapp import Behavior, SimApp

COLD = Behavior(start_capacity=1, full_capacity=1, base_latency=0.02)
"""Copes with one request at a time; 16 at once get 503s."""
WARM = Behavior(start_capacity=16, full_capacity=16, base_latency=0.02)
"""The same app once it copes with 16 at a time."""
NEVER_WARM = Behavior(start_capacity=1, full_capacity=1, base_latency=0.002)
FAST_GATE = ["--concurrency", "16", "--window", "3s", "--hold", "1s", "--min-requests", "20"]


def read_json(path: Path) -> dict[str, object]:
    """A JSON file's object."""
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.slow
def test_run_opens_only_when_the_app_copes_at_target_concurrency(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """The headline behaviour: 503 with reasons while cold, 200 only once the app copes with 16
    and the hold has passed on top."""
    app = sim_app(COLD)
    status_dir = tmp_path / "wg"
    args = ["run", "--url", items_url(app.port), "--success-rate", "0.99", "--p95", "200ms",
            *FAST_GATE, "--hold", "2s", "--timeout", "1m", "--on-timeout", "ready",
            "--status-dir", str(status_dir), "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        code, reason = http_get(f"{base}/readyz")
        assert code == 503
        assert reason.strip()
        assert "warmgate_ready 0.0" in http_get(f"{base}/metrics")[1]
        assert run_cli("check", "--status-dir", str(status_dir)).returncode == 1
        reasons: set[str] = set()

        def opened() -> bool:
            code, body = http_get(f"{base}/readyz")
            if code != 200:
                reasons.add(body.strip())
            return code == 200

        gate.wait_for(lambda e: e.get("event") == "ramp")
        assert opened() is False
        capable = time.monotonic()
        app.behavior = WARM  # the test decides when the app has warmed up
        poll(opened, timeout=45, interval=0.1, what="/readyz 200")
        # Causality, not timing: the 2 s hold can only start once the app copes with 16.
        assert time.monotonic() >= capable + 2.0
        assert any("at concurrency 16" in r or "ramping up" in r for r in reasons)

        # The endpoint flips first; the files follow (status.json, then the marker).
        poll((status_dir / "ready").exists, timeout=5, what="the ready marker")
        status = read_json(status_dir / "status.json")
        assert status["state"] == "ready"
        assert status["outcome"] == "warm"
        assert status["concurrency"] == {"level": 16, "target": 16}
        window = status["window"]
        assert isinstance(window, dict)
        assert window["success_ratio"] >= 0.99
        assert window["p95_ms"] <= 200
        assert "warmgate_ready 1.0" in http_get(f"{base}/metrics")[1]
        assert json.loads(http_get(f"{base}/status")[1])["ready"] is True
        checked = run_cli("check", "--status-dir", str(status_dir))
        assert checked.returncode == 0
        assert checked.stdout.startswith("ready: warm:")
        assert gate.stop() == 0
    phases = [(e["state"], e["ready"]) for e in gate.events if e.get("event") == "phase"]
    # A stopped sidecar no longer vouches for the app: it withdraws readiness and the marker.
    assert phases[-3:] == [("warming", False), ("ready", True), ("stopped", False)]
    assert not (status_dir / "ready").exists()


@pytest.mark.slow
def test_prime_with_a_yaml_config(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """The same gate as a YAML file: prime exits 0 once warm and leaves the status behind."""
    app = sim_app(Behavior(start_capacity=1, full_capacity=16, warm_requests=400))
    config = tmp_path / "warmup.yaml"
    config.write_text(
        f"""
targets:
  - name: items
    http:
      url: "{items_url(app.port)}"
      headers: {{Accept: application/json}}
load: {{concurrency: 16}}
gate: {{success_rate: 0.99, p95: 200ms, window: 3s, hold: 1s, timeout: 1m}}
status_dir: {tmp_path / "wg"}
"""
    )
    result = run_cli("prime", "--config", str(config), "--log-format", "json", timeout=90)
    assert result.returncode == 0, result.stderr
    status = read_json(tmp_path / "wg" / "status.json")
    assert status["outcome"] == "warm"
    targets = status["targets"]
    assert isinstance(targets, dict)
    assert set(targets) == {"items"}
    assert (tmp_path / "wg" / "ready").exists()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"start", "phase", "ramp"} <= {event["event"] for event in events}


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "code", "outcome"), [
    ("fail", 1, "failed_closed"),
    ("ready", 0, "opened_on_timeout"),
])  # fmt: skip
def test_prime_deadline_policy(
    sim_app: Callable[..., SimApp], tmp_path: Path, policy: str, code: int, outcome: str
) -> None:
    """An app that never copes with 16: fail closed exits 1, fail open exits 0, both say why."""
    app = sim_app(NEVER_WARM)
    result = run_cli("prime", "--url", items_url(app.port), *FAST_GATE, "--timeout", "3s",
                     "--on-timeout", policy, "--status-dir", str(tmp_path), timeout=60)  # fmt: skip
    assert result.returncode == code, result.stderr
    status = read_json(tmp_path / "status.json")
    assert status["outcome"] == outcome
    assert str(status["reason"]).startswith("not warm after 3s")
    assert (tmp_path / "ready").exists() is (policy == "ready")


@pytest.mark.slow
def test_unreachable_target_fails_closed_after_the_wait(tmp_path: Path) -> None:
    """Nothing listening: the wait phase gives up at its deadline with the reason."""
    port = free_port()
    result = run_cli("prime", "--url", f"http://127.0.0.1:{port}/", "--wait-timeout", "1s",
                     "--on-timeout", "fail", "--status-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 1
    status = read_json(tmp_path / "status.json")
    assert status["state"] == "failed"
    assert status["reason"] == (
        f"failed closed: the target did not answer within 1s: 127.0.0.1:{port}: connection refused"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_target_that_never_answers(tmp_path: Path) -> None:
    """A target that accepts connections but never answers fails on timeouts, not a hang."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        port = listener.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(
            f"targets:\n  - http: {{url: 'http://127.0.0.1:{port}/', timeout: 300ms}}\n"
            "gate: {timeout: 3s, on_timeout: fail, window: 2s, hold: 1s}\n"
        )
        result = run_cli("prime", "--config", str(config), "--status-dir", str(tmp_path / "wg"))
    finally:
        listener.close()
    assert result.returncode == 1
    reason = str(read_json(tmp_path / "wg" / "status.json")["reason"])
    assert "timeout" in reason


@pytest.mark.slow
def test_sigterm_while_warming_exits_0(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """SIGTERM while warming at full load: exit 0, the final status says stopped and not ready."""
    app = sim_app(NEVER_WARM)
    args = ["run", "--url", items_url(app.port), *FAST_GATE, "--status-dir", str(tmp_path),
            "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        gate.wait_for(lambda e: e.get("event") == "ramp")
        code = gate.stop(signal.SIGTERM, timeout=30)  # a deadline, not the measure (benchmarks/)
    assert code == 0
    status = read_json(tmp_path / "status.json")
    assert status["reason"] == "stopped by SIGTERM; not vouching for the app any more"
    assert (status["state"], status["ready"]) == ("stopped", False)


@pytest.mark.slow
def test_sigint_during_prime_is_not_ready(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """Interrupting prime before warm exits 1; the status says stopped, and not ready."""
    app = sim_app(NEVER_WARM)
    args = ["prime", "--url", items_url(app.port), *FAST_GATE, "--status-dir", str(tmp_path)]
    with WarmgateProcess(*args) as gate:
        gate.wait_for(lambda e: e.get("event") == "ramp")
        assert gate.stop(signal.SIGINT) == 1
    status = read_json(tmp_path / "status.json")
    assert (status["state"], status["ready"]) == ("stopped", False)
    assert status["reason"] == "stopped by SIGINT before the target was warm"


@pytest.mark.slow
def test_rearm_when_the_app_restarts(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """After ready, a target that stops answering closes the gate; an app back at once is as
    cold as one back after a minute: it is primed again, and the gate reopens once re-warmed."""
    app = sim_app()
    port = app.port
    args = ["run", "--url", items_url(port), *FAST_GATE, "--rearm-after", "1s",
            "--keep-warm-rate", "20", "--status-dir", str(tmp_path), "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        poll(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=30, what="first ready")
        served = app.stats.served
        poll(lambda: app.stats.served > served + 5, timeout=10, what="keep-warm trickle")
        app.stop()
        poll(lambda: http_get(f"{base}/readyz")[0] == 503, timeout=15, what="gate closed")
        assert not (tmp_path / "ready").exists()
        restarted = sim_app(port=port)  # back at once: the refusal alone re-arms
        rearm = gate.wait_for(lambda e: e.get("event") == "rearm")
        assert "refused a connection: the app restarted" in str(rearm["message"])
        poll(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=30, what="ready again")
        assert restarted.stats.served > 0  # primed again, not waved through
        metrics = http_get(f"{base}/metrics")[1]
        assert "warmgate_rearms_total 1.0" in metrics
        assert read_json(tmp_path / "status.json")["rearms"] == 1
        assert gate.stop() == 0
    final = read_json(tmp_path / "status.json")
    assert (final["state"], final["ready"]) == ("stopped", False)
    assert str(final["reason"]).startswith("stopped by SIGTERM")
    assert not (tmp_path / "ready").exists()
    targets = final["targets"]
    assert isinstance(targets, dict)
    assert targets["target-1"]["requests"] > 0  # the warm window survives the stop
    assert any(e.get("event") == "rearm" for e in gate.events)


@pytest.mark.slow
def test_serve_exposes_a_status_dir(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """prime writes the status; serve exposes it over /readyz and /metrics."""
    app = sim_app()
    primed = run_cli(
        "prime", "--url", items_url(app.port), *FAST_GATE, "--status-dir", str(tmp_path)
    )
    assert primed.returncode == 0, primed.stderr
    with WarmgateProcess("serve", "--status-dir", str(tmp_path), "--port", "0") as served:
        base = f"http://127.0.0.1:{served.port()}"
        code, body = http_get(f"{base}/readyz")
        assert code == 200
        assert body.startswith("warm:")
        assert "warmgate_ready 1.0" in http_get(f"{base}/metrics")[1]
        assert json.loads(http_get(f"{base}/status")[1])["outcome"] == "warm"
        assert served.stop() == 0


def test_check_without_status_is_not_ready(tmp_path: Path) -> None:
    """check exits 1 when nothing has been written yet."""
    result = run_cli("check", "--status-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == f"not ready: no status in {tmp_path} yet\n"


def test_validate_prints_the_plan_from_env_vars() -> None:
    """Every flag also comes from WARMGATE_*; validate prints the effective plan."""
    env = {"WARMGATE_URL": "http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b\n", "WARMGATE_CONCURRENCY": "4",
           "WARMGATE_P95": "auto", "WARMGATE_ON_TIMEOUT": "fail"}  # fmt: skip
    result = run_cli("validate", env=env)
    assert result.returncode == 0, result.stderr
    assert "target-1: 50% of requests, HTTP GET http://127.0.0.1:9/a" in result.stdout
    assert "target-2: 50% of requests" in result.stdout
    assert "ramp from 1 to 4 in flight" in result.stdout
    assert "p95 plateau" in result.stdout
    assert "then fail closed (exit 1)" in result.stdout


def test_url_env_var_is_split_on_lines_not_spaces() -> None:
    """WARMGATE_URL holds a template with spaces as one URL; blank and CRLF lines are skipped."""
    template = "http://127.0.0.1:9/items/{{ randint(1, 1000) }}"
    one = run_cli("validate", env={"WARMGATE_URL": template})
    assert one.returncode == 0, one.stderr
    assert f"target-1: 100% of requests, HTTP GET {template} " in one.stdout
    assert "target-2" not in one.stdout
    two = run_cli("validate", env={"WARMGATE_URL": f"\n{template}\r\n  \nhttp://127.0.0.1:9/b\r\n"})
    assert two.returncode == 0, two.stderr
    assert f"target-1: 50% of requests, HTTP GET {template} " in two.stdout
    assert "target-2: 50% of requests, HTTP GET http://127.0.0.1:9/b " in two.stdout


def test_url_flag_is_repeatable_and_wins_over_the_env_var() -> None:
    """Each --url is one target, and --url on the command line replaces WARMGATE_URL."""
    result = run_cli("validate", "--url", "http://127.0.0.1:9/{{ randint(1, 2) }}", "--url",
                     "http://127.0.0.1:9/b", env={"WARMGATE_URL": "http://127.0.0.1:9/env"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "target-1: 50% of requests, HTTP GET http://127.0.0.1:9/{{ randint(1, 2) }} "
        in result.stdout
    )
    assert "target-2: 50% of requests, HTTP GET http://127.0.0.1:9/b " in result.stdout
    assert "/env" not in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["validate", "--url", "http://x/{{ randnt(1) }}"], "targets[0].http.url: 'randnt' is undefined"),
    (["validate", "--url", "http://[::1/"], "targets[0].http.url: 'http://[::1/' is not a valid URL"),
    (["validate", "--url", "http://127.0.0.1:99999/"], "targets[0].http.url: 'http://127.0.0.1:99999/' has port '99999'"),
    (["validate", "--url", "http://x/{{ 1 // 0 }}"], "targets[0].http.url: the template failed to render (ZeroDivisionError"),
    (["validate", "--url", "http://x/{{ range(10**9) | list }}"], "targets[0].http.url: the template failed to render (OverflowError"),
    (["validate", "--url", "http://x/", "--rate", "1"], "so the gate could never pass; raise load.rate to at least 2"),
    (["prime", "--url", "http://127.0.0.1:9/", "--report", "/nonexistent/dir/r.html"], "--report: /nonexistent/dir does not exist; create it or write the report elsewhere."),
    (["prime", "--url", "http://127.0.0.1:9/", "--report", "/sys/kernel/r.html"], "--report: /sys/kernel is not writable"),
    (["validate", "--url", "http://x/", "--p95", "200"], "gate.p95: '200' has no unit; write '200ms'"),
    (["validate", "--url", "http://x/", "--on-timeout", "maybe"], "gate.on_timeout: 'maybe' is not allowed"),
    (["validate"], "no targets: give at least one --url"),
    (["validate", "--config", "/nonexistent.yaml"], "/nonexistent.yaml does not exist"),
    (["prime", "--url", "http://127.0.0.1:9/", "--status-dir", "/sys/kernel"], "/sys/kernel is not writable"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["serve", "--status-dir", ".", "--port", "70000"], "Invalid value for '--port'"),
    (["serve", "--status-dir", ".", "--port", "-1"], "Invalid value for '--port'"),
    (["serve", "--status-dir", ".", "--log-format", "xml"], "'xml' is not one of 'auto'"),
    (["demo", "--log-format", "xml"], "'xml' is not one of 'auto'"),
    (["validate", "--url", "http://x/", "--log-format", "xml"], "log_format: 'xml' is not allowed"),
    (["prime", "--url", "http://x/", "--port", "70000"], "server.port: Input should be less than or equal to 65535"),
    (["validate", "--url", "http://x/", "--status-dir", ""], "status_dir: is empty; write a directory such as /warmgate"),
    (["validate", "--url", "http://x/", "--rate", "inf"], "load.rate: 'inf' is not a finite number"),
    (["validate", "--url", "http://x/", "--timeout", "3s"], "gate.hold 5s is not shorter than gate.timeout 3s"),
    (["validate", "--url", "http://bob:pa/ss@x/"], "'http://bob:***@x/' carries a user or password"),
    (["validate", "--config", "/dev/zero"], "--config: /dev/zero is a device, not a regular file"),
])  # fmt: skip
def test_bad_input_exits_2_with_one_sentence(args: list[str], message: str) -> None:
    """Config and usage mistakes exit 2 with a sentence naming the field, never a traceback."""
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "pa/ss" not in result.stderr


def test_hostile_config_files_exit_2_at_once(tmp_path: Path) -> None:
    """A FIFO, an alias bomb and nesting 20,000 deep each exit 2 with one line, never hanging."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    deep = tmp_path / "deep.yaml"
    deep.write_text("targets: " + "[" * 20000 + "]" * 20000 + "\n")
    for path in (fifo, bomb, deep):
        result = run_cli("validate", "--config", str(path), timeout=20)
        assert result.returncode == 2
        assert result.stderr.startswith(f"warmgate: --config: {path} ")
        assert result.stderr.count("\n") == 1


def test_config_file_that_is_not_utf8_exits_2(tmp_path: Path) -> None:
    """A config file in another encoding exits 2 with one sentence, not a traceback."""
    config = tmp_path / "warmup.yaml"
    config.write_bytes(
        "targets:\n  - http: {url: 'http://127.0.0.1:9/'}  # café\n".encode("latin-1")
    )
    result = run_cli("validate", "--config", str(config))
    assert result.returncode == 2
    assert f"--config: {config} is not UTF-8 text (byte 0xe9 at offset" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_path_is_checked_before_any_traffic(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """prime --report into a missing directory exits 2 at once: the app never sees a request."""
    app = sim_app()
    result = run_cli("prime", "--url", items_url(app.port), *FAST_GATE,
                     "--report", str(tmp_path / "missing" / "report.html"))  # fmt: skip
    assert result.returncode == 2
    assert f"--report: {tmp_path / 'missing'} does not exist" in result.stderr
    assert app.stats.served == app.stats.rejected == 0


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "is not valid JSON; was it written by warmgate?"),
    ("[]", "does not hold a status object"),
    (None, "cannot be read"),
])  # fmt: skip
def test_check_answers_1_for_a_status_it_cannot_read(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    """As an exec probe, check says not ready (exit 1, with why) when status.json is damaged."""
    if content is None:
        (tmp_path / "status.json").mkdir()
    else:
        (tmp_path / "status.json").write_text(content)
    (tmp_path / "ready").write_text("warm\n")
    result = run_cli("check", "--status-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"not ready: {tmp_path / 'status.json'} ")
    assert reason in result.stdout
    assert result.stderr == ""


def test_check_says_not_ready_for_a_heartbeat_from_the_future(tmp_path: Path) -> None:
    """A run status with its marker and a heartbeat dated an hour ahead (a clock set back, a
    touched file): check exits 1 and says so."""
    status = {"state": "ready", "ready": True, "mode": "run", "reason": "warm: p95 3ms"}
    (tmp_path / "status.json").write_text(json.dumps(status))
    (tmp_path / "ready").write_text("warm: p95 3ms\n")
    (tmp_path / "heartbeat").touch()
    # A fresh heartbeat reads as ready (tests/test_surfaces.py shows it in-process: here the
    # few seconds check may take to start on a busy machine could make it stale).
    ahead = time.time() + 3600
    os.utime(tmp_path / "heartbeat", (ahead, ahead))
    result = run_cli("check", "--status-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.startswith(
        "not ready: warmgate run's heartbeat is dated 3600s in the future, so it cannot tell "
        "whether run is alive (was the clock set back?); it said: warm: p95 3ms"
    )


def test_check_names_a_deleted_ready_marker(tmp_path: Path) -> None:
    """status.json says ready but the marker is gone: check says that, not the warm reason."""
    status = {"state": "ready", "ready": True, "mode": "prime", "reason": "warm: p95 3ms"}
    (tmp_path / "status.json").write_text(json.dumps(status))
    result = run_cli("check", "--status-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.startswith(
        "not ready: status.json says ready but the ready marker does not exist"
    )


def test_check_reads_a_status_nested_past_the_parser_as_not_ready(tmp_path: Path) -> None:
    """A status.json of 100,000 nested lists: not ready with one sentence, no traceback."""
    (tmp_path / "status.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "ready").write_text("warm\n")
    result = run_cli("check", "--status-dir", str(tmp_path))
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (
        f"not ready: {tmp_path / 'status.json'} is nested deeper than 32 levels; was it written "
        "by warmgate?\n"
    )


_READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}[os.uname().machine]
"""read(2)'s number in /proc/PID/syscall."""


def test_ctrl_c_exits_130() -> None:
    """Ctrl-C outside a warm-up exits 128 + SIGINT, as shells do, without a traceback."""
    # A shell starts a background job with SIGINT ignored, and a child keeps that through
    # exec: Python then never turns SIGINT into KeyboardInterrupt. Ctrl-C comes from a terminal,
    # where SIGINT is not ignored, so the child starts with its default action.
    process = subprocess.Popen(
        [sys.executable, "-m", "warmgate", "inject", "-"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write("kind: Pod\n")
    process.stdin.flush()
    pipe = process.stdin.fileno()

    def unread() -> int:
        count = array.array("i", [0])
        fcntl.ioctl(pipe, termios.FIONREAD, count)
        return count[0]

    def blocked_reading_stdin() -> bool:
        # The read(2) of fd 0 the process sleeps in: a SIGINT sent between its reads (the pipe
        # drained, the next read not begun) would only be seen once that read ended, at EOF.
        fields = Path(f"/proc/{process.pid}/syscall").read_text().split()
        return fields[:2] == [_READ_SYSCALL, "0x0"]

    # Once the pipe is drained, inject is blocked reading the rest of standard input.
    poll(lambda: unread() == 0, timeout=30, interval=0.01, what="inject to read standard input")
    poll(blocked_reading_stdin, timeout=30, interval=0.01, what="inject to wait for more input")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr


def test_cli_modules_stay_a_thin_layer() -> None:
    """The modules of cli/ map options onto the modules that do the work: each under 400 lines."""
    modules = sorted((REPO / "warmgate" / "cli").glob("*.py"))
    assert (REPO / "warmgate" / "cli" / "main.py") in modules
    for module in modules:
        assert len(module.read_text().splitlines()) < 400, module.name


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    """run on a taken port exits 2 saying to pick another port."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("run", "--url", "http://127.0.0.1:9/", "--host", "127.0.0.1",
                         "--port", str(port))  # fmt: skip
    assert result.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    """--version prints the version and exits 0."""
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("warmgate ")


def test_schema_is_json_schema() -> None:
    """schema prints a JSON Schema that knows the gate's fields."""
    result = run_cli("schema")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["title"] == "warmgate configuration"
    assert "targets" in document["required"]
    assert "GateConfig" in document["$defs"]


@pytest.mark.slow
def test_human_log_format_shows_live_progress(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """--log-format human redraws one progress line and prints phase changes as sentences."""
    app = sim_app()
    result = run_cli("prime", "--url", items_url(app.port), *FAST_GATE, "--log-format", "human")
    assert result.returncode == 0, result.stderr
    # (text mode turns the carriage return that redraws the line into a newline)
    assert "\x1b[K" in result.stdout
    assert "concurrency 16/16" in result.stdout
    last_line = result.stdout.rsplit("\x1b[K", 1)[-1]
    assert " warm: " in last_line
    assert "{" not in result.stdout
