"""The run lifecycle when things go wrong: lost targets, late apps, failed writes, signals."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import WarmgateProcess, free_port, http_get, items_url, poll
from warmgate.simapp import Behavior, SimApp

NEVER_WARM = Behavior(start_capacity=1, full_capacity=1, base_latency=0.002)
FAST_GATE = ["--concurrency", "16", "--window", "3s", "--hold", "1s", "--min-requests", "20"]

pytestmark = pytest.mark.slow


def metric(base: str, name: str) -> float:
    """One sample value from /metrics (0 if absent)."""
    for line in http_get(f"{base}/metrics")[1].splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def is_event(name: str) -> Callable[[dict[str, object]], bool]:
    """A predicate for log events called ``name``."""
    return lambda event: event.get("event") == name


def test_target_lost_while_warming_goes_back_to_waiting(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """An app that dies mid-warm-up is waited for again, not hammered until the deadline."""
    app = sim_app(NEVER_WARM)
    port = app.port
    args = ["run", "--url", items_url(port), *FAST_GATE, "--rearm-after", "1s",
            "--status-dir", str(tmp_path), "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(is_event("ramp"))
        app.stop()
        gate.wait_for(is_event("lost"), timeout=15)
        refused = 'warmgate_requests_total{outcome="connection_error",target="target-1"}'
        # Without the pause after refused connections this was thousands per second.
        assert metric(base, refused) < 300
        code, reason = http_get(f"{base}/readyz")
        assert code == 503
        assert reason.startswith("waiting for the target to answer")
        sim_app(NEVER_WARM, port=port)
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("state") == "warming")
        assert gate.stop() == 0


def test_run_primes_an_app_that_comes_up_after_the_wait_deadline(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """Fail-open at the wait deadline, then prime the app once it answers, without flapping."""
    port = free_port()
    args = ["run", "--url", items_url(port), *FAST_GATE, "--wait-timeout", "1s",
            "--rearm-after", "1s", "--status-dir", str(tmp_path), "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        opened = gate.wait_for(lambda e: e.get("event") == "phase" and e.get("ready") is True)
        assert str(opened["message"]).startswith("opened anyway: the target did not answer")
        # Watch it for a while with nothing listening: it must stay open, with no re-arms.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert http_get(f"{base}/readyz")[0] == 200
            assert metric(base, "warmgate_rearms_total") == 0
            time.sleep(0.2)  # observing that nothing happens, not waiting for something
        sim_app(port=port)
        gate.wait_for(is_event("rearm"))
        poll(lambda: http_get(f"{base}/readyz")[1].startswith("warm:"), timeout=30)
        status = json.loads(http_get(f"{base}/status")[1])
        assert status["rearms"] == 1
        assert status["outcome"] == "warm"
        assert status["warmup_seconds"] < 30  # measured from the re-arm, not from the start
        assert gate.stop() == 0


def test_run_retries_after_failing_closed(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """on_timeout: fail in run mode primes again after retry_after instead of giving up."""
    app = sim_app(NEVER_WARM)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"targets:\n  - http: {{url: '{items_url(app.port)}'}}\n"
        "load: {concurrency: 16}\n"
        "gate: {timeout: 2s, on_timeout: fail, window: 2s, hold: 1s}\n"
        "after_ready: {retry_after: 1s}\n"
    )
    with WarmgateProcess("run", "--config", str(config), "--port", "0") as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("state") == "failed")
        assert http_get(f"{base}/readyz")[0] == 503
        rearm = gate.wait_for(is_event("rearm"))
        assert "after failing closed" in str(rearm["message"])
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("state") == "warming")
        assert gate.stop() == 0


def test_status_dir_that_disappears_does_not_stop_the_gate(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A status directory that vanishes mid-run is logged once; /readyz keeps answering."""
    app = sim_app(NEVER_WARM)
    status_dir = tmp_path / "wg"
    args = ["run", "--url", items_url(app.port), *FAST_GATE, "--status-dir", str(status_dir),
            "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(is_event("ramp"))
        status_dir.rename(tmp_path / "gone")  # atomic, unlike removing a dir being written
        failed = gate.wait_for(is_event("status_write_failed"))
        assert "cannot write the status directory" in str(failed["message"])
        assert http_get(f"{base}/readyz")[0] == 503
        assert gate.process.poll() is None
        assert gate.stop() == 0
    assert sum(1 for e in gate.events if e.get("event") == "status_write_failed") == 1


def test_sigterm_with_hung_requests_stops_within_two_seconds(tmp_path: Path) -> None:
    """Requests stuck on a target that never answers do not hold up shutdown."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    try:
        config = tmp_path / "c.yaml"
        port = listener.getsockname()[1]
        config.write_text(
            f"targets:\n  - http: {{url: 'http://127.0.0.1:{port}/', timeout: 30s}}\n"
            "load: {concurrency: 16}\n"
        )
        with WarmgateProcess("run", "--config", str(config), "--port", "0") as gate:
            gate.wait_for(lambda e: e.get("event") == "phase" and e.get("state") == "warming")
            started = time.monotonic()
            code = gate.stop(signal.SIGTERM, timeout=10)
            elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert code == 0
    assert elapsed < 2.0


def test_a_driver_that_raises_is_counted_not_fatal(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A request the client libraries reject (a line break in the rendered path) is an error,
    logged once."""
    app = sim_app()
    url = f"http://127.0.0.1:{app.port}/items/{{{{ '1' ~ '\\x0a' }}}}"
    args = ["run", "--url", url, *FAST_GATE, "--timeout", "2s", "--on-timeout", "fail",
            "--status-dir", str(tmp_path), "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(is_event("driver_error"))
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("state") == "failed")
        errors = metric(base, 'warmgate_requests_total{outcome="error",target="target-1"}')
        assert errors >= 3  # the worker survived its first crash, and paused between tries
        reason = http_get(f"{base}/readyz")[1]
        assert " errors (" in reason
        assert gate.stop() == 0
    assert sum(1 for e in gate.events if e.get("event") == "driver_error") == 1
