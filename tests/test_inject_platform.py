"""`warmgate inject` aimed by a platform team, and `warmgate uninject`: the real CLI end to end.

Every successful output also goes through kubectl's Go decoder (see ``inject_cli``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, run_cli
from tests.kubectl import assert_go_reads_as_python, go_decode
from tests.test_inject import HERITAGE, SAMPLES, WORKLOADS, documents, inject_cli, pod_spec
from warmgate.kube.inject import MARKER
from warmgate.kube.selection import (
    Choice,
    Operator,
    Requirement,
    Selection,
    inject_annotation,
    parse_selector,
    why_skipped,
)

PLATFORM = SAMPLES / "platform.yaml"
HANDWRITTEN = REPO / "k8s" / "variants" / "init-container" / "deployment.yaml"


def by_name(text: str) -> dict[str, dict[str, Any]]:
    """The objects of a stream by ``metadata.name`` (``List`` objects by their items' names)."""
    objects = {}
    for doc in documents(text):
        for obj in doc["items"] if doc["kind"] == "List" else [doc]:
            objects[obj["metadata"]["name"]] = obj
    return objects


def warmgate_in(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The warmgate container of a workload, or None."""
    found = [c for c in pod_spec(obj).get("initContainers", []) if c["name"] == "warmgate"]
    return found[0] if found else None


def uninject_cli(*args: str, stdin: str | None = None) -> tuple[str, str]:
    """Run ``warmgate uninject ARGS``; (stdout, stderr) of a successful run."""
    result = run_cli("uninject", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip():
        assert_go_reads_as_python(result.stdout, f"uninject {' '.join(args)}")
    return result.stdout, result.stderr


def test_jobs_hooks_host_network_and_opted_out_workloads_are_skipped_with_a_reason() -> None:
    """Only shop and ledger get warmgate; each skip is a sentence on stderr; skipped text is kept."""
    out, err = inject_cli(str(PLATFORM))
    objects = by_name(out)
    assert {name for name, obj in objects.items() if warmgate_in(obj)} == {"shop", "ledger"}
    assert "deployment/legacy: skipped: its metadata has the annotation warmgate.io/inject" in err
    assert "job/migrate: skipped: a Job runs to completion" in err
    assert "pod/shop-test: skipped: it is a Helm hook (helm.sh/hook: test)" in err
    assert "daemonset/node-agent: skipped: it uses hostNetwork" in err
    source = PLATFORM.read_text()
    for name in ("legacy", "migrate", "shop-test", "node-agent"):
        start = source.index(f"  name: {name}\n")
        block = source[source.rindex("apiVersion", 0, start) :].split("\n---\n")[0]
        assert block in out, name


@pytest.mark.parametrize(
    ("args", "injected"),
    [
        (["--kind", "StatefulSet"], {"ledger"}),
        (["--kind", "statefulset"], {"ledger"}),
        (["--name", "shop"], {"shop"}),
        (["-l", "team=shop"], {"shop"}),
        (["--selector", "tier in (front,back),team!=shop"], {"ledger"}),
        (["-l", "!tier"], set()),
        (["--kind", "Job"], {"migrate"}),
        (["--name", "node-agent", "--name", "shop-test"], {"node-agent", "shop-test"}),
        (["--name", "legacy"], set()),
    ],
)
def test_kind_name_and_selector_aim_inject(args: list[str], injected: set[str]) -> None:
    """Filters combine; naming a Job's kind or a workload's name includes it; opt-out always wins."""
    out, _ = inject_cli(str(PLATFORM), *args)
    assert {name for name, obj in by_name(out).items() if warmgate_in(obj)} == injected


def test_a_new_image_updates_the_sidecar_in_place_and_the_same_options_change_nothing() -> None:
    """Re-running with --image updates only the image; re-running as before is byte for byte."""
    once, _ = inject_cli(str(WORKLOADS))
    again, err = inject_cli("-", "--image", "registry.example.com/warmgate:2", stdin=once)
    assert "statefulset/ledger: warmgate updated as a native sidecar" in err
    before, after = by_name(once)["ledger"], by_name(again)["ledger"]
    assert [c["name"] for c in pod_spec(after)["initContainers"]] == ["migrate", "warmgate"]
    new = warmgate_in(after)
    assert new is not None
    assert new["image"] == "registry.example.com/warmgate:2"
    assert {**new, "image": None} == {**(warmgate_in(before) or {}), "image": None}
    assert pod_spec(after)["volumes"] == pod_spec(before)["volumes"]
    third, _ = inject_cli("-", "--image", "registry.example.com/warmgate:2", stdin=again)
    assert third == again


def test_changing_mode_port_and_config_map_updates_what_inject_added() -> None:
    """--mode init on a sidecar turns it into `prime` in place, with the new ConfigMap volume."""
    once, _ = inject_cli(str(HERITAGE))
    again, _ = inject_cli("-", "--mode", "init", "--config-map", "shared", stdin=once)
    deployment = by_name(again)["heritage-app"]
    container = warmgate_in(deployment)
    assert container is not None
    assert container["args"][0] == "prime"
    assert "restartPolicy" not in container
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["warmgate-config"]["configMap"]["name"] == "shared"
    assert len(pod_spec(deployment)["volumes"]) == 2


def test_an_update_still_refuses_a_port_the_app_uses() -> None:
    """Re-running with --port 8080 over injected output clashes with the app's own port: exit 2."""
    once, _ = inject_cli(str(HERITAGE))
    result = run_cli("inject", "-", "--port", "8080", stdin=once)
    assert result.returncode == 2
    assert "container 'app' already uses port 8080" in result.stderr


def test_a_handwritten_warmgate_is_neither_updated_nor_removed() -> None:
    """Without inject's annotation, a warmgate container is the author's: both commands keep it."""
    text = HANDWRITTEN.read_text()
    out, err = inject_cli(str(HANDWRITTEN), "--image", "other:1")
    assert out == text
    assert "has a warmgate container that inject did not add; left as it is" in err
    removed, err = uninject_cli(str(HANDWRITTEN))
    assert removed == text
    assert "inject did not add" in err


@pytest.mark.parametrize(
    ("sample", "args"),
    [
        (HERITAGE, []),
        (PLATFORM, ["--env", "A=1", "--env-from-secret", "db", "--name", "node-agent"]),
        (WORKLOADS, ["--kind", "Job", "--kind", "CronJob", "--kind", "Pod", "--kind", "Deployment",
                     "--kind", "StatefulSet", "--mode", "init"]),
    ],
    ids=["heritage", "platform", "workloads"],
)  # fmt: skip
def test_uninject_removes_exactly_what_inject_added(sample: Path, args: list[str]) -> None:
    """uninject(inject(x)) reads as x, in Python and in kubectl; untouched documents keep their text."""
    injected, _ = inject_cli(str(sample), *args)
    assert MARKER in injected
    removed, err = uninject_cli("-", stdin=injected)
    assert "warmgate removed" in err
    assert documents(removed) == documents(sample.read_text())
    assert go_decode(removed) == go_decode(sample.read_text())
    assert uninject_cli("-", stdin=removed)[0] == removed


def test_env_and_env_from_secret_reach_the_warmgate_container_as_strings() -> None:
    """--env NAME=VALUE and --env-from-secret: values Go would retype (1234e56, y) stay strings."""
    out, _ = inject_cli(str(HERITAGE), "--env", "GIT_SHA=1234e56", "--env", "DEBUG=y",
                        "--env", "URL=http://x/?a=b", "--env-from-secret", "orders-db")  # fmt: skip
    [go] = [obj for obj in go_decode(out) if obj["kind"] == "Deployment"]
    container = warmgate_in(go)
    assert container is not None
    assert container["env"] == [
        {"name": "GIT_SHA", "value": "1234e56"},
        {"name": "DEBUG", "value": "y"},
        {"name": "URL", "value": "http://x/?a=b"},
    ]
    assert container["envFrom"] == [{"secretRef": {"name": "orders-db"}}]


def test_emit_config_writes_a_valid_starter_config_map_from_the_workload(tmp_path: Path) -> None:
    """Port and readiness path become the target and wait URL; thresholds are marked CHOOSE."""
    out, err = inject_cli(str(PLATFORM), "--emit-config")
    objects = by_name(out)
    shop = objects["shop-warmgate"]
    assert shop["kind"] == "ConfigMap"
    assert shop["metadata"]["namespace"] == "retail"
    text = shop["data"]["warmgate.yaml"]
    config = yaml.safe_load(text)
    assert config["wait"]["url"] == "http://127.0.0.1:8080/ready"
    assert config["targets"][0]["http"]["url"] == "http://127.0.0.1:8080/"
    assert text.count("CHOOSE") >= 4
    assert "wait" not in yaml.safe_load(objects["ledger-warmgate"]["data"]["warmgate.yaml"])
    assert "starter ConfigMap shop-warmgate written" in err
    for name in ("shop-warmgate", "ledger-warmgate"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(objects[name]["data"]["warmgate.yaml"])
        validated = run_cli("validate", "--config", str(path))
        assert validated.returncode == 0, validated.stderr
    again, err = inject_cli("-", "--emit-config", stdin=out)
    assert again == out
    assert "ConfigMap shop-warmgate is in the input already" in err


def test_a_shared_config_map_gets_one_starter() -> None:
    """--config-map shared with --emit-config: one starter, from the first workload."""
    out, err = inject_cli(str(PLATFORM), "--emit-config", "--config-map", "shared")
    starters = [obj for obj in documents(out) if obj["kind"] == "ConfigMap"]
    assert [obj["metadata"]["name"] for obj in starters] == ["shared"]
    assert "deployment/shop" in starters[0]["data"]["warmgate.yaml"]
    assert err.count("starter ConfigMap shared written") == 1


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n---\n"])
def test_input_without_objects_exits_0_with_a_notice(text: str) -> None:
    """Empty input is not an error: one line on stderr, the input back on stdout."""
    for command in ("inject", "uninject"):
        result = run_cli(command, "-", stdin=text)
        assert result.returncode == 0, result.stderr
        assert result.stdout == text
        assert result.stderr == (
            f"warmgate: the input holds no Kubernetes objects; nothing to {command}\n"
        )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--kind", "Deploymnet"], "--kind: 'Deploymnet' is not a workload kind inject knows"),
        (["-l", "team in shop"], "--selector: 'team in shop' in 'team in shop' is not a label"),
        (["--env", "NOVALUE"], "--env: 'NOVALUE...' is not NAME=VALUE"),
        (["--env", "1BAD=x"], "--env: '1BAD...' is not NAME=VALUE"),
        (["--env-from-secret", "Bad_Name"], "--env-from-secret: 'Bad_Name' is not a Secret name"),
        (["--run-as-user", "0"], "--run-as-user: '0' is not a user"),
        (["--emit-config", "--name", "node-agent"], "declares no TCP containerPort"),
    ],
)
def test_refusals_exit_2_with_one_sentence(args: list[str], expected: str) -> None:
    """Every refusal: exit 2, nothing on stdout, one sentence naming the flag and the fix."""
    result = run_cli("inject", str(PLATFORM), *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.rstrip().endswith(".")


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [("kind: [unclosed\n", "is not valid YAML"), ("- a\n", "is a list, not a Kubernetes object")],
)
def test_uninject_refuses_what_is_not_kubernetes_yaml(stdin: str, expected: str) -> None:
    """uninject refuses bad input like inject: exit 2, one sentence, nothing on stdout."""
    result = run_cli("uninject", "-", stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in result.stderr


def test_run_as_user_none_leaves_the_user_to_the_platform() -> None:
    """--run-as-user none (OpenShift) drops runAsUser and runAsGroup, keeps runAsNonRoot."""
    out, _ = inject_cli(str(HERITAGE), "--run-as-user", "none")
    container = warmgate_in(by_name(out)["heritage-app"])
    assert container is not None
    context = container["securityContext"]
    assert "runAsUser" not in context
    assert "runAsGroup" not in context
    assert context["runAsNonRoot"] is True


def test_selector_requirements_follow_kubectl_semantics() -> None:
    """=, !=, in, notin, exists and !exists; != and notin match a missing label."""
    [equals, not_in, exists, absent] = parse_selector("a=1, b notin (x, y),c,!d")
    assert equals == Requirement("a", Operator.EQUALS, ("1",))
    assert [not_in.matches({}), not_in.matches({"b": "x"})] == [True, False]
    assert [exists.matches({"c": ""}), exists.matches({})] == [True, False]
    assert [absent.matches({}), absent.matches({"d": "1"})] == [True, False]
    assert parse_selector("  ") == ()


def test_opt_out_on_the_pod_template_is_honoured_even_when_named() -> None:
    """warmgate.io/inject: disabled on the pod template wins over --name."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    template = {"metadata": {"annotations": {"warmgate.io/inject": "Disabled"}}, "spec": {}}
    reason = why_skipped(pod, "Pod", template, Selection(names=("p",)))
    assert reason == "skipped: its pod template has the annotation warmgate.io/inject: disabled"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" disabled", Choice.DISABLED), ("DISABLED\n", Choice.DISABLED),
        ("\tEnabled ", Choice.ENABLED), ("disable", Choice.UNRECOGNISED),
        ("true", Choice.ENABLED), (" TRUE", Choice.ENABLED), ("false", Choice.DISABLED),
        ("False ", Choice.DISABLED), ("yes", Choice.UNRECOGNISED),
        ("", Choice.UNRECOGNISED), (False, Choice.UNRECOGNISED), (None, Choice.UNRECOGNISED),
    ],
)  # fmt: skip
def test_the_inject_annotation_is_read_trimmed_and_in_any_case(
    value: Any, expected: Choice
) -> None:
    """Whitespace and capitals do not matter; enabled/true and disabled/false are understood,
    anything else is unrecognised."""
    assert inject_annotation({"warmgate.io/inject": value}) is expected
    assert inject_annotation({}) is Choice.UNSET


def test_an_unrecognised_annotation_keeps_a_workload_out_even_when_named() -> None:
    """A misspelt opt-out is not taken for an opt-in: left alone, saying what to write."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    template = {"metadata": {"annotations": {"warmgate.io/inject": "disable"}}, "spec": {}}
    reason = why_skipped(pod, "Pod", template, Selection(names=("p",)))
    assert reason == (
        "skipped: its pod template has the annotation warmgate.io/inject: 'disable', which is "
        "neither enabled/true nor disabled/false; write enabled or disabled"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("' disabled'", "has the annotation warmgate.io/inject: disabled"),
        ("'Disabled  '", "has the annotation warmgate.io/inject: disabled"),
        ("disable", "has the annotation warmgate.io/inject: 'disable', which is neither"),
        ("false", "has the annotation warmgate.io/inject: false, which is not a string"),
        ("'False'", "has the annotation warmgate.io/inject: false"),
    ],
)
def test_inject_leaves_a_workload_alone_for_a_spaced_or_unknown_opt_out(
    value: str, reason: str
) -> None:
    """inject skips a Deployment annotated ' disabled' (spaces, capitals) or with an unknown
    value, writes it unchanged and says why."""
    text = HERITAGE.read_text().replace(
        "  template:\n    metadata:\n",
        f"  template:\n    metadata:\n      annotations:\n        warmgate.io/inject: {value}\n",
    )
    assert f"warmgate.io/inject: {value}" in text
    out, err = inject_cli("-", stdin=text)
    assert out == text
    assert f"deployment/heritage-app: skipped: its pod template {reason}" in err
