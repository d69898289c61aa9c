"""``warmgate run --events`` against a real HTTPS API server (tests/kubeapi.py): the Events a
cold app, a fail-closed target and an app restart bring, and a run that cannot post them
(403, a hanging server, none at all) that is ready exactly as without them."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import WarmgateProcess, http_get, items_url, poll
from tests.kubeapi import TOKEN, KubeApi, kube_api, kubeconfig
from warmgate.demo.simapp import Behavior, SimApp

COLD = Behavior(start_capacity=1, full_capacity=16, warm_requests=300)
NEVER_WARM = Behavior(start_capacity=1, full_capacity=1, base_latency=0.002)
FAST_GATE = ["--concurrency", "8", "--window", "2s", "--hold", "1s", "--min-requests", "20"]
POD = {"POD_NAME": "shop-7d9f", "POD_NAMESPACE": "prod", "POD_UID": "0b6c1c52-6f0e-4f4e"}


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with kube_api() as server:
        yield server


def pod_env(api: KubeApi | None, tmp_path: Path) -> dict[str, str]:
    env = dict(POD)
    env["KUBECONFIG"] = str(kubeconfig(api, tmp_path)) if api is not None else ""
    return env


def reasons(api: KubeApi) -> list[str]:
    return [event["reason"] for event in api.created()]


def warm_count(api: KubeApi) -> int:
    warm = [e for e in api.created() if e["reason"] == "Warm"]
    return warm[0].get("series", {}).get("count", 1) if len(warm) == 1 else len(warm) * 100


def is_phase(state: str) -> Callable[[dict[str, object]], bool]:
    return lambda e: e.get("event") == "phase" and e.get("state") == state


def assert_no_token(*surfaces: str) -> None:
    for text in surfaces:
        assert TOKEN not in text
        assert "BEGIN CERTIFICATE" not in text


@pytest.mark.slow
def test_a_cold_app_warms_with_events_and_a_restart_rearms(
    sim_app: Callable[..., SimApp], api: KubeApi, tmp_path: Path
) -> None:
    app = sim_app(COLD)
    port = app.port
    status_dir = tmp_path / "status"
    args = ["run", "--url", items_url(port), *FAST_GATE, "--events", "--port", "0",
            "--status-dir", str(status_dir)]  # fmt: skip
    with WarmgateProcess(*args, env=pod_env(api, tmp_path)) as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("ready") is True, 60)
        poll(lambda: reasons(api) == ["Warming", "Warm"], what="warming and warm Events")
        warm = api.created()[1]
        readyz = http_get(f"{base}/readyz")[1].strip()
        assert warm["note"] == json.loads(http_get(f"{base}/status")[1])["reason"]
        assert warm["note"] in readyz
        assert warm["type"] == "Normal"
        assert warm["regarding"] == {
            "apiVersion": "v1", "kind": "Pod", "name": "shop-7d9f", "namespace": "prod",
            "uid": "0b6c1c52-6f0e-4f4e",
        }  # fmt: skip
        app.stop()  # the app restarts: cold again
        gate.wait_for(lambda e: e.get("event") == "rearm", 30)
        sim_app(COLD, port=port)
        poll(lambda: "Rearmed" in reasons(api), timeout=30, what="a Rearmed Event")
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("ready") is True, 60)
        poll(lambda: warm_count(api) == 2, timeout=30, what="warm again, as a series")
        rearmed = next(e for e in api.created() if e["reason"] == "Rearmed")
        assert "refused a connection" in rearmed["note"]
        files = [p.read_text(errors="replace") for p in status_dir.iterdir() if p.is_file()]
        assert_no_token(http_get(f"{base}/status")[1], http_get(f"{base}/metrics")[1], *files)
        assert gate.stop() == 0
    assert_no_token(json.dumps(gate.events), gate.stderr_text())
    assert api.problems == []
    assert all(r.status in (200, 201) for r in api.requests)
    # two warm-ups: Warming, Warm; Rearmed, Warming, Warm (the second Warming and Warm are a
    # series of the first: client-go's aggregation), never more than 10 per warm-up
    assert len(api.requests) <= 10
    assert sorted(reasons(api)) == ["Rearmed", "Warm", "Warming"]
    assert [e["series"]["count"] for e in api.created() if e["reason"] == "Warm"] == [2]
    print("\n" + api.table())  # the docs' `kubectl events` example


def test_a_fail_closed_target_is_a_warning(
    sim_app: Callable[..., SimApp], api: KubeApi, tmp_path: Path
) -> None:
    app = sim_app(NEVER_WARM)
    args = ["run", "--url", items_url(app.port), *FAST_GATE, "--timeout", "3s",
            "--on-timeout", "fail", "--events", "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args, env=pod_env(api, tmp_path)) as gate:
        gate.wait_for(is_phase("failed"), 30)
        poll(lambda: "FailedClosed" in reasons(api), what="a FailedClosed Event")
        assert gate.stop() == 0
    failed = next(e for e in api.created() if e["reason"] == "FailedClosed")
    assert failed["type"] == "Warning"
    assert failed["action"] == "WithholdReadiness"
    assert api.problems == []


@pytest.mark.parametrize("mode", ["forbidden", "hang", "absent"])
def test_a_run_that_cannot_post_is_ready_as_without_events(
    sim_app: Callable[..., SimApp], tmp_path: Path, mode: str
) -> None:
    app = sim_app(COLD)
    args = ["run", "--url", items_url(app.port), *FAST_GATE, "--events", "--port", "0"]
    with kube_api("hang" if mode == "hang" else "forbidden") as api:
        env = pod_env(None if mode == "absent" else api, tmp_path)
        with WarmgateProcess(*args, env=env) as gate:
            base = f"http://127.0.0.1:{gate.port()}"
            gate.wait_for(lambda e: e.get("event") == "phase" and e.get("ready") is True, 60)
            poll(lambda: http_get(f"{base}/readyz")[0] == 200, what="the supervisor to follow")
            failed = gate.wait_for(lambda e: e.get("event") == "events_failed", 20)
            status = json.loads(http_get(f"{base}/status")[1])
            assert status["outcome"] == "warm"
            assert gate.stop() == 0
        said = [e for e in gate.events if str(e.get("event", "")).startswith("events_")]
        assert said == [failed]  # once, in one line
        message = str(failed["message"])
        expected = {
            "forbidden": "verbs: [create, patch]",
            "hang": "did not answer in time",
            "absent": "no KUBECONFIG and not in a cluster",
        }
        assert expected[mode] in message
        assert TOKEN not in json.dumps(gate.events)
        if mode == "forbidden":
            assert len(api.requests) == 1  # the next try waits a minute


@pytest.mark.slow
def test_warmgates_own_restart_while_the_app_is_warm_is_resumed(
    sim_app: Callable[..., SimApp], api: KubeApi, tmp_path: Path
) -> None:
    app = sim_app(Behavior(start_capacity=64, full_capacity=64))
    status_dir = tmp_path / "status"
    args = ["run", "--url", items_url(app.port), *FAST_GATE, "--events", "--port", "0",
            "--status-dir", str(status_dir)]  # fmt: skip
    with WarmgateProcess(*args, env=pod_env(api, tmp_path)) as gate:
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("ready") is True, 30)
        poll(lambda: "Warm" in reasons(api), what="a Warm Event")
        assert gate.stop(signal.SIGKILL) == -signal.SIGKILL
    with WarmgateProcess(*args, env=pod_env(api, tmp_path)) as gate:
        poll(lambda: "Resumed" in reasons(api), what="a Resumed Event")
        gate.wait_for(lambda e: e.get("event") == "phase" and e.get("ready") is True, 30)
        assert gate.stop() == 0
    resumed = next(e for e in api.created() if e["reason"] == "Resumed")
    assert resumed["note"] == "confirming the app is still warm after warmgate restarted"
    assert api.problems == []
