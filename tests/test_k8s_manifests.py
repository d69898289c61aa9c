"""k8s/ and `warmgate inject` output against the Kubernetes JSON schemas, offline.

The schemas ship inside the kubernetes-validate package (no network needed). Validation is
strict (unknown fields are errors) for the oldest Kubernetes with native sidecars on by default
(1.29), the one where they are GA (1.33) and the newest the package knows. Custom resources such as the Prometheus Operator's
PodMonitor have no schema there: they are checked by hand against the pods they select.
"""

from __future__ import annotations

import functools
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helpers import REPO, run_cli
from tests.kubectl import assert_go_reads_as_python, go_decode, kubectl, pyyaml_view
from tests.pss import violations
from warmgate.config.target import Target
from warmgate.kube.inject import DEFAULT_IMAGE, MARKER, InjectOptions, inject_text

K8S = REPO / "k8s"
BASE = K8S / "base"
MONITORING = K8S / "monitoring"
OPERATOR = K8S / "variants" / "prometheus-operator"
OPENSHIFT = K8S / "variants" / "openshift"
EXAMPLES = REPO / "examples"
SAMPLES = REPO / "tests" / "samples"
VERSIONS = tuple(
    sorted(
        {
            "1.29",
            "1.33",
            kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version()),
        },
        key=lambda version: tuple(int(part) for part in version.split(".")),
    )
)
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}
"""Kinds whose schemas are not Kubernetes' own (CRDs): checked by hand below."""
HARDENED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def kustomize_dirs() -> list[Path]:
    """Every directory under k8s/ with a kustomization.yaml."""
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def kustomize_resources(directory: Path) -> list[Path]:
    """The files a kustomization lists, following directory entries, without kustomize."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found: list[Path] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        found.extend(kustomize_resources(path) if path.is_dir() else [path])
    return found


def objects(path: Path) -> list[dict[str, Any]]:
    """The objects in a YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifest_objects() -> list[tuple[str, dict[str, Any]]]:
    """(file:index, object) for every object in every listed manifest under k8s/."""
    seen: dict[Path, None] = {}
    for directory in kustomize_dirs():
        seen.update(dict.fromkeys(kustomize_resources(directory)))
    return [
        (f"{path.relative_to(REPO)}:{index}", obj)
        for path in seen
        for index, obj in enumerate(objects(path))
    ]


def validate(obj: dict[str, Any], where: str) -> None:
    """Validate ``obj`` strictly against every version in :data:`VERSIONS`.

    A ``List`` (as ``kubectl get -o yaml`` writes) has no schema of its own; its items do.
    """
    if obj["apiVersion"] == "v1" and obj["kind"] == "List":
        for index, item in enumerate(obj["items"]):
            validate(item, f"{where}, item {index}")
        return
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{where} is not valid Kubernetes {version}: {path}: {exc.message}")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment."""
    return dict(obj["spec"]["template"]["spec"])


def test_the_schemas_ship_inside_the_package() -> None:
    """Validation needs no network: the JSON schemas for 1.29 onward are package data."""
    schemas = files("kubernetes_validate") / "kubernetes-json-schema"
    for version in VERSIONS:
        strict = schemas / f"v{version}.0-local-strict"
        assert (strict / "deployment-apps-v1.json").is_file(), strict
        assert (strict / "_definitions.json").is_file(), strict


def kustomize_patches(directory: Path) -> list[Path]:
    """The patch and transformer-configuration files a kustomization (or component) names."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    patches = kustomization.get("patches", [])
    configurations = [directory / name for name in kustomization.get("configurations", [])]
    return [
        *[(directory / patch["path"]).resolve() for patch in patches if "path" in patch],
        *[path.resolve() for path in configurations],
    ]


def test_every_manifest_file_is_listed_in_its_kustomization() -> None:
    """No YAML file under k8s/ is left out of the kustomization next to it, and none is missing."""
    for directory in kustomize_dirs():
        listed = {*kustomize_resources(directory), *kustomize_patches(directory)}
        assert all(path.is_file() for path in listed), listed
        here = {p.resolve() for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert here <= listed, f"{directory} has files its kustomization.yaml omits"


def core_objects() -> list[tuple[str, dict[str, Any]]]:
    """Objects whose kinds Kubernetes itself defines (everything but :data:`CUSTOM_KINDS`)."""
    return [
        (where, obj)
        for where, obj in manifest_objects()
        if (obj["apiVersion"], obj["kind"]) not in CUSTOM_KINDS
    ]


@pytest.mark.parametrize(
    ("where", "obj"), [pytest.param(*item, id=item[0]) for item in core_objects()]
)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    where: str, obj: dict[str, Any]
) -> None:
    """Each Kubernetes object in k8s/ is valid for Kubernetes 1.29 and the newest, strictly."""
    validate(obj, where)


def test_the_validator_rejects_what_kubernetes_would() -> None:
    """A misspelt field in a sidecar fails strict validation, so the checks above can fail."""
    [deployment] = objects(BASE / "deployment.yaml")
    pod_spec(deployment)["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicyy"):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_the_only_custom_resources_are_the_pod_monitor_the_rules_and_the_certificate() -> None:
    """CRDs have no schema in the package; each one present must be checked by hand (below, and
    in tests/test_webhook_manifests.py)."""
    custom = sorted(
        (obj["kind"], obj["metadata"]["name"])
        for _, obj in manifest_objects()
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS
    )
    assert custom == [
        ("Certificate", "warmgate-webhook"),
        ("Issuer", "warmgate-webhook"),
        ("PodMonitor", "heritage-app-warmgate"),
        ("PrometheusRule", "warmgate"),
    ]


@functools.cache
def built(directory: Path) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize DIRECTORY`` builds."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def the(directory: Path, kind: str) -> dict[str, Any]:
    """The one object of ``kind`` a kustomization builds."""
    [obj] = [obj for obj in built(directory) if obj["kind"] == kind]
    return obj


def test_the_pod_monitor_scrapes_the_sidecar_and_carries_the_selector_label() -> None:
    """The PodMonitor scrapes the sidecar's port and carries the podMonitorSelector label."""
    monitor = the(OPERATOR, "PodMonitor")
    deployment = the(OPERATOR, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    ports = {
        port["name"]
        for container in pod_spec(deployment)["initContainers"]
        for port in container.get("ports", [])
    }
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        the(OPERATOR, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    )


@pytest.mark.parametrize("directory", kustomize_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_one_scrape_method_per_kustomization(directory: Path) -> None:
    """A kustomization scrapes warmgate through annotations or a PodMonitor, never both."""
    objs = built(directory)
    annotated = [
        obj["metadata"]["name"]
        for obj in objs
        if obj["kind"] == "Deployment"
        and "prometheus.io/scrape" in obj["spec"]["template"]["metadata"].get("annotations", {})
    ]
    monitors = [obj for obj in objs if obj["kind"] == "PodMonitor"]
    assert not (annotated and monitors), f"{directory}: scraped twice"
    if annotated:
        [deployment] = [obj for obj in objs if obj["kind"] == "Deployment"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == "8099"


def test_the_prometheus_rule_holds_the_plain_rule_file() -> None:
    """The PrometheusRule's spec is exactly k8s/monitoring/alerts.rules.yml."""
    rules = yaml.safe_load((MONITORING / "alerts.rules.yml").read_text())
    assert the(OPERATOR, "PrometheusRule")["spec"] == rules


@pytest.mark.parametrize("directory", kustomize_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_shipped_pod_meets_pod_security_restricted(directory: Path) -> None:
    """Every pod template a kustomization builds, app containers included, is restricted."""
    for obj in built(directory):
        if obj["kind"] == "Deployment":
            assert violations(obj["spec"]["template"]) == [], obj["metadata"]["name"]


def test_the_restricted_checks_can_fail() -> None:
    """A pod with a root, privileged, hostPath, capability-adding container is refused."""
    template = {
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": "bad", "securityContext": {
                "privileged": True, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}}}],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        }
    }  # fmt: skip
    found = violations(template)
    for expected in ("hostNetwork is true", "privileged is true", "runAsUser is 0",
                     "does not drop ALL", "allowPrivilegeEscalation is not false",
                     "is a hostPath", "seccomp profile", "SYS_ADMIN"):  # fmt: skip
        assert any(expected in v for v in found), expected


@pytest.mark.parametrize(
    "args", [[], ["--mode", "init"], ["--run-as-user", "none"], ["--env-from-secret", "db"]]
)
def test_inject_output_meets_pod_security_restricted(args: list[str]) -> None:
    """inject's output for a restricted app is restricted, in every mode and option."""
    result = run_cli("inject", str(SAMPLES / "heritage-app.yaml"), *args)
    assert result.returncode == 0, result.stderr
    [deployment] = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"]
    assert violations(deployment["spec"]["template"]) == []


@pytest.mark.parametrize("sample", ["workloads.yaml", "platform.yaml"])
def test_inject_never_adds_a_pod_security_breach(sample: str) -> None:
    """For apps that are not restricted themselves, inject's additions add no breach of their own."""
    text = (SAMPLES / sample).read_text()
    result = run_cli("inject", "-", "--kind", "Deployment", "--kind", "StatefulSet", stdin=text)
    assert result.returncode == 0, result.stderr
    before = [
        d for d in yaml.safe_load_all(text) if d and d["kind"] in ("Deployment", "StatefulSet")
    ]
    after = [d for d in yaml.safe_load_all(result.stdout)
             if d and d["kind"] in ("Deployment", "StatefulSet")]  # fmt: skip
    assert len(before) == len(after) > 0
    for old, new in zip(before, after, strict=True):
        added = [v for v in violations(new["spec"]["template"]) if "container warmgate" in v]
        assert added == []
        assert violations(new["spec"]["template"]) == violations(old["spec"]["template"])


def test_the_openshift_variant_leaves_the_user_to_the_platform() -> None:
    """OpenShift: no runAsUser/runAsGroup on warmgate, still restricted, else the base."""
    base, openshift = the(BASE, "Deployment"), the(OPENSHIFT, "Deployment")
    context = pod_spec(openshift)["initContainers"][0]["securityContext"]
    assert "runAsUser" not in context
    assert "runAsGroup" not in context
    assert violations(openshift["spec"]["template"]) == []
    for obj in (base, openshift):
        pod_spec(obj)["initContainers"][0]["securityContext"].pop("runAsUser", None)
        pod_spec(obj)["initContainers"][0]["securityContext"].pop("runAsGroup", None)
    assert openshift == base


def warmgate_containers() -> list[tuple[str, dict[str, Any]]]:
    """(file/name, container) for every warmgate container in k8s/."""
    return [
        (f"{where}/{container['name']}", container)
        for where, obj in manifest_objects()
        if obj["kind"] == "Deployment"
        for container in pod_spec(obj).get("initContainers", [])
        if container["name"].startswith("warmgate")
    ]


@pytest.mark.parametrize(
    ("where", "container"), [pytest.param(*item, id=item[0]) for item in warmgate_containers()]
)
def test_every_warmgate_container_is_hardened_and_bounded(
    where: str, container: dict[str, Any]
) -> None:
    """Non-root numeric user, read-only root, no privileges, a memory limit, no startupProbe."""
    context = container["securityContext"]
    assert HARDENED.items() <= context.items(), where
    assert isinstance(context["runAsUser"], int), where
    assert context["runAsUser"] > 0, where
    assert "memory" in container["resources"]["limits"], where
    assert "cpu" not in container["resources"]["limits"], where
    assert "startupProbe" not in container, where
    assert container["image"] == DEFAULT_IMAGE, where
    if container["args"][0] in {"run", "serve"}:
        assert container["restartPolicy"] == "Always", where


def test_the_example_deployment_is_what_inject_writes() -> None:
    """k8s/base/deployment.yaml's sidecar, volumes and marker equal inject's for the bare app
    (with Events, and the memory limit they need)."""
    options = InjectOptions(events=True, memory_limit="160Mi")
    injected = yaml.safe_load_all(inject_text((SAMPLES / "heritage-app.yaml").read_text(),
                                              options).text)  # fmt: skip
    [from_inject] = [doc for doc in injected if doc and doc["kind"] == "Deployment"]
    [example] = objects(BASE / "deployment.yaml")
    assert pod_spec(example)["initContainers"] == pod_spec(from_inject)["initContainers"]
    annotations = example["spec"]["template"]["metadata"]["annotations"]
    assert annotations[MARKER] == from_inject["spec"]["template"]["metadata"]["annotations"][MARKER]
    assert pod_spec(example)["volumes"] == pod_spec(from_inject)["volumes"]
    assert pod_spec(example)["containers"] == pod_spec(from_inject)["containers"]


def warmup_configs() -> list[tuple[str, str]]:
    """(where, text) of every warmgate.yaml held in a ConfigMap under k8s/."""
    return [
        (where, obj["data"]["warmgate.yaml"])
        for where, obj in manifest_objects()
        if obj["kind"] == "ConfigMap" and "warmgate.yaml" in obj.get("data", {})
    ]


@pytest.mark.parametrize(
    ("where", "text"), [pytest.param(*item, id=item[0]) for item in warmup_configs()]
)
def test_every_warmup_config_passes_warmgate_validate(
    where: str, text: str, tmp_path: Path
) -> None:
    """The configs in the ConfigMaps are valid warmgate configs (`warmgate validate` exits 0)."""
    config = yaml.safe_load(text)
    if any("sql" in target for target in config["targets"]) and "sql" not in Target.model_fields:
        pytest.skip(f"{where} uses SQL targets, which this warmgate does not support yet")
    path = tmp_path / "warmgate.yaml"
    path.write_text(text)
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 0, f"{where}: {result.stderr}"


@pytest.mark.parametrize("mode", ["sidecar", "init"])
@pytest.mark.parametrize("sample", ["heritage-app.yaml", "workloads.yaml"])
def test_inject_output_validates_against_the_kubernetes_schemas(sample: str, mode: str) -> None:
    """Every object `warmgate inject` writes, in both modes, is valid for 1.29 and the newest."""
    result = run_cli("inject", str(SAMPLES / sample), "--mode", mode)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert docs
    assert_go_reads_as_python(result.stdout, f"inject --mode {mode} {sample}")
    for index, obj in enumerate(docs):
        validate(obj, f"inject --mode {mode} {sample}:{index}")


@pytest.mark.parametrize("directory", kustomize_dirs(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomize_builds_every_directory(directory: Path) -> None:
    """`kubectl kustomize` builds the same objects as the listed files."""
    names = sorted((d["kind"], d["metadata"]["name"]) for d in built(directory))
    listed = sorted(
        (obj["kind"], obj["metadata"]["name"])
        for path in kustomize_resources(directory)
        for obj in objects(path)
    )
    assert names == listed


def transformer_configurations() -> set[Path]:
    """The kustomize transformer configurations under k8s/: kustomize's own files, no objects."""
    return {
        (directory / name).resolve()
        for directory in kustomize_dirs()
        for name in yaml.safe_load((directory / "kustomization.yaml").read_text()).get(
            "configurations", []
        )
    }


@pytest.mark.parametrize(
    "path",
    sorted(
        {*K8S.rglob("*.yaml"), *(REPO / "tests" / "samples").glob("*.yaml")}
        - transformer_configurations()
    ),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_every_manifest_reads_the_same_in_go_and_python(path: Path) -> None:
    """kubectl's Go decoder, warmgate's reader and plain PyYAML agree on every value."""
    text = path.read_text()
    assert go_decode(text) == pyyaml_view(text)
    assert_go_reads_as_python(text, str(path))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_reads_the_same_in_go_and_python(path: Path) -> None:
    """An example config, given a Kubernetes header so kubectl takes it, types alike in Go."""
    header = "apiVersion: example.com/v1\nkind: WarmgateConfig\nmetadata:\n  name: example\n"
    [go] = go_decode(header + path.read_text())
    for key in ("apiVersion", "kind", "metadata"):
        del go[key]
    [python] = pyyaml_view(path.read_text())
    assert go == python
