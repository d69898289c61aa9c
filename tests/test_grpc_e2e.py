"""gRPC targets end to end: the real CLI against real grpcio aio servers started here."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.grpc_servers import Cold, GrpcApp, grpc_app
from tests.helpers import WarmgateProcess, free_port, http_get, items_url, poll, run_cli
from warmgate.demo.simapp import Behavior, SimApp

GET = "warm.v1.Catalog/GetItem"


def grpc_target(port: int, name: str = "catalog", **extra: str) -> str:
    """The YAML of one plaintext gRPC target calling GetItem with a templated id."""
    lines = [
        f"  - name: {name}",
        "    grpc:",
        f"      address: 127.0.0.1:{port}",
        f"      method: {GET}",
        "      request: '{\"id\": {{ randint(1, 100) }}}'",
        "      plaintext: true",
        "      timeout: 1s",
    ]
    lines += [f"      {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


GATE = "gate:\n  p95: 50ms\n  window: 2s\n  hold: 2s\n  min_requests: 20\n  timeout: 60s\n"


def write_config(tmp_path: Path, text: str) -> Path:
    """``text`` as a config file."""
    path = tmp_path / "warmup.yaml"
    path.write_text(text)
    return path


def events_of(stdout: str) -> list[dict[str, Any]]:
    """The JSON log events of a finished run."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def at(event: dict[str, Any]) -> float:
    """An event's time, in seconds since the epoch."""
    return datetime.fromisoformat(event["time"]).timestamp()


@pytest.mark.slow
def test_a_cold_grpc_service_is_gated_until_it_is_warm(tmp_path: Path) -> None:
    """Calls beyond its capacity answer UNAVAILABLE and its latency falls for 5 s: warmgate
    is not ready before then, names UNAVAILABLE with its share while warming, and opens within
    the hold (plus the window and a little) after."""
    cold = Cold(start_capacity=1, full_capacity=4, warm_after=5.0, cold_latency=0.3)
    with grpc_app(cold=cold) as app:
        config = write_config(
            tmp_path, f"targets:\n{grpc_target(app.port)}load:\n  concurrency: 4\n{GATE}"
        )
        result = run_cli(
            "prime", "--config", str(config), "--status-dir", str(tmp_path / "status"),
            "--log-format", "json", timeout=90,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    ready = next(e for e in events if e.get("message") == "warming -> ready (warm)")
    assert app.seen.warm_at is not None
    assert app.seen.unavailable > 0
    assert at(ready) >= app.seen.warm_at  # not ready before it is warm
    assert at(ready) - app.seen.warm_at <= 2.0 + 2.0 + 4.0  # hold + window + a few seconds
    reasons = " ".join(str(e.get("message")) for e in events)
    assert "UNAVAILABLE" in reasons
    status = json.loads((tmp_path / "status" / "status.json").read_text())
    assert status["outcome"] == "warm"
    assert status["targets"]["catalog"]["requests"] > 0


def test_http_and_grpc_targets_weighted_1_to_3(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """One HTTP and one gRPC target, weights 1:3: calls split by weight, each judged."""
    web = sim_app(Behavior(start_capacity=64, full_capacity=64))
    with grpc_app() as app:
        text = (
            f"targets:\n  - name: web\n    weight: 1\n    http:\n      url: {items_url(web.port)}\n"
            f"{grpc_target(app.port).replace('    grpc:', '    weight: 3' + chr(10) + '    grpc:')}"
            f"load:\n  concurrency: 8\n{GATE}"
        )
        config = write_config(tmp_path, text)
        result = run_cli(
            "prime", "--config", str(config), "--status-dir", str(tmp_path / "status"),
            "--log-format", "json", timeout=90,
        )  # fmt: skip
        calls = app.seen.calls["GetItem"]
    assert result.returncode == 0, result.stderr
    served = web.stats.served
    assert served > 100
    assert calls / served == pytest.approx(3.0, rel=0.2)
    status = json.loads((tmp_path / "status" / "status.json").read_text())
    targets = status["targets"]
    assert set(targets) == {"web", "catalog"}
    assert targets["catalog"]["requests"] > targets["web"]["requests"] > 0
    assert targets["catalog"]["success_ratio"] == 1.0


def test_validate_prints_the_resolved_method(tmp_path: Path) -> None:
    """With the server up, validate names the method's request and response types; with it
    down, it says they are asked for at start-up."""
    with grpc_app() as app:
        config = write_config(tmp_path, f"targets:\n{grpc_target(app.port)}")
        up = run_cli("validate", "--config", str(config))
    assert up.returncode == 0, up.stderr
    assert f"gRPC {GET} at 127.0.0.1:{app.port}" in up.stdout
    assert (
        f"  - catalog: {GET} takes warm.v1.GetItemRequest, returns warm.v1.Item "
        f"(types from server reflection (v1) of 127.0.0.1:{app.port})"
    ) in up.stdout
    down = run_cli("validate", "--config", str(config))
    assert down.returncode == 0, down.stderr
    assert "types from server reflection at start-up (the server does not answer now" in (
        down.stdout
    )
    assert "connection refused" in down.stdout


def test_an_unknown_method_stops_prime_with_exit_2(tmp_path: Path) -> None:
    """A method the server lacks is a config error at start-up, naming what it offers."""
    with grpc_app() as app:
        target = grpc_target(app.port).replace(GET, "warm.v1.Catalog/GetMissing")
        config = write_config(tmp_path, f"targets:\n{target}")
        result = run_cli("prime", "--config", str(config), timeout=60)
    assert result.returncode == 2
    assert "has no method warm.v1.Catalog/GetMissing; it offers" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_run_rearms_when_the_grpc_server_restarts(tmp_path: Path) -> None:
    """After ready, the gRPC server's port refusing a connection re-arms; the server, back,
    is primed again and the gate reopens."""
    port = free_port()
    first = GrpcApp(port=port).start()
    config = write_config(
        tmp_path,
        f"targets:\n{grpc_target(port)}load:\n  concurrency: 4\n{GATE}"
        "after_ready:\n  rearm_after: 1s\n  keep_warm_rate: 20\n",
    )
    restarted: GrpcApp | None = None
    args = ["run", "--config", str(config), "--status-dir", str(tmp_path / "s"), "--port", "0"]
    try:
        with WarmgateProcess(*args) as gate:
            base = f"http://127.0.0.1:{gate.port()}"
            poll(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=30, what="first ready")
            first.stop()
            poll(lambda: http_get(f"{base}/readyz")[0] == 503, timeout=15, what="gate closed")
            restarted = GrpcApp(port=port).start()
            rearm = gate.wait_for(lambda e: e.get("event") == "rearm")
            assert "refused a connection: the app restarted" in str(rearm["message"])
            poll(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=30, what="ready again")
            assert restarted.seen.calls["GetItem"] > 0  # primed again
            metrics = http_get(f"{base}/metrics")[1]
            assert "warmgate_rearms_total 1.0" in metrics
            assert 'target="catalog"' in metrics
            assert gate.stop() == 0
    finally:
        first.stop()
        if restarted is not None:
            restarted.stop()
