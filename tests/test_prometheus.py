"""warmgate's /metrics against Prometheus's own tools: promtool's linter and a real server.

promtool and prometheus come from Debian's ``prometheus`` package. Without them these tests skip,
unless ``REQUIRE_TOOLS=1`` (set by CI) makes them mandatory.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.helpers import REPO, WarmgateProcess, free_port, http_get, items_url, poll, run_cli
from warmgate.demo.simapp import Behavior, SimApp
from warmgate.serve.metrics import FileStatusCollector
from warmgate.serve.status import Status, StatusDir

COLD = Behavior(start_capacity=1, full_capacity=16, warm_requests=1500, base_latency=0.002)
"""Copes with one request at a time at first, with 16 only after 1500 answers."""
FAST_GATE = ["--concurrency", "8", "--window", "3s", "--hold", "2s", "--min-requests", "20"]
GUIDE = REPO / "docs" / "kubernetes.md"


def code_blocks(language: str) -> list[str]:
    """The fenced code blocks of one language in the Kubernetes guide."""
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.MULTILINE | re.DOTALL)


def tool(name: str) -> str:
    """The path of a Prometheus tool; skip (or fail under REQUIRE_TOOLS=1) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail(f"{message}, and REQUIRE_TOOLS=1 makes it mandatory")
        pytest.skip(message)
    return path


def promtool_check(text: str) -> None:
    """Fail with promtool's own words unless ``promtool check metrics`` finds nothing."""
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    problems = (checked.stdout + checked.stderr).strip()
    assert checked.returncode == 0, problems
    assert problems == ""


@pytest.mark.slow
def test_run_metrics_pass_promtool_while_warming_and_when_ready(
    sim_app: Callable[..., SimApp],
) -> None:
    """/metrics of `warmgate run` is lint-clean before the gate opens and after."""
    tool("promtool")
    app = sim_app()
    with WarmgateProcess("run", "--url", items_url(app.port), *FAST_GATE, "--port", "0") as gate:
        base = f"http://127.0.0.1:{gate.port()}"
        code, early = http_get(f"{base}/metrics")
        assert code == 200
        assert "warmgate_ready 0.0" in early
        promtool_check(early)
        poll(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=60, what="the gate to open")
        code, ready = http_get(f"{base}/metrics")
        assert "warmgate_ready 1.0" in ready
        promtool_check(ready)


def test_serve_metrics_from_a_status_file_pass_promtool(tmp_path: Path) -> None:
    """The metrics `serve` reads from status.json are lint-clean, before a status exists and after."""
    tool("promtool")
    registry = CollectorRegistry()
    registry.register(FileStatusCollector(tmp_path))
    promtool_check(generate_latest(registry).decode())
    now = time.time()
    StatusDir(tmp_path).write(Status(
        state="ready", ready=True, reason="warm", started_at=now - 8, updated_at=now,
        phase_started_at=now, ready_at=now, outcome="warm", level=8, target_level=8,
        window={"requests": 120, "success_ratio": 1.0, "p50_ms": 1.5, "p95_ms": 4.0, "p99_ms": 9.0},
    ))  # fmt: skip
    text = generate_latest(registry).decode()
    assert 'warmgate_window_latency_seconds{percentile="95"} 0.004' in text
    assert "warmgate_concurrency_target 8.0" in text
    promtool_check(text)


@pytest.mark.slow
def test_serve_metrics_pass_promtool(sim_app: Callable[..., SimApp], tmp_path: Path) -> None:
    """/metrics of `warmgate serve`, on a status directory written by `prime`, is lint-clean."""
    tool("promtool")
    app = sim_app()
    status_dir = tmp_path / "status"
    primed = run_cli("prime", "--url", items_url(app.port), *FAST_GATE, "--timeout", "60s",
                     "--status-dir", str(status_dir))  # fmt: skip
    assert primed.returncode == 0, primed.stderr
    with WarmgateProcess("serve", "--status-dir", str(status_dir), "--port", "0") as served:
        code, text = http_get(f"http://127.0.0.1:{served.port()}/metrics")
        assert code == 200
        assert "warmgate_ready 1.0" in text
        # The guide's queries need these from the init-container variant too.
        assert "warmgate_opened_on_timeout 0.0" in text
        assert re.search(r"^warmgate_warmup_seconds [1-9]", text, re.MULTILINE)
        promtool_check(text)


class Prometheus:
    """A real Prometheus server on 127.0.0.1, with its own config and storage in a temp dir."""

    def __init__(self, directory: Path, target: str, labels: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        # Pod discovery would add namespace and pod, and the PodMonitor's relabelling app.
        target_labels = "".join(f"          {k}: {v}\n" for k, v in (labels or {}).items())
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: warmgate\n    scrape_interval: 1s\n"
            f"    scrape_timeout: 900ms\n    static_configs:\n      - targets: ['{target}']\n"
            + (f"        labels:\n{target_labels}" if labels else "")
        )
        self.log = directory / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [tool("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def ready(self) -> bool:
        """Whether the server answers /-/ready (fails at once if it exited)."""
        assert self.process.poll() is None, self.log.read_text()
        try:
            return http_get(f"{self.base}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query."""
        code, body = http_get(
            f"{self.base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        )
        assert code == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        """The result of a range query at a 1 s step."""
        params = {"query": promql, "start": start, "end": end, "step": "1"}
        code, body = http_get(f"{self.base}/api/v1/query_range?{urllib.parse.urlencode(params)}")
        assert code == 200, body
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, promql: str) -> str | None:
        """The single sample value of an instant query, or None while there is none."""
        result = self.query(promql)
        return str(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start Prometheus servers scraping a target; all stop after the test."""
    tool("prometheus")
    started: list[Prometheus] = []

    def start(target: str, labels: dict[str, str] | None = None) -> Prometheus:
        server = Prometheus(tmp_path, target, labels)
        started.append(server)
        poll(server.ready, timeout=30, interval=0.1, what="Prometheus to be ready")
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.slow
def test_prometheus_sees_warmgate_ready_go_from_0_to_1(
    sim_app: Callable[..., SimApp], prometheus: Callable[..., Prometheus]
) -> None:
    """A real Prometheus scrapes warmgate_ready 0 while the app is down or cold, then 1."""
    app_port = free_port()
    args = ["run", "--url", items_url(app_port), *FAST_GATE, "--p95", "200ms",
            "--timeout", "2m", "--wait-timeout", "2m", "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        server = prometheus(f"127.0.0.1:{gate.port()}")
        # The app is not even up yet, so the gate is closed until Prometheus has seen it closed.
        poll(lambda: server.value('up{job="warmgate"}') == "1", timeout=30, what="a scrape")
        poll(lambda: server.value("warmgate_ready") == "0", timeout=30, what="warmgate_ready 0")
        assert server.value('warmgate_state{warmgate_state="waiting"}') == "1"
        app = sim_app(COLD, port=app_port)
        poll(lambda: server.value("warmgate_ready") == "1", timeout=90, interval=0.5,
             what="warmgate_ready 1 in Prometheus")  # fmt: skip
        [series] = server.query("warmgate_ready[5m]")
        values = [sample[1] for sample in series["values"]]
        assert values[0] == "0"
        assert values[-1] == "1"
        assert values == sorted(values), "readiness went back to 0 after it had opened"
        warmup = server.value("warmgate_warmup_seconds")
        assert warmup is not None
        assert float(warmup) > 0
        served = server.value('sum(warmgate_requests_total{outcome="ok"})')
        assert served is not None
        assert float(served) > 0
        assert app.stats.marked > 0
        queries = code_blocks("promql")
        assert len(queries) >= 5
        for query in queries:
            server.query(query.strip())


DASHBOARD = REPO / "k8s" / "monitoring" / "grafana-dashboard.json"
POD_LABELS = {"namespace": "shop", "pod": "heritage-app-7d9f-x2x4q", "app": "heritage-app"}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [
        *dashboard["panels"],
        *(p for row in dashboard["panels"] for p in row.get("panels", [])),
    ]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def test_the_dashboard_is_importable_and_filtered_by_its_variables() -> None:
    """Datasource, namespace and app variables; every panel uses $datasource and both filters."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "app"} <= set(variables)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    queries = dashboard_queries()
    assert len(queries) >= 12
    for title, expr in queries:
        assert 'namespace=~"$namespace"' in expr, title
        assert 'app=~"$app"' in expr, title


def grafana_to_promql(expr: str) -> str:
    """A panel's query as Grafana sends it, for the labels the test target carries."""
    return (
        expr.replace("$namespace", POD_LABELS["namespace"])
        .replace("$app", POD_LABELS["app"])
        .replace("$__rate_interval", "4s")
    )


@pytest.mark.slow
def test_every_dashboard_query_returns_data_after_a_real_warm_up(
    sim_app: Callable[..., SimApp], prometheus: Callable[..., Prometheus]
) -> None:
    """Each panel's PromQL, run against a real Prometheus that scraped a warm-up, has data."""
    app_port = free_port()
    args = ["run", "--url", items_url(app_port), *FAST_GATE, "--timeout", "2m",
            "--wait-timeout", "2m", "--port", "0"]  # fmt: skip
    with WarmgateProcess(*args) as gate:
        start = time.time()
        server = prometheus(f"127.0.0.1:{gate.port()}", POD_LABELS)
        # The app comes up only once Prometheus scrapes, so the warm-up spans many scrapes.
        poll(lambda: server.value('up{job="warmgate"}') == "1", timeout=30, what="a scrape")
        sim_app(COLD, port=app_port)
        poll(lambda: server.value("warmgate_ready") == "1", timeout=90, interval=0.5,
             what="warmgate_ready 1 in Prometheus")  # fmt: skip
        scrapes = float(server.value("count_over_time(warmgate_ready[10m])") or 0)
        poll(lambda: float(server.value("count_over_time(warmgate_ready[10m])") or 0) > scrapes + 3,
             timeout=30, what="three scrapes of the warm pod")  # fmt: skip
        # Past the last scrape: each step reads the newest sample before it.
        end = time.time() + 2
        selector = f'warmgate_build_info{{namespace="{POD_LABELS["namespace"]}"}}'
        [build] = server.query(selector)
        assert build["metric"]["app"] == POD_LABELS["app"]  # what the variables list
        for title, expr in dashboard_queries():
            result = server.query_range(grafana_to_promql(expr), start, end)
            values = [float(v) for series in result for _, v in series["values"]]
            assert [v for v in values if not math.isnan(v)], f"panel '{title}': no data: {expr}"
