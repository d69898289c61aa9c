"""Every shipped workload's rollout deadline outlasts the warm-up its own config allows, and
wait.timeout has one default everywhere it is written down.

A pod is Available only once warm, so a Deployment whose progressDeadlineSeconds is shorter
than wait.timeout + gate.timeout (+ load.jitter and the primer's grace) is marked failed (Argo CD: Degraded)
while it is still warming normally. The deadline is computed from the ConfigMap each workload
mounts, read by warmgate's own loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from tests.test_k8s_manifests import K8S, built, kustomize_dirs
from warmgate.config.loader import config_from_mapping, parse_yaml
from warmgate.config.model import WaitConfig
from warmgate.decide.lifecycle import PRIMER_GRACE
from warmgate.kernel.units import format_duration
from warmgate.kube.manifests import CONFIG_KEY

ROLLOUT_KINDS = ("Deployment", "Rollout")
"""The workload kinds that have a progressDeadlineSeconds."""


def warmgate_config_map(spec: dict[str, Any]) -> str | None:
    """The ConfigMap a pod spec's warmgate-config volume mounts, if warmgate is in the pod."""
    names = [c["name"] for key in ("initContainers", "containers") for c in spec.get(key, [])]
    if "warmgate" not in names:
        return None
    [volume] = [v for v in spec["volumes"] if v["name"] == "warmgate-config"]
    return str(volume["configMap"]["name"])


def longest_warm_up(directory: Path, config_map: str) -> float:
    """wait.timeout + gate.timeout + load.jitter + the primer's grace, from the ConfigMap the
    build holds."""
    [found] = [o for o in built(directory) if o["kind"] == "ConfigMap"
               and o["metadata"]["name"] == config_map]  # fmt: skip
    config, _ = config_from_mapping(parse_yaml(found["data"][CONFIG_KEY], config_map), environ={})
    return config.wait.timeout + config.gate.timeout + config.load.jitter + PRIMER_GRACE


@pytest.mark.parametrize("directory", kustomize_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_rollout_deadline_outlasts_the_longest_warm_up(directory: Path) -> None:
    """Each Deployment sets progressDeadlineSeconds, at least its config's longest warm-up."""
    for obj in built(directory):
        if obj["kind"] not in ROLLOUT_KINDS:
            continue
        deadline = obj["spec"].get("progressDeadlineSeconds")
        assert isinstance(deadline, int), f"{obj['metadata']['name']}: no progressDeadlineSeconds"
        config_map = warmgate_config_map(obj["spec"]["template"]["spec"])
        if config_map is not None:
            longest = longest_warm_up(directory, config_map)
            assert deadline >= longest, (obj["metadata"]["name"], deadline, longest)


def test_the_check_reads_the_config_it_is_given(tmp_path: Path) -> None:
    """A longer config makes the same deadline too short, so the check above can fail."""
    text = "targets: [{http: {url: http://127.0.0.1:8080/}}]\nwait: {timeout: 30m}\n"
    config, _ = config_from_mapping(parse_yaml(text, "test"), environ={})
    assert config.wait.timeout + config.gate.timeout + PRIMER_GRACE > 1200


def test_wait_timeout_has_one_default_everywhere_it_is_written() -> None:
    """The model's default, as validate applies it, is the one the docs and the alerts state."""
    default = format_duration(WaitConfig().timeout)
    assert default == "5m"
    places = {
        REPO / "docs" / "config.md": rf"\| `wait.timeout` \| duration \| {default} \|",
        REPO / "README.md": rf"`wait.timeout` \| how long to wait for the app to come up \(default {default}\)",
        REPO / "docs" / "operations.md": rf"defaults \(`wait.timeout` {default}, `gate.timeout`",
        K8S / "monitoring" / "alerts.rules.yml": rf"\({default} \+ 5m by default",
    }  # fmt: skip
    for path, pattern in places.items():
        assert re.search(pattern, path.read_text()), path
    stale = re.compile(
        r"`wait.timeout` (?!5m)\d+m[,)] `gate.timeout`|default `wait.timeout` (?!5m)"
    )
    for path in [*(REPO / "docs").glob("*.md"), REPO / "README.md"]:
        assert not stale.search(path.read_text()), path
