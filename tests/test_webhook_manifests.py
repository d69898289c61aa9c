"""k8s/webhook/ and k8s/webhook-adoption/: the webhook's wiring, checked object against object.

The generic checks (schemas, Pod Security, Go decoding, kustomize builds) run over these
directories in tests/test_k8s_manifests.py; here, what only the webhook needs: the two entries'
selectors send each pod at most once and never the webhook's own, both fail open, the
certificate reaches both the server and the CA bundle, and a workload built with the adoption
component gets warmgate from the webhook's own decision.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.kubectl import kubectl
from tests.reviews import deployment_pod
from tests.test_k8s_manifests import HARDENED, K8S, SAMPLES, built, the
from warmgate.kube.admission import Outcome, decide
from warmgate.kube.inject import DEFAULT_IMAGE, InjectOptions
from warmgate.kube.selection import Operator, Requirement
from warmgate.kube.webhook import PATHS, VALIDATE_PATH

WEBHOOK = K8S / "webhook"
ADOPTION = K8S / "webhook-adoption"
OWN_NAMESPACE = "warmgate-system"


def entries() -> list[dict[str, Any]]:
    """The webhook entries of the MutatingWebhookConfiguration."""
    return list(the(WEBHOOK, "MutatingWebhookConfiguration")["webhooks"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects ``labels``."""
    operators = {"In": Operator.IN, "NotIn": Operator.NOT_IN, "Exists": Operator.EXISTS,
                 "DoesNotExist": Operator.DOES_NOT_EXIST}  # fmt: skip
    requirements = [
        Requirement(key, Operator.EQUALS, (value,))
        for key, value in selector.get("matchLabels", {}).items()
    ] + [
        Requirement(e["key"], operators[e["operator"]], tuple(e.get("values", ())))
        for e in selector.get("matchExpressions", [])
    ]
    return all(requirement.matches(labels) for requirement in requirements)


def namespace(name: str, **labels: str) -> dict[str, str]:
    """A namespace's labels, with the name label the API server sets on every namespace."""
    return {"kubernetes.io/metadata.name": name, **labels}


@pytest.mark.parametrize(
    ("labels", "paths"),
    [
        (namespace("shop", **{"warmgate.io/inject": "enabled"}), ["/mutate/namespace"]),
        (namespace("shop"), ["/mutate"]),
        (namespace("shop", **{"warmgate.io/inject": "disabled"}), ["/mutate"]),
        (namespace(OWN_NAMESPACE, **{"warmgate.io/inject": "enabled"}), []),
        (namespace("kube-system", **{"warmgate.io/inject": "enabled"}), []),
        (namespace("kube-system"), []),
    ],
    ids=["labelled", "plain", "label-disabled", "own", "kube-system-labelled", "kube-system"],
)
def test_each_pod_is_sent_by_at_most_one_entry_and_never_from_excluded_namespaces(
    labels: dict[str, str], paths: list[str]
) -> None:
    """The namespace selectors route a namespace's pods to one path, or to none when excluded."""
    sent = [e["clientConfig"]["service"]["path"] for e in entries()
            if selects(e["namespaceSelector"], labels)]  # fmt: skip
    assert sent == paths


def test_the_paths_tell_the_webhook_which_entry_sent_the_pod() -> None:
    """The entry that selects labelled namespaces posts to the path the webhook treats as opted in."""
    labelled = namespace("shop", **{"warmgate.io/inject": "enabled"})
    for entry in entries():
        path = entry["clientConfig"]["service"]["path"]
        assert PATHS[path] is selects(entry["namespaceSelector"], labelled)


def test_the_annotation_entry_only_sends_pods_that_ask() -> None:
    """Label selectors cannot see annotations: a matchCondition sends only pods whose annotation
    or label warmgate.io/inject is there and is not an opt-out; the webhook reads the value
    (enabled, true, any case; anything else gets a warning)."""
    [entry] = [e for e in entries() if not PATHS[e["clientConfig"]["service"]["path"]]]
    [condition] = entry["matchConditions"]
    expression = " ".join(condition["expression"].split())
    for where in ("annotations", "labels"):
        assert f"has(object.metadata.{where})" in expression
        assert f"'warmgate.io/inject' in object.metadata.{where}" in expression
        opt_out = f"!(object.metadata.{where}['warmgate.io/inject'] in ['disabled', 'false'])"
        assert opt_out in expression
    assert "'enabled'" not in expression  # any other value reaches the webhook, which decides


@pytest.mark.parametrize("value", ["enabled", "true"])
def test_both_spellings_of_the_namespace_label_opt_in(value: str) -> None:
    """A namespace labelled warmgate.io/inject=true is opted in as =enabled is."""
    labels = namespace("shop", **{"warmgate.io/inject": value})
    sent = [e["clientConfig"]["service"]["path"] for e in entries()
            if selects(e["namespaceSelector"], labels)]  # fmt: skip
    assert sent == ["/mutate/namespace"]


def test_both_entries_fail_open_quickly_and_have_no_side_effects() -> None:
    """Ignore, a short timeout, IfNeeded, no side effects, v1 reviews, pod CREATE only."""
    for entry in entries():
        assert entry["failurePolicy"] == "Ignore"
        assert entry["timeoutSeconds"] <= 5
        assert entry["reinvocationPolicy"] == "IfNeeded"
        assert entry["sideEffects"] == "None"
        assert entry["admissionReviewVersions"] == ["v1"]
        [rule] = entry["rules"]
        assert rule["operations"] == ["CREATE"]
        assert (rule["apiGroups"], rule["resources"]) == ([""], ["pods"])
        pod_labels = the(WEBHOOK, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert not selects(entry["objectSelector"], pod_labels)


def test_the_entries_reach_the_service_and_the_service_reaches_the_server() -> None:
    """Service name, namespace and port; targetPort to the container port the server binds."""
    service = the(WEBHOOK, "Service")
    deployment = the(WEBHOOK, "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = service["spec"]["ports"]
    for entry in entries():
        target = entry["clientConfig"]["service"]
        assert (target["name"], target["namespace"], target["port"]) == (
            service["metadata"]["name"],
            service["metadata"]["namespace"],
            port["port"],
        )
    [container_port] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    args = container["args"]
    assert args[0] == "webhook"
    assert args[args.index("--port") + 1] == str(container_port["containerPort"])
    assert (
        service["spec"]["selector"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def named(kind: str, name: str) -> dict[str, Any]:
    """The one object of ``kind`` called ``name`` that k8s/webhook/ builds."""
    [obj] = [o for o in built(WEBHOOK) if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_the_certificates_are_a_ca_chain_and_the_ca_bundle_is_the_ca() -> None:
    """selfSigned -> CA Certificate -> CA Issuer -> leaf: inject-ca-from names the CA, so a leaf
    renewal (a new key each time) never changes the caBundle; the CA keeps its key."""
    issuers = {o["metadata"]["name"]: o for o in built(WEBHOOK) if o["kind"] == "Issuer"}
    certificates = {o["metadata"]["name"]: o for o in built(WEBHOOK) if o["kind"] == "Certificate"}
    assert set(certificates) == {"warmgate-webhook-ca", "warmgate-webhook"}
    ca, leaf = certificates["warmgate-webhook-ca"], certificates["warmgate-webhook"]
    assert ca["spec"]["isCA"] is True
    assert "isCA" not in leaf["spec"]
    self_signed = issuers[ca["spec"]["issuerRef"]["name"]]
    assert self_signed["spec"] == {"selfSigned": {}}
    ca_issuer = issuers[leaf["spec"]["issuerRef"]["name"]]
    assert ca_issuer["spec"] == {"ca": {"secretName": ca["spec"]["secretName"]}}
    assert {ca["spec"]["issuerRef"]["kind"], leaf["spec"]["issuerRef"]["kind"]} == {"Issuer"}
    assert ca["spec"]["privateKey"]["rotationPolicy"] == "Never"
    hours = {name: int(c["spec"]["duration"].removesuffix("h")) for name, c in certificates.items()}
    assert hours["warmgate-webhook-ca"] >= 10 * hours["warmgate-webhook"]
    own = f"{OWN_NAMESPACE}/{ca['metadata']['name']}"
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = the(WEBHOOK, kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == own, kind


def test_the_leaf_reaches_the_server() -> None:
    """The leaf names the Service; its Secret is mounted where --tls-cert points."""
    leaf = named("Certificate", "warmgate-webhook")
    service = the(WEBHOOK, "Service")
    assert f"{service['metadata']['name']}.{OWN_NAMESPACE}.svc" in leaf["spec"]["dnsNames"]
    spec = the(WEBHOOK, "Deployment")["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == leaf["spec"]["secretName"]
    [container] = spec["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    args = container["args"]
    for flag, key in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")):
        assert args[args.index(flag) + 1] == f"{mount['mountPath']}/{key}"


def test_the_webhook_is_highly_available() -> None:
    """At least 2 replicas that cannot share a node, a zone spread, its own priority class
    (shipped), the PDB; rollouts need no extra node."""
    deployment = the(WEBHOOK, "Deployment")
    spec = deployment["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert spec["replicas"] >= 2
    [term] = template["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], labels)
    [zone] = template["spec"]["topologySpreadConstraints"]
    assert zone["topologyKey"] == "topology.kubernetes.io/zone"
    assert selects(zone["labelSelector"], labels)
    priority = the(WEBHOOK, "PriorityClass")
    assert template["spec"]["priorityClassName"] == priority["metadata"]["name"]
    assert 0 < priority["value"] < 1_000_000_000  # user-definable, below the system classes
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    budget = the(WEBHOOK, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"], labels)


def test_the_webhook_runs_hardened_without_api_access_in_its_own_namespace() -> None:
    """2 replicas, a PDB, restricted context, HTTPS probes, no token, no RBAC objects."""
    objects = built(WEBHOOK)
    assert not [o for o in objects if o["kind"] in ("Role", "ClusterRole", "RoleBinding",
                                                    "ClusterRoleBinding", "ServiceAccount")]  # fmt: skip
    for obj in objects:
        if obj["kind"] not in (
            "Namespace",
            "PriorityClass",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ):
            assert obj["metadata"]["namespace"] == OWN_NAMESPACE, obj["kind"]
    deployment = the(WEBHOOK, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    template = deployment["spec"]["template"]
    assert template["spec"]["automountServiceAccountToken"] is False
    budget = the(WEBHOOK, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"], template["metadata"]["labels"])
    [container] = template["spec"]["containers"]
    assert HARDENED.items() <= container["securityContext"].items()
    assert container["image"] == DEFAULT_IMAGE
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["WARMGATE_WEBHOOK_IMAGE"] == DEFAULT_IMAGE
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
        assert container[probe]["httpGet"]["path"] == path


@pytest.mark.parametrize(
    "names", [{}, {"namePrefix": "shop-", "nameSuffix": "-v2"}], ids=["as-is", "renamed"]
)
def test_a_workload_built_with_the_adoption_component_gets_warmgate(
    tmp_path: Path, names: dict[str, str]
) -> None:
    """The component annotates the pod template and ships the ConfigMap the webhook then mounts,
    under the name the app's kustomization gives it."""
    (tmp_path / "app.yaml").write_text((SAMPLES / "heritage-app.yaml").read_text())
    component = os.path.relpath(ADOPTION, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["app.yaml"], "components": [component], **names})
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["warmgate.io/inject"] == "enabled"
    assert "warmgate.io/inject" not in annotations
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    assert annotations["warmgate.io/config"] in config_maps
    pod = deployment_pod(annotations)
    pod["metadata"]["labels"].update(labels)
    pod["spec"]["containers"] = deployment["spec"]["template"]["spec"]["containers"]
    review = {"kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod,
              "operation": "CREATE", "namespace": "shop"}  # fmt: skip
    decision = decide(review, InjectOptions(config_map="warmgate"), namespace_opted_in=False)
    assert decision.outcome is Outcome.MUTATED
    after = jsonpatch.apply_patch(pod, list(decision.patch))
    [volume] = [v for v in after["spec"]["volumes"] if v["name"] == "warmgate-config"]
    assert volume["configMap"]["name"] == annotations["warmgate.io/config"]


@pytest.mark.parametrize("value", ["disabled", "false"])
def test_the_adoption_component_leaves_an_existing_opt_out_alone(
    tmp_path: Path, value: str
) -> None:
    """A pod template that opts out keeps its annotation as written, and the webhook leaves the
    pods alone: the opt-out annotation wins over the component's opt-in label."""
    docs = list(yaml.safe_load_all((SAMPLES / "heritage-app.yaml").read_text()))
    [app] = [doc for doc in docs if doc and doc["kind"] == "Deployment"]
    app["spec"]["template"]["metadata"]["annotations"] = {"warmgate.io/inject": value}
    (tmp_path / "app.yaml").write_text(yaml.safe_dump_all([doc for doc in docs if doc]))
    component = os.path.relpath(ADOPTION, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["app.yaml"], "components": [component]})
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [deployment] = [o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "Deployment"]
    metadata = deployment["spec"]["template"]["metadata"]
    assert metadata["annotations"]["warmgate.io/inject"] == value
    pod = deployment_pod(metadata["annotations"])
    pod["metadata"]["labels"].update(metadata["labels"])
    review = {"kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod,
              "operation": "CREATE", "namespace": "shop"}  # fmt: skip
    decision = decide(review, InjectOptions(config_map="warmgate"), namespace_opted_in=False)
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    assert f"warmgate.io/inject: {value}" in decision.warnings[0]


def test_the_validating_entry_sends_warmgates_config_maps_to_validate() -> None:
    """ConfigMap CREATE/UPDATE, the default name or the component label, to /validate, failing
    open quickly, with the same CA as the mutating entries."""
    configuration = the(WEBHOOK, "ValidatingWebhookConfiguration")
    mutating = the(WEBHOOK, "MutatingWebhookConfiguration")
    annotation = "cert-manager.io/inject-ca-from"
    assert (
        configuration["metadata"]["annotations"][annotation]
        == (mutating["metadata"]["annotations"][annotation])
    )
    [entry] = configuration["webhooks"]
    assert entry["clientConfig"]["service"] == {
        **mutating["webhooks"][0]["clientConfig"]["service"],
        "path": VALIDATE_PATH,
    }
    [rule] = entry["rules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert (rule["apiGroups"], rule["resources"]) == ([""], ["configmaps"])
    assert (entry["failurePolicy"], entry["sideEffects"]) == ("Ignore", "None")
    assert entry["timeoutSeconds"] <= 5
    [condition] = entry["matchConditions"]
    expression = " ".join(condition["expression"].split())
    env = the(WEBHOOK, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    [default] = [item["value"] for item in env if item["name"] == "WARMGATE_WEBHOOK_CONFIG_MAP"]
    assert f"object.metadata.name == '{default}'" in expression
    assert "object.metadata.labels['app.kubernetes.io/component'] == 'warmgate'" in expression
