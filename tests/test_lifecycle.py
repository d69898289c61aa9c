"""The run lifecycle when things go wrong: lost targets, late apps, failed writes, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import WarmgateProcess, free_port, http_get, items_url, poll, run_cli
from warmgate.demo.simapp import Behavior, SimApp

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
        code, _ = poll(
            lambda: (r := http_get(f"{base}/readyz"))[1].startswith("waiting for the target") and r
        )
        assert code == 503
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
        poll(lambda: http_get(f"{base}/readyz")[0] == 200, what="the supervisor to follow")
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


def test_sigterm_does_not_wait_for_hung_requests(tmp_path: Path) -> None:
    """Requests stuck on a target that never answers (5 min timeout) do not hold up shutdown."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    try:
        config = tmp_path / "c.yaml"
        port = listener.getsockname()[1]
        config.write_text(
            f"targets:\n  - http: {{url: 'http://127.0.0.1:{port}/', timeout: 5m}}\n"
            "load: {concurrency: 16}\n"
        )
        with WarmgateProcess("run", "--config", str(config), "--port", "0") as gate:
            gate.wait_for(lambda e: e.get("event") == "phase" and e.get("state") == "warming")
            # A deadline far below the requests' 5 minutes: the grace periods end shutdown, not
            # the requests. How long shutdown takes is measured in benchmarks/lifecycle.py.
            code = gate.stop(signal.SIGTERM, timeout=30)
    finally:
        listener.close()
    assert code == 0


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
        reason = poll(
            lambda: (body := http_get(f"{base}/readyz")[1]).startswith("not warm after") and body,
            what="the supervisor to take the outcome",
        )
        errors = metric(base, 'warmgate_requests_total{outcome="error",target="target-1"}')
        assert errors >= 3  # the worker survived its first crash, and paused between tries
        assert " errors (" in reason
        assert gate.stop() == 0
    assert sum(1 for e in gate.events if e.get("event") == "driver_error") == 1


WARM_GATE = [*FAST_GATE, "--window", "2s", "--hold", "0.5s"]


def run_args(port: int, status_dir: Path, *extra: str) -> list[str]:
    """`run` against a simulated app on ``port`` with a quick gate."""
    return ["run", "--url", items_url(port), *WARM_GATE, "--status-dir", str(status_dir),
            "--port", "0", *extra]  # fmt: skip


def readyz(base: str) -> int:
    """The status code of /readyz."""
    return http_get(f"{base}/readyz")[0]


def transitions(gate: WarmgateProcess) -> list[str]:
    """The lifecycle transitions the processes logged, as ``"a -> b (event)"``."""
    return [str(e["message"]) for e in gate.events if e.get("event") == "transition"]


def kill_9_once_ready(port: int, status_dir: Path) -> None:
    """Start `run`, wait until it is ready, then kill it with SIGKILL (its status dir stays)."""
    with WarmgateProcess(*run_args(port, status_dir)) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        poll(lambda: readyz(base) == 200, timeout=30, what="first ready")
        gate.process.kill()
        gate.process.wait(5)


def test_overload_with_the_port_open_never_withdraws_readiness(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """Eight seconds of slow answers and 503s with the port open: still ready, no re-arm."""
    app = sim_app()
    with WarmgateProcess(*run_args(app.port, tmp_path, "--keep-warm-rate", "20")) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        poll(lambda: readyz(base) == 200, timeout=30, what="first ready")
        app.behavior = Behavior(start_capacity=0, full_capacity=0, overload_stall=2.0)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert readyz(base) == 200
            time.sleep(0.2)  # observing that nothing happens, not waiting for something
        assert app.stats.rejected > 0  # the keep-warm trickle really met the overload
        assert metric(base, "warmgate_rearms_total") == 0
        assert not any(e.get("event") == "rearm" for e in gate.events)
        assert gate.stop() == 0


def test_kill_9_of_run_with_the_app_warm_resumes_without_priming_again(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """warmgate's own crash: started again on the same status dir it confirms, and is ready."""
    app = sim_app()
    kill_9_once_ready(app.port, tmp_path)
    with WarmgateProcess(*run_args(app.port, tmp_path)) as second:
        base = f"http://127.0.0.1:{second.port()}"
        poll(lambda: readyz(base) == 200, timeout=15, what="ready again")
        moves = transitions(second)
        assert moves[:3] == [
            "new -> resuming (resume)",
            "resuming -> confirming (up)",
            "confirming -> ready (warm)",
        ]
        assert not any(e.get("event") == "ramp" for e in second.events)
        assert second.stop() == 0


def test_kill_9_of_run_then_a_cold_app_is_not_ready_until_warm(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """The app restarted while warmgate was down: the confirmation fails, a full warm-up follows."""
    app = sim_app()
    port = app.port
    kill_9_once_ready(port, tmp_path)
    app.stop()
    cold = sim_app(NEVER_WARM, port=port)
    with WarmgateProcess(*run_args(port, tmp_path)) as second:
        base = f"http://127.0.0.1:{second.port()}"
        second.wait_for(lambda e: e.get("message") == "confirming -> warming (not_confirmed)")
        assert readyz(base) == 503
        assert not (tmp_path / "ready").exists()
        cold.behavior = Behavior(start_capacity=64, full_capacity=64)  # it warms at last
        poll(lambda: readyz(base) == 200, timeout=30, what="ready after a full warm-up")
        assert any(e.get("event") == "ramp" for e in second.events)
        assert second.stop() == 0


def test_a_dead_run_never_reads_as_ready(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """After kill -9 the marker stays, but check (the exec probe) says not ready once the
    heartbeat stops."""
    app = sim_app()
    with WarmgateProcess(*run_args(app.port, tmp_path)) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        poll(lambda: readyz(base) == 200, timeout=30, what="first ready")
        assert run_cli("check", "--status-dir", str(tmp_path)).returncode == 0
        gate.process.kill()
        gate.process.wait(5)
    assert (tmp_path / "ready").exists()
    checked = poll(
        lambda: (r := run_cli("check", "--status-dir", str(tmp_path))).returncode == 1 and r,
        timeout=20,
        what="check to notice the heartbeat stopped",
    )
    assert "warmgate run is gone" in checked.stdout


def test_a_status_dir_belongs_to_one_warmgate(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A second warmgate on the same status directory is refused with a sentence."""
    app = sim_app()
    with WarmgateProcess(*run_args(app.port, tmp_path)) as gate:
        gate.port()
        second = run_cli("prime", "--url", items_url(app.port), "--status-dir", str(tmp_path))
        assert second.returncode == 2
        assert "is in use by another warmgate (pid" in second.stderr
        assert "Traceback" not in second.stderr
        assert gate.stop() == 0


def test_run_stopped_by_sigterm_leaves_state_and_marker_in_agreement(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A stopped run withdraws: state stopped, ready false, no marker, and no primer left."""
    app = sim_app()
    with WarmgateProcess(*run_args(app.port, tmp_path, "--keep-warm-rate", "5")) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        poll(lambda: readyz(base) == 200, timeout=30, what="first ready")
        assert gate.stop() == 0
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["state"], status["ready"]) == ("stopped", False)
    assert not (tmp_path / "ready").exists()
    served = app.stats.served
    assert poll(lambda: app.stats.served == served, timeout=5)  # the keep-warm primer is gone


def test_sigterm_while_prime_starts_still_leaves_a_final_status(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A SIGTERM that arrives while prime is still importing and validating is honoured."""
    app = sim_app(NEVER_WARM)
    args = ["prime", "--url", items_url(app.port), *FAST_GATE, "--status-dir", str(tmp_path)]
    with WarmgateProcess(*args) as gate:
        poll((tmp_path / ".lock").exists, timeout=15, what="prime to take the dir")
        code = gate.stop(signal.SIGTERM)
    assert code == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["state"], status["ready"]) == ("stopped", False)
    assert status["reason"] == "stopped by SIGTERM before the target was warm"


def test_prime_that_cannot_write_its_final_status_fails(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A full status volume: prime exits 1 with a sentence instead of 0 with nothing written."""
    volume = tmp_path / "full"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(volume)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (volume / "filler").write_bytes(b"\0" * 12_000)  # three of its four pages
        app = sim_app()
        args = ["prime", "--url", items_url(app.port), *WARM_GATE, "--status-dir", str(volume)]
        result = run_cli(*args)
    finally:
        subprocess.run(["umount", str(volume)], check=False)
    assert result.returncode == 1
    assert "the final status could not be written" in result.stderr
    assert "Traceback" not in result.stderr


def children(pid: int) -> list[int]:
    """The direct children of ``pid``, from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_a_primer_killed_mid_warm_up_is_replaced_and_nothing_is_claimed(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """The OOM killer takes the primer: the supervisor says so, starts another, stays 503."""
    app = sim_app(NEVER_WARM)
    with WarmgateProcess(*run_args(app.port, tmp_path)) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(is_event("ramp"))
        (primer,) = poll(lambda: children(gate.process.pid), what="the primer process")
        os.kill(primer, signal.SIGKILL)
        crashed = gate.wait_for(is_event("primer_crashed"))
        assert "killed by signal 9 (perhaps the out-of-memory killer" in str(crashed["message"])
        assert readyz(base) == 503
        poll(lambda: sum(1 for e in gate.events if e.get("mode") == "primer") == 2,
             what="a second primer")  # fmt: skip
        assert readyz(base) == 503
        assert gate.stop() == 0


def test_prime_ends_by_its_deadline_when_the_app_drops_every_request(tmp_path: Path) -> None:
    """An app that accepts TCP but hangs up on every request flaps between waiting and warming;
    one deadline per arming still ends prime (here: fail open) instead of never exiting."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def hang_up() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        result = run_cli(
            "prime", "--url", f"http://127.0.0.1:{port}/", "--wait-timeout", "4s",
            "--timeout", "8s", "--status-dir", str(tmp_path), "--log-format", "json",
            timeout=60,
        )  # fmt: skip
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert result.returncode == 0, result.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["outcome"] == "opened_on_timeout"
    assert "lost" in result.stdout  # it did flap back to waiting at least once


def test_a_hung_primer_is_replaced_and_said_to_have_hung_not_to_be_out_of_memory(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A primer that stops talking (here: stopped with SIGSTOP) is stopped by the supervisor
    after its silence limit, and the reason says it hung, not that memory ran out."""
    app = sim_app(NEVER_WARM)
    with WarmgateProcess(*run_args(app.port, tmp_path)) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(is_event("ramp"))
        (primer,) = poll(lambda: children(gate.process.pid), what="the primer process")
        os.kill(primer, signal.SIGSTOP)  # a loop that never turns again
        hung = gate.wait_for(is_event("primer_hung"), timeout=90)
        assert "the primer said nothing for" in str(hung["message"])
        crashed = gate.wait_for(is_event("primer_crashed"), timeout=30)
        message = str(crashed["message"])
        assert message.startswith("the primer hung (it said nothing for ")
        assert "and was stopped by the supervisor before an outcome" in message
        assert "out-of-memory" not in message
        assert readyz(base) == 503
        assert gate.stop() == 0
