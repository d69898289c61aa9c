"""`warmgate doctor` as a subprocess: what warmgate ships is clean, each broken set-up is named."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, run_cli
from tests.kubectl import kubectl

K8S = REPO / "k8s"
EXAMPLES = REPO / "examples"

PLAIN = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  progressDeadlineSeconds: 900
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: registry.example.com/web:1.0
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /healthz, port: http}}
"""

CONFIG = """\
targets:
  - http: {url: "http://127.0.0.1:8080/items/{{ randint(1, 100) }}"}
load: {concurrency: 8}
gate: {p95: 200ms, timeout: 4m}
wait: {timeout: 4m}
"""


def sound() -> list[dict[str, Any]]:
    """A warmgate set-up with nothing wrong: native sidecar, its ConfigMap, a PodMonitor."""
    deployment = yaml.safe_load(PLAIN)
    deployment["metadata"]["namespace"] = "shop"
    deployment["spec"]["template"]["spec"]["initContainers"] = [{
        "name": "warmgate", "image": "ghcr.io/warmgate/warmgate:0.1.0", "restartPolicy": "Always",
        "args": ["run", "--config", "/etc/warmgate/warmgate.yaml", "--status-dir", "/warmgate"],
        "ports": [{"name": "warmgate", "containerPort": 8099}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "warmgate"}},
        "volumeMounts": [{"name": "warmgate-status", "mountPath": "/warmgate"},
                         {"name": "warmgate-config", "mountPath": "/etc/warmgate"}],
    }]  # fmt: skip
    deployment["spec"]["template"]["spec"]["volumes"] = [
        {"name": "warmgate-status", "emptyDir": {}},
        {"name": "warmgate-config", "configMap": {"name": "web-warmgate"}},
    ]
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "web-warmgate", "namespace": "shop"},
        "data": {"warmgate.yaml": CONFIG},
    }  # fmt: skip
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "web-warmgate", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "podMetricsEndpoints": [{"port": "warmgate", "path": "/metrics"}]},
    }  # fmt: skip
    return [deployment, config_map, monitor]


def write(tmp_path: Path, objects: list[dict[str, Any]], name: str = "set-up.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False), encoding="utf-8")
    return path


def doctor_json(*args: str, stdin: str | None = None) -> tuple[int, dict[str, Any]]:
    done = run_cli("doctor", "--output", "json", *args, stdin=stdin)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def sidecar(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return objects[0]["spec"]["template"]["spec"]["initContainers"][0]


def config_of(objects: list[dict[str, Any]], text: str) -> None:
    objects[1]["data"]["warmgate.yaml"] = text


# Each broken set-up: how to break the sound one, and the finding that must name it.
BROKEN: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str, str, str]] = {
    "readiness never asks warmgate": (
        lambda o: sidecar(o).pop("readinessProbe"),
        "WG001", "deployment/web", "spec.template.spec.initContainers[0].readinessProbe",
    ),
    "progress deadline too short": (
        lambda o: config_of(o, CONFIG.replace("timeout: 4m}\nwait: {timeout: 4m", "timeout: 9m}\nwait: {timeout: 9m")),
        "WG002", "deployment/web", "spec.progressDeadlineSeconds",
    ),
    "startup probe on the sidecar": (
        lambda o: sidecar(o).update(startupProbe={"httpGet": {"path": "/readyz", "port": 8099}}),
        "WG003", "deployment/web", "spec.template.spec.initContainers[0].startupProbe",
    ),
    "monitor selects nothing": (
        lambda o: o[2]["spec"]["selector"]["matchLabels"].update(app="webshop"),
        "WG004", "podmonitor/web-warmgate", "spec.selector",
    ),
    "scrape annotation on the app's port": (
        lambda o: (o.pop(2), o[0]["spec"]["template"]["metadata"].update(annotations={
            "prometheus.io/scrape": "true", "prometheus.io/port": "8080"})),
        "WG005", "deployment/web", "spec.template.metadata.annotations['prometheus.io/port']",
    ),
    "config map not among the inputs": (
        lambda o: o[0]["spec"]["template"]["spec"]["volumes"][1]["configMap"].update(name="web-warmgte"),
        "WG006", "deployment/web", "spec.template.spec.volumes[1].configMap.name",
    ),
    "config validate rejects": (
        lambda o: config_of(o, CONFIG.replace("p95: 200ms", "p95: fast")),
        "WG007", "deployment/web", "spec.template.spec.initContainers[0].args",
    ),
    "a flag in args the CLI refuses": (
        lambda o: sidecar(o)["args"].extend(["--concurrency", "many"]),
        "WG007", "deployment/web", "spec.template.spec.initContainers[0].args",
    ),
    "a WARMGATE_ variable the loader refuses": (
        lambda o: sidecar(o).update(env=[{"name": "WARMGATE_P95", "value": "fast"}]),
        "WG007", "deployment/web", "spec.template.spec.initContainers[0].env",
    ),
    "cpu limit too small for the concurrency in args": (
        lambda o: (sidecar(o)["args"].extend(["--concurrency", "64"]),
                   sidecar(o).update(resources={"limits": {"cpu": "1"}})),
        "WG008", "deployment/web", "spec.template.spec.initContainers[0].resources.limits.cpu",
    ),
    "run as a classic init container": (
        lambda o: sidecar(o).pop("restartPolicy"),
        "WG009", "deployment/web", "spec.template.spec.initContainers[0].restartPolicy",
    ),
    "prime as a native sidecar": (
        lambda o: sidecar(o).update(args=["prime", "--config", "/etc/warmgate/warmgate.yaml"]),
        "WG010", "deployment/web", "spec.template.spec.initContainers[0].args",
    ),
    "probe on a port warmgate does not listen on": (
        lambda o: sidecar(o)["args"].extend(["--port", "9000"]),
        "WG012", "deployment/web", "spec.template.spec.initContainers[0].readinessProbe.httpGet.port",
    ),
    "exec probe without the status volume": (
        lambda o: (sidecar(o).pop("readinessProbe"),
                   o[0]["spec"]["template"]["spec"]["containers"][0].update(
                       readinessProbe={"exec": {"command": ["cat", "/warmgate/ready"]}})),
        "WG013", "deployment/web", "spec.template.spec.containers[0].volumeMounts",
    ),
}  # fmt: skip


def test_the_sound_set_up_is_clean(tmp_path: Path) -> None:
    done = run_cli("doctor", str(write(tmp_path, sound())))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines() == [
        "doctor: 1 workload with warmgate in 3 objects: no problems found"
    ]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_set_up_exits_1_naming_the_object_and_the_field(
    case: str, tmp_path: Path
) -> None:
    breaks, rule, obj, path = BROKEN[case]
    objects = sound()
    breaks(objects)
    code, report = doctor_json(str(write(tmp_path, objects)))
    assert code == 1, report
    assert {"id": rule, "object": obj, "path": path} in [
        {key: f[key] for key in ("id", "object", "path")} for f in report["findings"]
    ], report["findings"]
    for finding in report["findings"]:
        assert set(finding) >= {"id", "severity", "object", "path", "message", "fix"}
        assert finding["severity"] in ("error", "warning", "info")
    # The text report names them too, with the summary last.
    text = run_cli("doctor", str(tmp_path / "set-up.yaml"))
    assert text.returncode == 1
    assert f"{rule} {obj}" in text.stdout
    assert f"  at {path}" in text.stdout
    assert re.match(
        r"doctor: 1 workload with warmgate in \d+ objects: ", text.stdout.splitlines()[-1]
    )


def test_the_loaders_sentence_is_the_finding(tmp_path: Path) -> None:
    objects = sound()
    config_of(objects, CONFIG.replace("p95: 200ms", "p95: fast"))
    _, report = doctor_json(str(write(tmp_path, objects)))
    (finding,) = report["findings"]
    assert "gate.p95: 'fast' is not a duration" in finding["message"]
    # A file the loader names is named by its path in the pod, not where doctor put it.
    config_of(objects, "- not a mapping\n")
    _, report = doctor_json(str(write(tmp_path, objects)))
    (finding,) = report["findings"]
    assert "--config: /etc/warmgate/warmgate.yaml must hold a mapping" in finding["message"]
    assert "warmgate-doctor-" not in finding["message"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_in_a_containers_args_is_a_finding_not_doctors_own_help(
    flag: str, tmp_path: Path
) -> None:
    """``run --help`` in a pod prints help and exits: a finding, and the JSON stays JSON."""
    objects = sound()
    sidecar(objects)["args"] = [*sidecar(objects)["args"], flag]
    code, report = doctor_json(str(write(tmp_path, objects)))
    assert code == 1
    (finding,) = [item for item in report["findings"] if item["id"] == "WG007"]
    assert flag in finding["message"]
    assert finding["path"].endswith("initContainers[0].args")


def test_doctors_own_environment_does_not_leak_into_the_pods(tmp_path: Path) -> None:
    done = run_cli("doctor", str(write(tmp_path, sound())), env={"WARMGATE_P95": "fast"})
    assert done.returncode == 0, done.stdout


def test_secrets_and_unseen_sources_get_a_placeholder(tmp_path: Path) -> None:
    objects = sound()
    config_of(objects, CONFIG.replace("127.0.0.1:8080", "${APP_HOST}:8080"))
    code, report = doctor_json(str(write(tmp_path, objects)))
    assert code == 1
    assert "${APP_HOST}" in report["findings"][0]["message"]  # not set anywhere: refused
    sidecar(objects)["env"] = [
        {"name": "APP_HOST", "valueFrom": {"secretKeyRef": {"name": "app", "key": "host"}}}
    ]
    code, report = doctor_json(str(write(tmp_path, objects)))
    assert code == 0, report


def test_a_multi_document_stream_on_stdin_a_list_and_a_directory(tmp_path: Path) -> None:
    objects = sound()
    stream = yaml.safe_dump_all(objects)
    assert doctor_json("-", stdin=stream)[0] == 0
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    assert doctor_json("-", stdin=json.dumps(listed))[0] == 0
    directory = tmp_path / "manifests"
    directory.mkdir()
    for index, obj in enumerate(objects):
        write(directory, [obj], f"{index}.yaml")
    code, report = doctor_json(str(directory))
    assert code == 0, report
    assert report["summary"] == {
        "objects": 3, "workloads": 1, "errors": 0, "warnings": 0, "infos": 0
    }  # fmt: skip


@pytest.mark.parametrize(
    ("given", "stdin", "sentence"),
    [
        (["/no/such/file.yaml"], None, "does not exist"),
        (["-"], "kind: [", "is not valid YAML"),
        (["-"], "- just\n- a list\n", "is not a Kubernetes object"),
        ([str(EXAMPLES / "sidecar-http.yaml")], None, "It looks like a warmgate config"),
        ([str(K8S / "base")], None, "kubectl kustomize"),
    ],
)
def test_unreadable_input_exits_2_with_one_sentence(
    given: list[str], stdin: str | None, sentence: str
) -> None:
    done = run_cli("doctor", *given, stdin=stdin)
    assert done.returncode == 2, done.stdout
    assert sentence in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def kustomizations() -> list[Path]:
    """Every kustomization under k8s/, whatever is there when the tests run."""
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def kustomize(directory: Path) -> str:
    built = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return built.stdout


@pytest.mark.parametrize("directory", kustomizations(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_kustomization_under_k8s_is_clean(directory: Path) -> None:
    done = run_cli("doctor", "-", stdin=kustomize(directory))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no problems found" in done.stdout.splitlines()[-1]


def test_the_webhook_adoption_component_on_an_app_is_clean_as_the_webhook_mutates_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "deployment.yaml").write_text(PLAIN)
    component = os.path.relpath(K8S / "webhook-adoption", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [deployment.yaml]\ncomponents: [{component}]\n"
    )
    code, report = doctor_json("-", stdin=kustomize(tmp_path))
    assert code == 0, report
    assert report["summary"]["workloads"] == 1  # the webhook's sidecar was seen and checked


def test_an_annotation_the_webhook_refuses_is_named(tmp_path: Path) -> None:
    deployment = yaml.safe_load(PLAIN)
    deployment["spec"]["template"]["metadata"]["annotations"] = {
        "warmgate.io/inject": "enabled",
        "warmgate.io/url": "http://127.0.0.1:8080/",
        "warmgate.io/p95": "fast",
    }
    code, report = doctor_json(str(write(tmp_path, [deployment])))
    assert code == 1
    (finding,) = report["findings"]
    assert finding["id"] == "WG007"
    assert finding["path"] == "spec.template.metadata.annotations['warmgate.io/p95']"
    assert "'fast' is not a duration" in finding["message"]
    deployment["spec"]["template"]["metadata"]["annotations"]["warmgate.io/p95"] = "200ms"
    code, report = doctor_json(str(write(tmp_path, [deployment])))
    assert code == 0, report
    assert report["summary"]["workloads"] == 1


@pytest.mark.parametrize("mode", ["sidecar", "init"])
def test_injects_output_for_a_plain_deployment_is_clean(mode: str, tmp_path: Path) -> None:
    plain = tmp_path / "deployment.yaml"
    plain.write_text(PLAIN)
    injected = run_cli("inject", "--mode", mode, str(plain))
    assert injected.returncode == 0, injected.stderr
    code, report = doctor_json("-", stdin=injected.stdout)
    assert code == 0, report
    # Alone, the ConfigMap inject asks for is not checked (an info); with it, it is.
    assert [f["id"] for f in report["findings"] if f["id"] == "WG006"] == ["WG006"]
    config = tmp_path / "warmgate.yaml"
    config.write_text(CONFIG)
    config_map = subprocess.run(
        [kubectl(), "create", "configmap", "web-warmgate", f"--from-file=warmgate.yaml={config}",
         "--dry-run=client", "-o", "yaml"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    code, report = doctor_json("-", stdin=injected.stdout + "---\n" + config_map)
    assert code == 0, report
    assert "WG006" not in [f["id"] for f in report["findings"]]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_clean_in_the_set_up_it_is_meant_for(
    example: Path, tmp_path: Path
) -> None:
    """Each example config, in a ConfigMap beside the Deployment inject writes for it (an init
    container for the init-* ones, the sidecar otherwise; its secrets from a Secret)."""
    plain = tmp_path / "deployment.yaml"
    plain.write_text(PLAIN)
    mode = "init" if example.name.startswith("init-") else "sidecar"
    injected = run_cli(
        "inject", "--mode", mode, "--config-map", "web-warmgate", "--env-from-secret",
        "web-secrets", str(plain),
    )  # fmt: skip
    assert injected.returncode == 0, injected.stderr
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-warmgate"},
        "data": {"warmgate.yaml": example.read_text()},
    }  # fmt: skip
    code, report = doctor_json("-", stdin=injected.stdout + "---\n" + yaml.safe_dump(config_map))
    assert code == 0, report
    assert all(f["severity"] == "info" for f in report["findings"])


def test_a_namespace_labelled_for_the_webhook_and_a_misspelt_opt_in(tmp_path: Path) -> None:
    namespace = {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"warmgate.io/inject": "enabled"}},
    }  # fmt: skip
    labelled = yaml.safe_load(PLAIN)
    labelled["metadata"]["namespace"] = "shop"
    code, report = doctor_json(str(write(tmp_path, [namespace, labelled])))
    assert code == 0, report  # the webhook's sidecar, from its default ConfigMap (not given)
    assert report["summary"]["workloads"] == 1
    assert {f["id"] for f in report["findings"]} == {"WG005", "WG006"}
    misspelt = yaml.safe_load(PLAIN)
    misspelt["spec"]["template"]["metadata"]["annotations"] = {"warmgate.io/inject": "enable"}
    code, report = doctor_json(str(write(tmp_path, [misspelt])))
    assert code == 1
    (finding,) = report["findings"]
    assert finding["id"] == "WG014"
    assert finding["path"] == "spec.template.metadata.annotations['warmgate.io/inject']"
    assert "neither enabled/true nor disabled/false" in finding["message"]


@pytest.mark.parametrize(
    "annotations",
    [
        {"warmgate.io/inject": "enabled"},
        {"warmgate.io/inject": "enabled", "warmgate.io/config": "web-warmgate"},
        {
            "warmgate.io/inject": "enabled",
            "warmgate.io/url": "http://127.0.0.1:8080/",
            "warmgate.io/p95": "200ms",
        },
    ],
    ids=["default config map", "named config map", "inline config"],
)
def test_the_pods_the_webhook_writes_are_clean(annotations: dict[str, str], tmp_path: Path) -> None:
    """The pod the webhook's own decision makes (its patch applied), as the API server stores it."""
    import jsonpatch

    from warmgate.kube.admission import Outcome, decide
    from warmgate.kube.inject_parts import InjectOptions

    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": yaml.safe_load(PLAIN)["spec"]["template"]["spec"],
    }  # fmt: skip
    review = {"uid": "1", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": pod}
    decision = decide(review, InjectOptions(config_map="warmgate"), namespace_opted_in=False)
    assert decision.outcome is Outcome.MUTATED
    mutated = jsonpatch.apply_patch(pod, list(decision.patch))
    code, report = doctor_json(str(write(tmp_path, [mutated])))
    assert code == 0, report
    assert report["summary"]["workloads"] == 1
    assert all(finding["severity"] == "info" for finding in report["findings"])
