"""`run --optional-config-map`: a missing ConfigMap opens the gate instead of holding the pod."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import WarmgateProcess, http_get, poll, run_cli
from tests.reviews import deployment_pod, patched, request
from warmgate.kernel.redaction import Secrets
from warmgate.kube.admission import Review, admit, response
from warmgate.kube.inject import InjectOptions
from warmgate.kube.inject_parts import CONFIG_DIR, STATUS_DIR
from warmgate.runtime.handover import OpenHandover
from warmgate.runtime.open_run import NO_CONFIG, OpenRun, open_reason, open_status
from warmgate.serve.logs import Log
from warmgate.serve.status import HEARTBEAT_FILE, READY_FILE, STATUS_FILE

CONFIG = Path("/etc/warmgate/warmgate.yaml")


def test_a_missing_config_of_an_optional_config_map_opens_with_a_reason_naming_it() -> None:
    """The reason starts 'no config:' and names the ConfigMap, its key and the path."""
    reason = open_reason(CONFIG, exists=False, config_map="warmgate")
    assert reason is not None
    assert reason.startswith("no config: /etc/warmgate/warmgate.yaml does not exist")
    assert "ConfigMap 'warmgate' with the key 'warmgate.yaml'" in reason


@given(
    path=st.sampled_from([None, CONFIG]),
    exists=st.booleans(),
    config_map=st.sampled_from([None, "", "warmgate"]),
)
def test_only_an_absent_file_with_an_optional_config_map_opens(
    path: Path | None, exists: bool, config_map: str | None
) -> None:
    """A present file, no --config or no optional ConfigMap all load the config as usual."""
    opens = open_reason(path, exists, config_map) is not None
    assert opens == (path is not None and not exists and bool(config_map))


def test_the_open_run_is_ready_at_once_with_nothing_measured_until_a_signal(
    tmp_path: Path,
) -> None:
    """Opened, it is ready on the endpoint and in the directory (outcome no_config, mode run,
    no warm-up time); a signal withdraws readiness from both, and the run ends with 0."""
    plan = OpenHandover(
        reason="no config: x",
        config_map="warmgate",
        listen_fd=-1,
        status_dir=str(tmp_path),
        status=open_status("no config: x", 1000.0).to_json(),
    )
    log = Log.for_format("json", Secrets())
    run = OpenRun(plan, log, clock=lambda: 5.0, wall=lambda: 1005.0)
    run.open()
    ready, reason, status = run.surfaces.snapshot()
    assert (ready, reason) == (True, "no config: x")
    assert (status["state"], status["outcome"], status["mode"]) == ("ready", NO_CONFIG, "run")
    assert status["warmup_seconds"] == 0
    assert status["window"] == {}
    assert json.loads((tmp_path / STATUS_FILE).read_text())["ready"] is True
    assert (tmp_path / READY_FILE).exists()
    assert (tmp_path / HEARTBEAT_FILE).exists()
    run.request_stop("SIGTERM")
    assert run.run() == 0
    ready, reason, status = run.surfaces.snapshot()
    assert (ready, status["state"]) == (False, "stopped")
    assert reason.startswith("stopped by SIGTERM")
    assert not (tmp_path / READY_FILE).exists()
    assert json.loads((tmp_path / STATUS_FILE).read_text())["state"] == "stopped"


@pytest.mark.slow
def test_run_without_its_optional_config_map_serves_ready_until_sigterm(tmp_path: Path) -> None:
    """Ready on every surface with the no-config reason, stays up, and exits 0 on SIGTERM."""
    status_dir = tmp_path / "status"
    missing = tmp_path / "config" / "warmgate.yaml"
    args = ["run", "--config", str(missing), "--optional-config-map", "shop-warmgate",
            "--status-dir", str(status_dir), "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        said = gate.wait_for(lambda e: e.get("event") == "no_config")
        assert "ConfigMap 'shop-warmgate'" in said["message"]
        assert said["config_map"] == "shop-warmgate"
        base = f"http://127.0.0.1:{gate.port()}"
        code, body = http_get(f"{base}/readyz")
        assert code == 200
        assert body.startswith(f"no config: {missing} does not exist")
        assert http_get(f"{base}/livez")[0] == 200
        metrics = http_get(f"{base}/metrics")[1].splitlines()
        assert "warmgate_ready 1.0" in metrics
        status = json.loads((status_dir / STATUS_FILE).read_text())
        assert (status["state"], status["outcome"]) == ("ready", NO_CONFIG)
        assert (status_dir / READY_FILE).exists()
        # The heartbeat keeps being renewed: the loop lives on, and readers believe the status.
        first = (status_dir / HEARTBEAT_FILE).stat().st_mtime_ns
        poll(
            lambda: (status_dir / HEARTBEAT_FILE).stat().st_mtime_ns != first,
            what="a second heartbeat",
        )
        checked = run_cli("check", "--status-dir", str(status_dir))
        assert checked.returncode == 0, checked.stdout
        assert gate.process.poll() is None
        assert not any(e.get("event") in ("start", "phase", "rearm") for e in gate.events)
        assert gate.stop(signal.SIGTERM) == 0
    status = json.loads((status_dir / STATUS_FILE).read_text())
    assert (status["state"], status["ready"]) == ("stopped", False)
    assert not (status_dir / READY_FILE).exists()


@pytest.mark.slow
def test_a_missing_config_without_the_flag_still_exits_2(tmp_path: Path) -> None:
    """Without --optional-config-map an absent file is the mistake it always was."""
    missing = tmp_path / "warmgate.yaml"
    result = run_cli("run", "--config", str(missing), "--port", "0")
    assert result.returncode == 2
    assert f"--config: {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_invalid_config_exits_2_even_with_the_flag(tmp_path: Path) -> None:
    """Only absence opens: a config that exists but is wrong is still exit 2, naming the field."""
    config = tmp_path / "warmgate.yaml"
    config.write_text("targets:\n  - http: {url: 'http://127.0.0.1:1/'}\ngate: {p95: 200}\n")
    result = run_cli(
        "run", "--config", str(config), "--optional-config-map", "warmgate", "--port", "0"
    )
    assert result.returncode == 2
    assert "gate.p95" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_sidecar_the_webhook_writes_runs_open_without_its_config_map(tmp_path: Path) -> None:
    """The namespace default's args, with the mount left empty as the kubelet leaves it: ready."""
    review = request(deployment_pod(), dry_run=False)
    decision = admit(
        Review(review["request"]["uid"], review["request"]),
        InjectOptions(config_map="warmgate"),
        namespace_opted_in=True,
    )
    pod = patched(deployment_pod(), response(review["request"]["uid"], decision))
    [sidecar] = [c for c in pod["spec"]["initContainers"] if c["name"] == "warmgate"]
    mounts = {STATUS_DIR: str(tmp_path / "status"), CONFIG_DIR: str(tmp_path / "config")}
    args = [next((arg.replace(k, v) for k, v in mounts.items() if arg.startswith(k)), arg)
            for arg in sidecar["args"]]  # fmt: skip
    args[args.index("--port") + 1] = "0"
    (tmp_path / "config").mkdir()  # the optional ConfigMap's volume: an empty directory
    with WarmgateProcess(*args) as gate:
        said = gate.wait_for(lambda e: e.get("event") == "no_config")
        assert "ConfigMap 'warmgate' with the key 'warmgate.yaml'" in said["message"]
        code, body = http_get(f"http://127.0.0.1:{gate.port()}/readyz")
        assert (code, body.split(":")[0]) == (200, "no config")
        assert gate.stop() == 0
