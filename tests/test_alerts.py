"""The shipped alerting rules, run by promtool against their own unit tests.

``promtool test rules`` feeds each scenario of ``k8s/monitoring/*.test.yml`` (a pod stuck in a
loop of any timing, a normal rollout, a pod opened on timeout then warm for hours, a sidecar
scraped by a PodMonitor or by annotations, the webhook down, slow or failing open, an image that
cannot be pulled) to the rules and fails on any alert that fires or stays quiet unexpectedly.
promtool comes from Debian's ``prometheus`` package; without it these tests skip, unless
``REQUIRE_TOOLS=1`` (set by CI) makes it mandatory.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO
from tests.test_prometheus import tool
from warmgate.kube.inject_parts import CONTAINER_NAME

MONITORING = REPO / "k8s" / "monitoring"
RULES = MONITORING / "alerts.rules.yml"
OPERATOR_RULE = REPO / "k8s" / "variants" / "prometheus-operator" / "prometheusrule.yaml"
RUNBOOK = "https://github.com/warmgate/warmgate/blob/main/docs/operations.md#"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool in k8s/monitoring/ (the test files name their rule files relative to it)."""
    return subprocess.run(
        [tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False,
        cwd=MONITORING,
    )  # fmt: skip


def rules() -> list[dict[str, Any]]:
    """Every rule of the plain rule file, all groups."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def run_tests(tests: dict[str, Any], rule_file: Path, tmp_path: Path) -> str:
    """Run promtool test rules on ``tests`` against ``rule_file``; its output, if it failed."""
    tests = {**tests, "rule_files": [str(rule_file)]}
    path = tmp_path / "case.test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(path))
    return "" if done.returncode == 0 else done.stdout + done.stderr


@pytest.mark.parametrize("path", sorted(MONITORING.glob("*.test.yml")), ids=lambda p: p.name)
def test_the_shipped_alert_unit_tests_pass(path: Path) -> None:
    """Every unit test file shipped beside the rules passes promtool test rules."""
    done = promtool("test", "rules", path.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_both_rule_files_pass_promtool_check(tmp_path: Path) -> None:
    """The plain rule file and the PrometheusRule's spec are valid rule files, every rule in."""
    count = len(rules())
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {count} rules found" in done.stdout
    spec = tmp_path / "operator.rules.yml"
    spec.write_text(yaml.safe_dump(yaml.safe_load(OPERATOR_RULE.read_text())["spec"]))
    done = promtool("check", "rules", str(spec))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {count} rules found" in done.stdout


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    """Each alert has a case where it must fire and one where it must not."""
    cases = [
        case
        for path in MONITORING.glob("*.test.yml")
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never must fire"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} never must not"


def test_every_alert_links_to_its_runbook_section() -> None:
    """Each runbook_url points at a heading of docs/operations.md that exists."""
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in operations.splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK)
        assert url.rpartition("#")[2] == rule["alert"].lower()
        assert rule["alert"].lower() in anchors, rule["alert"]


def test_the_alert_unit_tests_can_fail(tmp_path: Path) -> None:
    """promtool test rules fails when an expected alert does not fire, so the tests above bite."""
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    stuck = next(t for t in tests["tests"] if t["name"].startswith("a warm-up stuck"))
    stuck["input_series"][0]["values"] = "1x10 0x30"  # warm after 10 minutes after all
    output = run_tests(tests, RULES, tmp_path)
    assert "WarmgateWarmingTooLong" in output


def old_rules(tmp_path: Path, **exprs: str) -> Path:
    """The shipped rules with some expressions replaced, written to a file."""
    groups = yaml.safe_load(RULES.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            if rule["alert"] in exprs:
                rule["expr"] = exprs[rule["alert"]]
    path = tmp_path / "old.rules.yml"
    path.write_text(yaml.safe_dump(groups))
    return path


def test_a_stuck_loop_is_missed_by_a_clock_that_failed_spells_reset(tmp_path: Path) -> None:
    """The loop case catches what a waiting|warming-only rule misses: warming 5 minutes, failing
    closed 1 (retry_after), over and over, never keeps that rule's 20-minute clock going."""
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    loop = [t for t in tests["tests"] if t["name"].startswith("warming 5m and failing closed")]
    old = old_rules(
        tmp_path,
        WarmgateWarmingTooLong="max by (namespace, pod) "
        '(warmgate_state{warmgate_state=~"waiting|warming"}) == 1',
    )
    output = run_tests({**tests, "tests": loop}, old, tmp_path)
    assert "WarmgateWarmingTooLong" in output
    assert run_tests({**tests, "tests": loop}, RULES, tmp_path) == ""


def test_an_alert_for_the_pods_whole_life_is_caught(tmp_path: Path) -> None:
    """The opened-on-timeout case fails a rule that fires as long as the gauge is 1."""
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    opened = [t for t in tests["tests"] if t["name"].startswith("opening on timeout")]
    old = old_rules(
        tmp_path,
        WarmgateOpenedOnTimeout="max by (namespace, pod) (warmgate_opened_on_timeout) == 1",
    )
    assert "WarmgateOpenedOnTimeout" in run_tests({**tests, "tests": opened}, old, tmp_path)


def test_the_operator_rule_holds_the_plain_rule_file() -> None:
    """The PrometheusRule's spec is exactly the plain rule file, both groups."""
    assert yaml.safe_load(OPERATOR_RULE.read_text())["spec"] == yaml.safe_load(RULES.read_text())


def shipped_containers() -> set[tuple[str, str]]:
    """(metric, container name) of every container running warmgate's image in k8s/, and the
    one `inject` and the webhook add: init containers and ordinary containers apart."""
    found = {("kube_pod_init_container_status_waiting_reason", CONTAINER_NAME)}
    metrics = {
        "initContainers": "kube_pod_init_container_status_waiting_reason",
        "containers": "kube_pod_container_status_waiting_reason",
    }

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in metrics and isinstance(value, list):
                    found.update(
                        (metrics[key], container["name"])
                        for container in value
                        if str(container.get("image", "")).startswith("ghcr.io/warmgate/")
                    )
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted((REPO / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            walk(document)
    return found


def test_image_pull_alert_covers_every_container_warmgate_ships() -> None:
    """WarmgateImagePullFailing's container matchers take every warmgate container name, each on
    the kube-state-metrics series for its kind (init container or not)."""
    rule = next(rule for rule in rules() if rule["alert"] == "WarmgateImagePullFailing")
    matchers = re.findall(r'(kube_pod_\w+)\{[^}]*container(=~?)"([^"]*)"', rule["expr"])
    shipped = shipped_containers()
    assert {name for _, name in shipped} >= {"warmgate", "warmgate-serve", "webhook"}
    for metric, name in shipped:
        assert any(
            metric == matched and (re.fullmatch(value, name) if op == "=~" else value == name)
            for matched, op, value in matchers
        ), f"{name} ({metric}) is not covered"
