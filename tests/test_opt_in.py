"""Opt-in as people expect it, in the admission decision (plain data) and in ``inject`` (its CLI).

true/enabled and false/disabled, in any case, on the annotation or the label; DaemonSet pods
left alone; objects with an owner left to their owner by ``inject``; Argo Rollouts injected;
every kind left alone named; per-pod resource annotations, validated; image pull secrets.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import run_cli
from tests.reviews import deployment_pod, patched, request
from warmgate.kernel.errors import ConfigError
from warmgate.kube.admission import Outcome, Review, admit, response
from warmgate.kube.inject import PULL_SECRETS, InjectOptions, inject_text
from warmgate.kube.pod_config import InvalidAnnotationError, pod_resources
from warmgate.kube.selection import Choice, inject_annotation
from warmgate.kube.uninject import uninject_text

OPTIONS = InjectOptions(config_map="warmgate")
DAEMON_SET_OWNER = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-agent",
                    "uid": "d", "controller": True}  # fmt: skip
DEFAULTS = {
    "cpu_request": "250m",
    "memory_request": "64Mi",
    "cpu_limit": "",
    "memory_limit": "128Mi",
}


def decide(
    pod: dict[str, Any], *, namespace: bool = False, options: InjectOptions = OPTIONS
) -> tuple[Any, dict[str, Any]]:
    """The decision for creating ``pod`` and the pod after its patch."""
    review = request(pod)
    uid = review["request"]["uid"]
    decision = admit(Review(uid, review["request"]), options, namespace_opted_in=namespace)
    return decision, patched(copy.deepcopy(pod), response(uid, decision))


def sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    [container] = [c for c in pod["spec"].get("initContainers", []) if c["name"] == "warmgate"]
    return container


# --- the admission decision -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "disabled", " False ", "DISABLED"])
def test_an_opt_out_in_a_labelled_namespace_is_left_alone_with_the_reason(value: str) -> None:
    """false (Istio's habit) keeps a pod of an opted-in namespace out, as disabled does."""
    pod = deployment_pod({"warmgate.io/inject": value})
    decision, after = decide(pod, namespace=True)
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    [warning] = decision.warnings
    assert f"has the annotation warmgate.io/inject: {value.strip().lower()}" in warning
    assert after == pod


@pytest.mark.parametrize("value", ["true", "enabled", "True", " ENABLED "])
def test_true_opts_a_pod_in_on_the_annotation_path(value: str) -> None:
    """The annotation entry (namespace not opted in): true is an opt-in, as enabled is."""
    decision, after = decide(deployment_pod({"warmgate.io/inject": value}))
    assert decision.outcome is Outcome.MUTATED
    assert decision.warnings == ()
    assert sidecar(after)["restartPolicy"] == "Always"


@pytest.mark.parametrize("value", ["true", "enabled"])
def test_the_label_opts_a_pod_in_and_the_annotation_opt_out_wins_over_it(value: str) -> None:
    """The label warmgate.io/inject (what the adoption component sets) opts in; an opt-out
    annotation on the same pod wins."""
    pod = deployment_pod()
    pod["metadata"]["labels"]["warmgate.io/inject"] = value
    assert decide(pod)[0].outcome is Outcome.MUTATED
    pod["metadata"]["annotations"] = {"warmgate.io/inject": "false"}
    decision, after = decide(pod)
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    assert after == pod


@pytest.mark.parametrize("annotations", [{}, {"warmgate.io/inject": "enabled"}])
@pytest.mark.parametrize("namespace", [True, False])
def test_daemon_set_pods_are_left_alone_with_a_warning(
    annotations: dict[str, str], namespace: bool
) -> None:
    """A DaemonSet's pod (a per-node agent) gets no warmgate, and a warning saying so."""
    pod = deployment_pod(annotations)
    pod["metadata"]["ownerReferences"] = [DAEMON_SET_OWNER]
    decision, after = decide(pod, namespace=namespace)
    if not namespace and not annotations:
        assert decision.warnings == ()  # nobody asked: silent
    else:
        [warning] = decision.warnings
        assert "it is a pod of DaemonSet node-agent" in warning
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    assert after == pod


@given(st.text(max_size=12))
def test_any_other_value_is_unrecognised_and_never_injects(value: str) -> None:
    """Only enabled/true opt in and disabled/false opt out, trimmed and in any case; any other
    value is unrecognised, and the decision never mutates such a pod."""
    word = value.strip().lower()
    expected = (
        Choice.ENABLED if word in ("enabled", "true")
        else Choice.DISABLED if word in ("disabled", "false")
        else Choice.UNRECOGNISED
    )  # fmt: skip
    assert inject_annotation({"warmgate.io/inject": value}) is expected
    if expected is Choice.UNRECOGNISED:
        decision, _ = decide(deployment_pod({"warmgate.io/inject": value}), namespace=True)
        assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
        assert decision.warnings


def test_resource_annotations_set_the_sidecars_resources() -> None:
    """warmgate.io/cpu-request and friends override the webhook's flags for one pod."""
    annotations = {"warmgate.io/inject": "enabled", "warmgate.io/cpu-request": "500m",
                   "warmgate.io/memory-request": "96Mi", "warmgate.io/memory-limit": "256Mi",
                   "warmgate.io/cpu-limit": "1"}  # fmt: skip
    decision, after = decide(deployment_pod(annotations))
    assert decision.outcome is Outcome.MUTATED
    assert sidecar(after)["resources"] == {
        "requests": {"cpu": "500m", "memory": "96Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }


@pytest.mark.parametrize(
    ("annotations", "named", "says"),
    [
        ({"warmgate.io/cpu-request": "lots"}, "warmgate.io/cpu-request", "not a Kubernetes quantity"),
        ({"warmgate.io/memory-request": "512Mi"}, "warmgate.io/memory-request", "above the memory limit 128Mi"),
        ({"warmgate.io/cpu-request": "2", "warmgate.io/cpu-limit": "500m"}, "warmgate.io/cpu-request", "above the cpu limit 500m"),
        ({"warmgate.io/memory-limit": "32Mi"}, "warmgate.io/memory-limit", "above the memory limit 32Mi"),
    ],
    ids=["not-a-quantity", "request-over-default-limit", "request-over-limit", "limit-under-request"],
)  # fmt: skip
def test_a_bad_resource_annotation_admits_the_pod_unmutated_naming_it(
    annotations: dict[str, str], named: str, says: str
) -> None:
    """A value Kubernetes would refuse (and the pod with it) is INVALID: no patch, a warning."""
    pod = deployment_pod({"warmgate.io/inject": "enabled", **annotations})
    decision, after = decide(pod)
    assert (decision.outcome, decision.patch) == (Outcome.INVALID, ())
    assert decision.invalid_annotation == named
    assert named in decision.warnings[0]
    assert says in decision.warnings[0]
    assert after == pod


def test_none_removes_a_limit_and_lets_the_request_grow() -> None:
    """memory-limit none drops the limit, so a large request is fine."""
    chosen = pod_resources(
        {"warmgate.io/memory-limit": "none", "warmgate.io/memory-request": "1Gi"}, DEFAULTS
    )
    assert chosen == {"memory_limit": "none", "memory_request": "1Gi"}
    with pytest.raises(InvalidAnnotationError):
        pod_resources({"warmgate.io/memory-request": "1Gi"}, DEFAULTS)


def test_image_pull_secrets_reach_the_pod_from_the_webhook() -> None:
    """The webhook's --image-pull-secret adds the pod's imagePullSecrets, keeping its own."""
    pod = deployment_pod({"warmgate.io/inject": "enabled"})
    pod["spec"]["imagePullSecrets"] = [{"name": "app-registry"}]
    options = InjectOptions(config_map="warmgate", image_pull_secrets=("mirror", "app-registry"))
    decision, after = decide(pod, options=options)
    assert decision.outcome is Outcome.MUTATED
    assert after["spec"]["imagePullSecrets"] == [{"name": "app-registry"}, {"name": "mirror"}]
    assert after["metadata"]["annotations"][PULL_SECRETS] == "mirror"


# --- inject -----------------------------------------------------------------------------------

APP = {
    "containers": [{"name": "app", "image": "registry.example.com/web:1", "ports": [
        {"name": "http", "containerPort": 8080}]}],
}  # fmt: skip


def workload(kind: str, name: str, api: str = "apps/v1", **metadata: Any) -> dict[str, Any]:
    """A workload of ``kind`` whose pod template runs the app."""
    template = {"metadata": {"labels": {"app": "web"}}, "spec": copy.deepcopy(APP)}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, **metadata},
                "spec": copy.deepcopy(APP)}  # fmt: skip
    spec = {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


def owner(kind: str, name: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": True}]


def stream(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def has_warmgate(obj: dict[str, Any]) -> bool:
    spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return any(c["name"] == "warmgate" for c in spec.get("initContainers", []))


def test_inject_changes_the_deployment_and_the_rollout_not_what_they_own(tmp_path: Any) -> None:
    """A Deployment, its controller-owned ReplicaSet and Pod, an Argo Rollout: inject changes
    exactly the Deployment and the Rollout, with one stderr line per object it skipped."""
    objects = [
        workload("Deployment", "web"),
        workload("ReplicaSet", "web-7c9f8d5b4", ownerReferences=owner("Deployment", "web")),
        workload("Pod", "web-7c9f8d5b4-x2x9q", ownerReferences=owner("ReplicaSet", "web-7c9f8d5b4")),
        workload("Rollout", "shop", api="argoproj.io/v1alpha1"),
    ]  # fmt: skip
    path = tmp_path / "all.yaml"
    path.write_text(stream(*objects))
    result = run_cli("inject", str(path))
    assert result.returncode == 0, result.stderr
    out = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert [has_warmgate(obj) for obj in out] == [True, False, False, True]
    assert out[1:3] == objects[1:3]
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert skipped == [
        "warmgate: replicaset/web-7c9f8d5b4: skipped: it is owned by Deployment web "
        "(metadata.ownerReferences), which would undo the change; inject Deployment web instead",
        "warmgate: pod/web-7c9f8d5b4-x2x9q: skipped: it is owned by ReplicaSet web-7c9f8d5b4 "
        "(metadata.ownerReferences), which would undo the change; inject ReplicaSet "
        "web-7c9f8d5b4 instead",
    ]
    assert any(
        line.startswith("warmgate: rollout/shop: warmgate added")
        for line in result.stderr.splitlines()
    )


def test_every_kind_left_alone_is_named() -> None:
    """A Rollout that borrows a Deployment's template, a custom workload, a Rollout of another
    group: one line each; objects with no pod template: one summary line naming their kinds."""
    rollout_ref = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                   "metadata": {"name": "by-ref"},
                   "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "web"}}}  # fmt: skip
    clone_set = workload("CloneSet", "kruise", api="apps.kruise.io/v1alpha1")
    other = workload("Rollout", "other", api="example.com/v1")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    config_b = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
    result = inject_text(stream(rollout_ref, clone_set, other, service, config, config_b), OPTIONS)
    assert result.notes == (
        "rollout/by-ref: skipped: it takes its pod template from spec.workloadRef (Deployment "
        "web); inject Deployment web instead",
        "cloneset/kruise: skipped: inject does not know the kind CloneSet "
        "(apps.kruise.io/v1alpha1), though it has a pod template at spec.template; inject knows "
        "Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, "
        "CronJob, Rollout (argoproj.io)",
        "rollout/other: skipped: inject does not know the kind Rollout (example.com/v1), though "
        "it has a pod template at spec.template; inject knows Pod, Deployment, StatefulSet, "
        "DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, Rollout (argoproj.io)",
        "left as they are, having no pod template: ConfigMap (2), Service (1)",
    )


def test_inject_reads_the_resource_annotations_of_the_pod_template() -> None:
    """inject honours warmgate.io/memory-limit on the template; a bad one is a refusal."""
    deployment = workload("Deployment", "web")
    deployment["spec"]["template"]["metadata"]["annotations"] = {
        "warmgate.io/memory-limit": "512Mi"
    }
    [out] = [d for d in yaml.safe_load_all(inject_text(stream(deployment), OPTIONS).text) if d]
    [container] = out["spec"]["template"]["spec"]["initContainers"]
    assert container["resources"]["limits"] == {"memory": "512Mi"}
    deployment["spec"]["template"]["metadata"]["annotations"] = {"warmgate.io/cpu-limit": "x"}
    with pytest.raises(ConfigError, match=r"deployment/web: warmgate.io/cpu-limit: 'x' is not"):
        inject_text(stream(deployment), OPTIONS)


def test_image_pull_secrets_are_added_updated_and_removed_exactly() -> None:
    """--image-pull-secret adds to the app's own secrets; a new run replaces inject's, and
    uninject removes only inject's."""
    deployment = workload("Deployment", "web")
    deployment["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "app-registry"}]
    text = stream(deployment)
    first = inject_text(text, InjectOptions(image_pull_secrets=("mirror", "app-registry"))).text
    spec = yaml.safe_load(first)["spec"]["template"]
    assert spec["spec"]["imagePullSecrets"] == [{"name": "app-registry"}, {"name": "mirror"}]
    assert spec["metadata"]["annotations"][PULL_SECRETS] == "mirror"
    second = inject_text(first, InjectOptions(image_pull_secrets=("vault",))).text
    secrets = yaml.safe_load(second)["spec"]["template"]["spec"]["imagePullSecrets"]
    assert secrets == [{"name": "app-registry"}, {"name": "vault"}]
    assert yaml.safe_load(uninject_text(second).text) == deployment
    with pytest.raises(ConfigError, match="--image-pull-secret: 'Bad_Name' is not a Secret name"):
        InjectOptions(image_pull_secrets=("Bad_Name",))


def test_the_image_pull_secret_flag_is_repeatable() -> None:
    """The CLI flag reaches the pod template, once per secret."""
    result = run_cli(
        "inject", "-", "--image-pull-secret", "a", "--image-pull-secret", "b",
        stdin=stream(workload("Deployment", "web")),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(result.stdout)["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}]


def test_the_istio_exclusion_is_opt_in_merged_and_removed_exactly() -> None:
    """--istio-exclude-port adds warmgate's port to Istio's excludeInboundPorts, beside the
    pod's own ports; a run without it, or uninject, takes out only that port."""
    deployment = workload("Deployment", "web")
    annotations = {"traffic.sidecar.istio.io/excludeInboundPorts": "9090"}
    deployment["spec"]["template"]["metadata"]["annotations"] = dict(annotations)
    plain = yaml.safe_load(inject_text(stream(deployment), OPTIONS).text)
    kept = plain["spec"]["template"]["metadata"]["annotations"]
    assert kept["traffic.sidecar.istio.io/excludeInboundPorts"] == "9090"  # not asked: as it was
    injected = inject_text(stream(deployment), InjectOptions(istio_exclude_port=True)).text
    template = yaml.safe_load(injected)["spec"]["template"]["metadata"]["annotations"]
    assert template["traffic.sidecar.istio.io/excludeInboundPorts"] == "9090,8099"
    again = inject_text(injected, InjectOptions(istio_exclude_port=True, port=8100)).text
    template = yaml.safe_load(again)["spec"]["template"]["metadata"]["annotations"]
    assert template["traffic.sidecar.istio.io/excludeInboundPorts"] == "9090,8100"
    assert yaml.safe_load(uninject_text(again).text) == deployment


def test_the_webhook_excludes_the_port_from_istio_when_asked() -> None:
    pod = deployment_pod({"warmgate.io/inject": "enabled"})
    options = InjectOptions(config_map="warmgate", istio_exclude_port=True)
    decision, after = decide(pod, options=options)
    assert decision.outcome is Outcome.MUTATED
    assert (
        after["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"] == "8099"
    )
    assert (
        "traffic.sidecar.istio.io/excludeInboundPorts"
        not in decide(pod)[1]["metadata"]["annotations"]
    )
