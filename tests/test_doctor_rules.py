"""The rules of `warmgate doctor` (kube/rules.py, kube/scrape_rules.py), fed plain data."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from warmgate.kube.diagnosis import (
    RunSettings,
    Severity,
    Workload,
    find_workloads,
    gate_containers,
    selector_matches,
)
from warmgate.kube.rules import (
    CPU_BASE_MILLICORES,
    DEFAULT_PROGRESS_DEADLINE,
    diagnose,
    failing,
    millicores,
    needed_millicores,
)

LOADED = RunSettings(
    port=8099, status_dir="/warmgate", loaded=True, wait_timeout=120, gate_timeout=240,
    jitter=5, concurrency=16,
)  # fmt: skip


def sidecar(**extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "warmgate",
        "image": "ghcr.io/warmgate/warmgate:0.1.0",
        "restartPolicy": "Always",
        "args": ["run", "--config", "/etc/warmgate/warmgate.yaml", "--status-dir", "/warmgate"],
        "ports": [{"name": "warmgate", "containerPort": 8099}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "warmgate"}},
        "volumeMounts": [
            {"name": "warmgate-status", "mountPath": "/warmgate"},
            {"name": "warmgate-config", "mountPath": "/etc/warmgate"},
        ],
    }
    container.update(extra)
    return container


def deployment(**spec: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "initContainers": [sidecar()],
        "containers": [{
            "name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        }],
        "volumes": [
            {"name": "warmgate-status", "emptyDir": {}},
            {"name": "warmgate-config", "configMap": {"name": "web-warmgate"}},
        ],
    }  # fmt: skip
    pod.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod},
        },
    }


CONFIG_MAP = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "web-warmgate", "namespace": "shop"}, "data": {"warmgate.yaml": "x"},
}  # fmt: skip
POD_MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
    "metadata": {"name": "web-warmgate", "namespace": "shop"},
    "spec": {"selector": {"matchLabels": {"app": "web"}}, "podMetricsEndpoints": [{"port": "warmgate"}]},
}  # fmt: skip


def examine(
    *objects: dict[str, Any], settings: RunSettings = LOADED
) -> list[tuple[str, Severity, str, str]]:
    """(id, severity, object, path) of every finding, the warmgate containers given
    ``settings``."""
    workloads = find_workloads(objects)
    for workload in workloads:
        for gate in workload.gates():
            workload.settings[gate.name] = settings
    return [(f.id, f.severity, f.object, f.path) for f in diagnose(workloads, objects)]


def clean(*objects: dict[str, Any]) -> list[dict[str, Any]]:
    return [deployment(), CONFIG_MAP, POD_MONITOR, *objects]


def test_a_sound_native_sidecar_has_no_findings() -> None:
    assert examine(*clean()) == []


def test_wg001_readiness_that_never_asks_warmgate() -> None:
    obj = deployment()
    del obj["spec"]["template"]["spec"]["initContainers"][0]["readinessProbe"]
    assert examine(obj, CONFIG_MAP, POD_MONITOR) == [
        ("WG001", Severity.ERROR, "deployment/web",
         "spec.template.spec.initContainers[0].readinessProbe"),
    ]  # fmt: skip
    probe = {"httpGet": {"path": "/livez", "port": "warmgate"}}
    obj["spec"]["template"]["spec"]["initContainers"][0]["readinessProbe"] = probe
    assert examine(obj, CONFIG_MAP, POD_MONITOR)[0][3].endswith("readinessProbe.httpGet.path")


def test_wg001_is_satisfied_by_the_app_probing_warmgate_or_reading_the_marker() -> None:
    by_port = deployment()
    spec = by_port["spec"]["template"]["spec"]
    del spec["initContainers"][0]["readinessProbe"]
    spec["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8099}}
    assert examine(by_port, CONFIG_MAP, POD_MONITOR) == []
    by_file = copy.deepcopy(by_port)
    spec = by_file["spec"]["template"]["spec"]
    spec["containers"][0]["readinessProbe"] = {"exec": {"command": ["cat", "/warmgate/ready"]}}
    spec["containers"][0]["volumeMounts"] = [{"name": "warmgate-status", "mountPath": "/warmgate"}]
    assert examine(by_file, CONFIG_MAP, POD_MONITOR) == []


def test_wg012_a_probe_on_readyz_at_a_port_warmgate_does_not_listen_on() -> None:
    obj = deployment()
    probe = {"httpGet": {"path": "/readyz", "port": 8080}}
    obj["spec"]["template"]["spec"]["initContainers"][0]["readinessProbe"] = probe
    found = examine(obj, CONFIG_MAP, POD_MONITOR)
    assert found == [
        ("WG012", Severity.ERROR, "deployment/web",
         "spec.template.spec.initContainers[0].readinessProbe.httpGet.port"),
    ]  # fmt: skip
    # A named port resolves against the probing container's own ports, as the kubelet does.
    app = deployment()
    spec = app["spec"]["template"]["spec"]
    del spec["initContainers"][0]["readinessProbe"]
    spec["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "warmgate"}}
    assert [f[0] for f in examine(app, CONFIG_MAP, POD_MONITOR)] == ["WG012"]


def test_wg002_progress_deadline_shorter_than_the_warm_up_may_take() -> None:
    long = RunSettings(**{**LOADED.__dict__, "wait_timeout": 600, "gate_timeout": 300})
    assert examine(*clean(), settings=long) == [
        ("WG002", Severity.WARNING, "deployment/web", "spec.progressDeadlineSeconds"),
    ]
    obj = deployment()
    obj["spec"]["progressDeadlineSeconds"] = 905
    assert examine(obj, CONFIG_MAP, POD_MONITOR, settings=long) == []


@given(
    wait=st.floats(1, 3600), gate=st.floats(1, 3600), jitter=st.floats(0, 120),
    deadline=st.one_of(st.none(), st.integers(1, 10_000)),
)  # fmt: skip
def test_wg002_fires_exactly_when_the_deadline_is_shorter(
    wait: float, gate: float, jitter: float, deadline: int | None
) -> None:
    obj = deployment()
    if deadline is not None:
        obj["spec"]["progressDeadlineSeconds"] = deadline
    settings = RunSettings(
        loaded=True, wait_timeout=wait, gate_timeout=gate, jitter=jitter, concurrency=1,
        status_dir="/warmgate",
    )  # fmt: skip
    found = [f[0] for f in examine(obj, CONFIG_MAP, POD_MONITOR, settings=settings)]
    limit = DEFAULT_PROGRESS_DEADLINE if deadline is None else deadline
    assert ("WG002" in found) == (limit < wait + gate + jitter)


def test_wg003_a_startup_probe_on_the_sidecar() -> None:
    waits = deployment()
    waits["spec"]["template"]["spec"]["initContainers"][0]["startupProbe"] = {
        "httpGet": {"path": "/readyz", "port": "warmgate"}
    }
    path = "spec.template.spec.initContainers[0].startupProbe"
    assert examine(waits, CONFIG_MAP, POD_MONITOR) == [
        ("WG003", Severity.ERROR, "deployment/web", path)
    ]
    delays = deployment()
    delays["spec"]["template"]["spec"]["initContainers"][0]["startupProbe"] = {
        "httpGet": {"path": "/livez", "port": "warmgate"}
    }
    assert examine(delays, CONFIG_MAP, POD_MONITOR) == [
        ("WG003", Severity.WARNING, "deployment/web", path)
    ]


def test_wg004_a_monitor_that_selects_no_warmgate_pod() -> None:
    monitor = copy.deepcopy(POD_MONITOR)
    monitor["spec"]["selector"] = {"matchLabels": {"app": "webb"}}
    found = examine(deployment(), CONFIG_MAP, monitor)
    assert ("WG004", Severity.WARNING, "podmonitor/web-warmgate", "spec.selector") in found
    wrong_port = copy.deepcopy(POD_MONITOR)
    wrong_port["spec"]["podMetricsEndpoints"] = [{"port": "http"}]
    assert "WG004" in [f[0] for f in examine(deployment(), CONFIG_MAP, wrong_port)]


def test_wg004_a_service_monitor_through_a_service() -> None:
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "metrics", "port": 8099, "targetPort": "warmgate"}]},
    }  # fmt: skip
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "web-warmgate", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "endpoints": [{"port": "metrics"}]},
    }  # fmt: skip
    assert examine(deployment(), CONFIG_MAP, service, monitor) == []
    assert [f[0] for f in examine(deployment(), CONFIG_MAP, monitor)] == ["WG004", "WG005"]


def test_wg005_nothing_scrapes_warmgate_is_an_info_and_a_wrong_port_a_warning() -> None:
    found = examine(deployment(), CONFIG_MAP)
    assert found == [
        ("WG005", Severity.INFO, "deployment/web", "spec.template.metadata.annotations")
    ]
    assert not failing(diagnose_of(deployment(), CONFIG_MAP))
    annotated = deployment()
    annotated["spec"]["template"]["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8080",
    }  # fmt: skip
    path = "spec.template.metadata.annotations['prometheus.io/port']"
    assert examine(annotated, CONFIG_MAP) == [("WG005", Severity.WARNING, "deployment/web", path)]
    annotated["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "8099"
    assert examine(annotated, CONFIG_MAP) == []


def diagnose_of(*objects: dict[str, Any]) -> list[Any]:
    workloads = find_workloads(objects)
    for workload in workloads:
        for gate in workload.gates():
            workload.settings[gate.name] = LOADED
    return diagnose(workloads, objects)


def test_wg006_a_config_map_not_among_inputs_that_carry_config_maps() -> None:
    other = {**CONFIG_MAP, "metadata": {"name": "other", "namespace": "shop"}}
    path = "spec.template.spec.volumes[1].configMap.name"
    assert examine(deployment(), other, POD_MONITOR) == [
        ("WG006", Severity.WARNING, "deployment/web", path)
    ]
    # inject's output, whose ConfigMaps inject asks for separately: an info.
    injected = deployment()
    injected["spec"]["template"]["metadata"]["annotations"] = {"warmgate.io/injected": "true"}
    assert examine(injected, POD_MONITOR) == [("WG006", Severity.INFO, "deployment/web", path)]
    # ... but a typo among ConfigMaps given is still a warning.
    assert examine(injected, other, POD_MONITOR)[0][1] is Severity.WARNING


def test_wg007_the_loader_refuses_the_config() -> None:
    refused = RunSettings(problem="gate.p95: 'fast' is not a duration.")
    assert examine(*clean(), settings=refused) == [
        ("WG007", Severity.ERROR, "deployment/web", "spec.template.spec.initContainers[0].args")
    ]
    workload = find_workloads([deployment()])[0]
    workload.annotation_problem = ("warmgate.io/p95", "gate.p95: 'fast' is not a duration.")
    found = diagnose([workload], [])
    assert [(f.id, f.path) for f in found if f.id == "WG007"] == [
        ("WG007", "spec.template.metadata.annotations['warmgate.io/p95']")
    ]


def test_wg008_a_cpu_limit_below_what_the_load_needs() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["initContainers"][0]["resources"] = {"limits": {"cpu": "200m"}}
    path = "spec.template.spec.initContainers[0].resources.limits.cpu"
    assert examine(obj, CONFIG_MAP, POD_MONITOR) == [
        ("WG008", Severity.WARNING, "deployment/web", path)
    ]
    obj["spec"]["template"]["spec"]["initContainers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert examine(obj, CONFIG_MAP, POD_MONITOR) == []


@given(st.integers(1, 4096), st.one_of(st.none(), st.floats(0.1, 100_000)))
def test_the_cpu_heuristic_grows_with_the_load(concurrency: int, rate: float | None) -> None:
    needed = needed_millicores(concurrency, rate)
    assert needed > CPU_BASE_MILLICORES
    assert needed_millicores(concurrency + 1, rate) >= needed
    if rate is not None:
        assert needed_millicores(concurrency, rate * 2) > needed


def test_cpu_quantities() -> None:
    assert millicores("500m") == 500
    assert millicores("1") == 1000
    assert millicores("0.25") == 250
    assert millicores("lots") is None


def test_wg009_wg010_wg011_each_command_in_its_place() -> None:
    classic = deployment()
    del classic["spec"]["template"]["spec"]["initContainers"][0]["restartPolicy"]
    assert examine(classic, CONFIG_MAP, POD_MONITOR)[0][:2] == ("WG009", Severity.ERROR)
    assert examine(classic, CONFIG_MAP, POD_MONITOR)[0][3].endswith("[0].restartPolicy")
    primes = deployment()
    spec = primes["spec"]["template"]["spec"]
    spec["initContainers"] = []
    spec["containers"].append(sidecar(args=["prime", "--config", "/etc/warmgate/warmgate.yaml"]))
    assert examine(primes, CONFIG_MAP) == [  # prime serves no metrics: no monitor to aim
        ("WG010", Severity.ERROR, "deployment/web", "spec.template.spec.containers[1].args")
    ]
    plain = deployment()
    spec = plain["spec"]["template"]["spec"]
    container = spec["initContainers"].pop()
    del container["restartPolicy"]
    spec["containers"].append(container)
    assert examine(plain, CONFIG_MAP, POD_MONITOR) == [
        ("WG011", Severity.INFO, "deployment/web", "spec.template.spec.containers[1]")
    ]


def test_wg013_a_marker_reader_without_the_status_volume() -> None:
    obj = deployment()
    spec = obj["spec"]["template"]["spec"]
    del spec["initContainers"][0]["readinessProbe"]
    spec["containers"][0]["readinessProbe"] = {"exec": {"command": ["cat", "/warmgate/ready"]}}
    assert examine(obj, CONFIG_MAP, POD_MONITOR) == [
        ("WG013", Severity.ERROR, "deployment/web", "spec.template.spec.containers[0].volumeMounts")
    ]


def test_warmgate_containers_are_found_however_they_were_added() -> None:
    spec = {
        "initContainers": [
            {"name": "warm", "image": "registry.local/warmgate@sha256:ab", "args": ["prime"]},
            {"name": "x", "image": "busybox", "command": ["sh"]},
        ],
        "containers": [
            {"name": "w", "image": "mirror/warmgate:1", "command": ["/usr/bin/warmgate", "serve"]},
            {"name": "warmgate", "image": "custom", "args": ["webhook"]},
            {"name": "app", "image": "warmgateway:1", "args": ["run"]},
        ],
    }
    assert [(g.name, g.role) for g in gate_containers(spec)] == [("warm", "prime"), ("w", "serve")]


def test_a_workload_without_warmgate_has_nothing_to_say() -> None:
    obj = deployment(initContainers=[])
    assert examine(obj) == []
    assert isinstance(find_workloads([obj])[0], Workload)


labels = st.dictionaries(st.sampled_from("abc"), st.sampled_from("xyz"), max_size=3)


@given(labels, labels)
def test_match_labels_is_a_subset_test(selector: dict[str, str], pod: dict[str, str]) -> None:
    matched = selector_matches({"matchLabels": selector}, pod)
    assert matched == (selector.items() <= pod.items())


@given(labels, st.sampled_from("abc"), st.lists(st.sampled_from("xyz"), max_size=3))
def test_in_and_not_in_are_opposites_for_present_keys(
    pod: dict[str, str], key: str, values: list[str]
) -> None:
    def match(operator: str) -> bool:
        expression = {"key": key, "operator": operator, "values": values}
        return selector_matches({"matchExpressions": [expression]}, pod)

    if key in pod:
        assert match("In") != match("NotIn")
    else:
        assert not match("In")
        assert match("NotIn")
    assert match("Exists") == (key in pod) != match("DoesNotExist")


def test_wg014_pods_that_opt_in_but_the_webhook_leaves_alone() -> None:
    workload = find_workloads([deployment(initContainers=[])])[0]
    workload.webhook_skip = ("warmgate.io/inject", "pod shop/web: skipped: 'enable' is neither")
    found = diagnose([workload], [])
    assert [(f.id, f.severity, f.path) for f in found] == [
        ("WG014", Severity.WARNING, "spec.template.metadata.annotations['warmgate.io/inject']")
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.sampled_from(["", "warmgate", "/readyz", "8099", "run", "Always"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["name", "port", "path", "httpGet", "matchLabels", "items"]), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


@settings(max_examples=40, deadline=None)  # each example loads a config: ~50 ms
@given(st.data())
def test_malformed_manifests_never_crash_the_examination(data: st.DataObject) -> None:
    """Any field of a set-up replaced by any value: findings or a ConfigError, never a crash."""
    from warmgate.cli.doctor import read_args
    from warmgate.cli.main import app
    from warmgate.kernel.errors import ConfigError
    from warmgate.kube.doctor import examine as examine_objects

    config_map = {**CONFIG_MAP, "data": {"warmgate.yaml": "targets: [{http: {url: http://a/}}]"}}
    objects = [deployment(), copy.deepcopy(config_map), copy.deepcopy(POD_MONITOR)]
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(objects) - 1))
        paths = _paths(objects[index])
        *parents, leaf = data.draw(st.sampled_from(paths))
        node: Any = objects[index]
        for key in parents:
            node = node[key]
        node[leaf] = data.draw(json_values)
    try:
        result = examine_objects(
            objects, lambda command, args, env: read_args(app, command, args, env)
        )
    except ConfigError:
        return
    for found in result.findings:
        assert found.id.startswith("WG")
        assert found.path


def test_wg011_run_as_a_regular_container_of_a_job_is_an_error() -> None:
    job = deployment()
    job["kind"] = "Job"
    spec = job["spec"]["template"]["spec"]
    container = spec["initContainers"].pop()
    del container["restartPolicy"]
    spec["containers"].append(container)
    assert examine(job, CONFIG_MAP, POD_MONITOR) == [
        ("WG011", Severity.ERROR, "job/web", "spec.template.spec.containers[1]")
    ]


def test_wg013_serve_on_another_volume_than_prime_writes() -> None:
    obj = deployment()
    spec = obj["spec"]["template"]["spec"]
    serve = sidecar(args=["serve", "--status-dir", "/warmgate"], name="warmgate-serve")
    serve["volumeMounts"] = [{"name": "other", "mountPath": "/warmgate"}]
    prime = sidecar(args=["prime", "--config", "/etc/warmgate/warmgate.yaml"])
    del prime["restartPolicy"], prime["readinessProbe"], prime["ports"]
    spec["initContainers"] = [serve, prime]
    settings = {"warmgate-serve": RunSettings(status_dir="/warmgate"), "warmgate": LOADED}

    def found() -> list[tuple[str, str]]:
        workloads = find_workloads([obj])
        workloads[0].settings = settings
        return [(f.id, f.path) for f in diagnose(workloads, [obj, CONFIG_MAP, POD_MONITOR])]

    assert found() == [("WG013", "spec.template.spec.initContainers[0].volumeMounts")]
    serve["volumeMounts"] = [{"name": "warmgate-status", "mountPath": "/warmgate"}]
    assert found() == []


def test_wg004_any_monitor_that_selects_nothing_but_not_another_apps() -> None:
    nothing = copy.deepcopy(POD_MONITOR)
    nothing["metadata"]["name"] = "web"
    nothing["spec"] = {"selector": {"matchLabels": {"app": "gone"}},
                       "podMetricsEndpoints": [{"port": "http"}]}  # fmt: skip
    found = [(f.id, f.object) for f in diagnose_of(deployment(), CONFIG_MAP, POD_MONITOR, nothing)]
    assert found == [("WG004", "podmonitor/web")]
    other_app = copy.deepcopy(deployment())
    other_app["metadata"]["name"] = "shop"
    other_app["spec"]["template"] = {
        "metadata": {"labels": {"app": "gone"}},
        "spec": {"containers": [{"name": "shop", "image": "shop:1"}]},
    }
    objects = (deployment(), other_app, CONFIG_MAP, POD_MONITOR, nothing)
    assert diagnose_of(*objects) == []
