"""`warmgate inject`: the real CLI on sample manifests, and the pure functions beneath it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import REPO, run_cli
from tests.kubectl import assert_go_reads_as_python, go_decode, python_view, pyyaml_view
from warmgate.kernel.errors import ConfigError
from warmgate.kube.inject import DEFAULT_IMAGE, MARKER, InjectOptions, inject_object, inject_text
from warmgate.kube.yaml_stream import dump, parse

SAMPLES = REPO / "tests" / "samples"
HERITAGE = SAMPLES / "heritage-app.yaml"
WORKLOADS = SAMPLES / "workloads.yaml"


def documents(text: str) -> list[Any]:
    """The non-empty documents of a YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside any workload object."""
    kind = obj["kind"]
    if kind == "Pod":
        return dict(obj["spec"])
    if kind == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def warmgate_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The warmgate init container of a workload."""
    [container] = [c for c in pod_spec(obj).get("initContainers", []) if c["name"] == "warmgate"]
    return dict(container)


def inject_cli(*args: str, stdin: str | None = None) -> tuple[str, str]:
    """Run ``warmgate inject ARGS``; (stdout, stderr) of a successful run."""
    result = run_cli("inject", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    if result.stdout.strip():
        # Every output is read the same by kubectl (Go), by warmgate and by plain PyYAML.
        go = assert_go_reads_as_python(result.stdout, f"inject {' '.join(args)}")
        assert go == pyyaml_view(result.stdout)
    return result.stdout, result.stderr


def test_inject_adds_a_native_sidecar_and_leaves_the_app_container_alone() -> None:
    """The Deployment gets the sidecar, both volumes and --config; the app container is as it was."""
    out, err = inject_cli(str(HERITAGE))
    before = documents(HERITAGE.read_text())[1]
    after = documents(out)[1]
    sidecar = warmgate_of(after)
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == DEFAULT_IMAGE
    assert sidecar["args"][:3] == ["run", "--config", "/etc/warmgate/warmgate.yaml"]
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "warmgate"}
    assert "startupProbe" not in sidecar
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "warmgate"}
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["resources"]["limits"] == {"memory": "128Mi"}
    spec = pod_spec(after)
    assert spec["containers"] == pod_spec(before)["containers"]
    assert list(spec)[: list(spec).index("containers")][-1] == "initContainers"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["warmgate-status"]["emptyDir"]["sizeLimit"] == "1Mi"
    # inject's ConfigMap is required: files are applied with their ConfigMap, on purpose.
    assert volumes["warmgate-config"]["configMap"] == {"name": "heritage-app-warmgate"}
    assert "--optional-config-map" not in sidecar["args"]
    assert "deployment/heritage-app: warmgate added as a native sidecar" in err
    assert "create ConfigMap heritage-app-warmgate" in err


def test_inject_keeps_every_other_document_as_the_same_text() -> None:
    """The Service and ConfigMap come out byte for byte, comments and quoting included."""
    text = HERITAGE.read_text()
    service, _, rest = text.partition("\n---\n")
    config_map = rest.rpartition("\n---\n")[2]
    out, _ = inject_cli(str(HERITAGE))
    assert out.startswith(service + "\n---\n")
    assert out.endswith("\n---\n" + config_map)
    assert [doc["kind"] for doc in documents(out)] == ["Service", "Deployment", "ConfigMap"]


def test_injecting_twice_changes_nothing() -> None:
    """The second pass over injected output, read from stdin, prints exactly its input."""
    once, _ = inject_cli(str(WORKLOADS))
    twice, err = inject_cli("-", stdin=once)
    assert twice == once
    assert "deployment/listed already has this warmgate; left as it is" in err


def test_every_workload_kind_gets_warmgate_and_other_kinds_do_not() -> None:
    """Pod, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob (named) and List items; not Ingress."""
    out, _ = inject_cli(str(WORKLOADS), "--kind", "Job", "--kind", "CronJob", "--kind", "Pod",
                        "--kind", "StatefulSet", "--kind", "DaemonSet", "--kind", "ReplicaSet",
                        "--kind", "Deployment")  # fmt: skip
    docs = documents(out)
    kinds = [doc["kind"] for doc in docs]
    assert kinds == [
        "Pod", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "List", "Ingress",
    ]  # fmt: skip
    for doc in docs[:6]:
        assert warmgate_of(doc)["restartPolicy"] == "Always"
    assert warmgate_of(docs[6]["items"][0])["args"][0] == "run"
    assert docs[7] == documents(WORKLOADS.read_text())[7]
    statefulset = pod_spec(docs[1])
    assert [c["name"] for c in statefulset["initContainers"]] == ["migrate", "warmgate"]
    assert docs[1]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_init_mode_adds_a_prime_init_container_after_the_existing_ones() -> None:
    """--mode init: `prime` runs to completion last among the init containers; no port, no probe."""
    out, err = inject_cli(str(WORKLOADS), "--mode", "init", "--name", "ledger")
    statefulset = documents(out)[1]
    containers = pod_spec(statefulset)["initContainers"]
    assert [c["name"] for c in containers] == ["migrate", "warmgate"]
    prime = containers[-1]
    assert prime["args"] == [
        "prime", "--config", "/etc/warmgate/warmgate.yaml", "--status-dir", "/warmgate",
    ]  # fmt: skip
    for key in ("restartPolicy", "ports", "readinessProbe", "startupProbe"):
        assert key not in prime
    assert "statefulset/ledger: warmgate added as an init container" in err


def test_options_shape_the_injected_container() -> None:
    """Image, port, config map and resources come from the flags; 'none' drops a value."""
    out, err = inject_cli(
        str(HERITAGE), "--image", "registry.example.com/warmgate:9", "--port", "9100",
        "--config-map", "shared-warmup", "--cpu-limit", "500m", "--memory-limit", "none",
    )  # fmt: skip
    deployment = documents(out)[1]
    sidecar = warmgate_of(deployment)
    assert sidecar["image"] == "registry.example.com/warmgate:9"
    assert sidecar["args"][-2:] == ["--port", "9100"]
    assert sidecar["ports"] == [{"name": "warmgate", "containerPort": 9100, "protocol": "TCP"}]
    assert sidecar["resources"] == {
        "requests": {"cpu": "250m", "memory": "64Mi"},
        "limits": {"cpu": "500m"},
    }
    config = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "warmgate-config"]
    assert config[0]["configMap"]["name"] == "shared-warmup"
    assert "create ConfigMap shared-warmup" in err


def test_options_also_come_from_warmgate_inject_environment_variables() -> None:
    """WARMGATE_INJECT_IMAGE and WARMGATE_INJECT_MODE work like --image and --mode."""
    env = {"WARMGATE_INJECT_IMAGE": "example/wg:1", "WARMGATE_INJECT_MODE": "init"}
    result = run_cli("inject", str(HERITAGE), env=env)
    assert result.returncode == 0, result.stderr
    container = warmgate_of(documents(result.stdout)[1])
    assert container["image"] == "example/wg:1"
    assert container["args"][0] == "prime"


def test_variables_of_the_other_commands_do_not_change_inject() -> None:
    """WARMGATE_PORT (the app's own port, for run) is not inject's --port: WARMGATE_INJECT_PORT is."""
    plain = run_cli("inject", str(HERITAGE))
    assert plain.returncode == 0, plain.stderr
    with_run_env = run_cli("inject", str(HERITAGE), env={"WARMGATE_PORT": "8080", "WARMGATE_MODE": "init"})  # fmt: skip
    assert with_run_env.returncode == 0, with_run_env.stderr
    assert with_run_env.stdout == plain.stdout
    own = run_cli("inject", str(HERITAGE), env={"WARMGATE_INJECT_PORT": "9100"})
    assert own.returncode == 0, own.stderr
    [port] = warmgate_of(documents(own.stdout)[1])["ports"]
    assert port["containerPort"] == 9100


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        ("just a sentence\n", "is a string, not a Kubernetes object"),
        ("- a\n- b\n", "is a list, not a Kubernetes object"),
        ("name: web\nimage: nginx\n", "has no apiVersion or kind"),
        ("apiVersion: v1\nmetadata: {}\n", "has no kind"),
        ("targets:\n  - http: {url: 'http://x'}\n", "It looks like a warmgate config"),
        ("kind: Deployment\nspec: [unclosed\n", "is not valid YAML at line 3"),
        ("key: value\n\tbad: tab\n", "is not valid YAML"),
        ("apiVersion: v1\x00\n", "is not valid YAML: control characters are not allowed"),
    ],
)
def test_input_that_is_not_kubernetes_yaml_exits_2_with_a_sentence(
    stdin: str, expected: str
) -> None:
    """Not YAML, or YAML that is not Kubernetes objects: exit 2, one sentence, nothing on stdout."""
    result = run_cli("inject", "-", stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("warmgate: ")
    assert expected in result.stderr
    assert result.stderr.rstrip().endswith(".")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode", "sidecars"], "--mode: 'sidecars' is not a mode; write sidecar or init."),
        (["--memory-limit", "64MB"], "--memory-limit: '64MB' is not a Kubernetes quantity"),
        (["--port", "0"], "--port: 0 is not a port"),
        (["--config-map", "Not_Valid"], "is not a valid ConfigMap name"),
        (["--port", "8080"], "container 'app' already uses port 8080"),
    ],
)
def test_bad_options_exit_2_with_a_sentence(args: list[str], expected: str) -> None:
    """A wrong flag, or a port the app already uses, is refused before anything is printed."""
    result = run_cli("inject", str(HERITAGE), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in result.stderr


def test_a_missing_file_exits_2() -> None:
    """A path that does not exist is a usage error naming the path."""
    result = run_cli("inject", str(SAMPLES / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml does not exist" in result.stderr


def test_a_workload_without_a_pod_template_is_refused() -> None:
    """A Deployment patch without spec.template.spec.containers cannot be injected."""
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    with pytest.raises(ConfigError, match=r"has no spec\.template\.spec\.containers list"):
        inject_object(patch, InjectOptions())


def test_an_optional_config_map_is_named_to_the_sidecar_so_it_can_run_open() -> None:
    """config_optional: the volume is optional and run learns the ConfigMap's resolved name."""
    [deployment] = [d for d in documents(HERITAGE.read_text()) if d["kind"] == "Deployment"]
    done = inject_object(deployment, InjectOptions(config_optional=True))
    volumes = {v["name"]: v for v in pod_spec(done.obj)["volumes"]}
    assert volumes["warmgate-config"]["configMap"] == {
        "name": "heritage-app-warmgate", "optional": True,
    }  # fmt: skip
    args = warmgate_of(done.obj)["args"]
    assert args[0] == "run"
    assert args[-2:] == ["--optional-config-map", "heritage-app-warmgate"]


def test_the_config_optional_flag_makes_the_config_map_optional() -> None:
    """inject --config-optional writes what the webhook writes; --mode init refuses it."""
    out, _ = inject_cli(str(HERITAGE), "--config-optional")
    after = documents(out)[1]
    volumes = {v["name"]: v for v in pod_spec(after)["volumes"]}
    assert volumes["warmgate-config"]["configMap"]["optional"] is True
    assert warmgate_of(after)["args"][-2:] == ["--optional-config-map", "heritage-app-warmgate"]
    refused = run_cli("inject", str(HERITAGE), "--config-optional", "--mode", "init")
    assert refused.returncode == 2
    assert "an optional ConfigMap needs --mode sidecar" in refused.stderr


def test_events_add_the_flag_and_the_downward_api_variables() -> None:
    """inject --events: run posts Events about its pod, named by the downward API; the RBAC and
    the service account stay the user's; --mode init refuses it."""
    out, _ = inject_cli(str(HERITAGE), "--events", "--env", "TZ=UTC")
    after = documents(out)[1]
    sidecar = warmgate_of(after)
    assert sidecar["args"][-1] == "--events"
    assert sidecar["env"] == [
        {"name": "TZ", "value": "UTC"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    assert "serviceAccountName" not in pod_spec(after)
    assert "automountServiceAccountToken" not in pod_spec(after)
    plain = warmgate_of(documents(inject_cli(str(HERITAGE))[0])[1])
    assert "--events" not in plain["args"]
    assert "env" not in plain
    refused = run_cli("inject", str(HERITAGE), "--events", "--mode", "init")
    assert refused.returncode == 2
    assert "--events needs --mode sidecar" in refused.stderr


def test_only_the_sidecar_can_have_an_optional_config_map() -> None:
    """An init container without its config could only fail, holding the pod: refused."""
    with pytest.raises(ConfigError, match="an optional ConfigMap needs --mode sidecar"):
        InjectOptions(mode="init", config_optional=True)


def test_inject_object_never_mutates_its_input() -> None:
    """The parsed input stays as it was; the result is a new object."""
    [deployment] = [d for d in documents(HERITAGE.read_text()) if d["kind"] == "Deployment"]
    pristine = copy.deepcopy(deployment)
    done = inject_object(deployment, InjectOptions())
    assert done.changed
    assert deployment == pristine
    assert done.obj is not deployment


def test_existing_volume_names_are_a_conflict() -> None:
    """A pod that already has a warmgate-status volume is refused rather than merged."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x"}],
                 "volumes": [{"name": "warmgate-status", "emptyDir": {}}]},
    }  # fmt: skip
    with pytest.raises(ConfigError, match="already has a volume named 'warmgate-status'"):
        inject_object(pod, InjectOptions())


def test_unnamed_workloads_need_an_explicit_config_map() -> None:
    """Without metadata.name, '{name}-warmgate' cannot be built; --config-map fixes it."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "job-"},
           "spec": {"containers": [{"name": "a", "image": "x"}]}}  # fmt: skip
    with pytest.raises(ConfigError, match="pass --config-map NAME"):
        inject_object(pod, InjectOptions())
    done = inject_object(pod, InjectOptions(config_map="warmup"))
    assert done.config_maps == ("warmup",)


def test_stream_edge_cases_round_trip() -> None:
    """Empty input, comments only, '=' scalars and a flow mapping on the --- line all work."""
    options = InjectOptions()
    assert inject_text("", options).text == ""
    assert inject_text("# nothing here\n", options).text == "# nothing here\n"
    odd = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {op: =}\n"
    assert inject_text(odd, options).text == odd
    flow = (
        '--- {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, '
        '"spec": {"containers": [{"name": "a", "image": "x"}]}}\n'
    )
    out = inject_text(flow, options).text
    assert out.startswith("---\napiVersion: v1\n")
    [pod] = documents(out)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["warmgate"]


WORDS = [
    f"{sign}{word}"
    for word in ("y", "Y", "n", "N", "yes", "No", "ON", "off", "True", "FALSE", "null", "Null",
                 "~", ".inf", ".Inf", ".NaN", "nan", "inf", "<<", "=", "")
    for sign in ("", "+", "-")
]  # fmt: skip
DANGEROUS = st.one_of(
    st.sampled_from(WORDS),
    st.from_regex(
        r"[-+]?(0[xXoObB])?[0-9a-fA-F_]{0,6}(\.[0-9_]{0,3})?([eE][-+]?[0-9]{0,3})?", fullmatch=True
    ),
    st.text(alphabet="0123456789abcdef", min_size=7, max_size=12),  # commit SHAs: 1234e56
    st.from_regex(
        r"[0-9]{1,4}[-:][0-9]{1,2}([-:][0-9]{1,2})?([Tt ][0-9:.]{0,8}Z?)?", fullmatch=True
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(
        [
            "\x85",
            "a\u2028b",
            "x\r\ny",
            "two\nlines\n",
            " lead",
            "trail ",
            "#c",
            "a: b",
            "- x",
            "'q'",
            '"dq"',
            "\t",
            "\ufeffbom",
            "%TAG",
            "!tag",
            "*ref",
        ]
    ),
)
"""Strings a YAML 1.1, YAML 1.2 or Go reader may type as a number, bool, null or date, or read
back as other text (line breaks, indicators, a byte-order mark)."""


def workload_with(values: list[str]) -> dict[str, Any]:
    """A Deployment carrying ``values`` as annotations, labels' keys aside, and env values."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "annotations": {f"a{i}": v for i, v in enumerate(values)}},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {
            "metadata": {"labels": {"app": "x"}, "annotations": dict.fromkeys(values, "key")},
            "spec": {"containers": [{"name": "app", "image": "x", "env": [
                {"name": f"V{i}", "value": v} for i, v in enumerate(values)]}]},
        }},
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(DANGEROUS, max_size=8))
def test_every_string_dumped_reads_back_as_that_string_in_go_and_yaml_1_1(
    values: list[str],
) -> None:
    """The emitter quotes whatever Go's or PyYAML's reader would type as anything but a string."""
    obj = {"keys": {v: v for v in values}, "list": values}
    text = dump(obj)
    assert parse(text) == [obj]
    assert yaml.safe_load(text) == obj


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(DANGEROUS, min_size=1, max_size=80, unique=True))
def test_dangerous_strings_survive_inject_as_kubectl_reads_them(values: list[str]) -> None:
    """Annotations, annotation keys and env values stay strings through inject and kubectl."""
    obj = workload_with(values)
    out = inject_text(dump(obj), InjectOptions()).text
    [decoded] = go_decode(out)  # one kubectl call for up to 80 strings in three places
    assert decoded == python_view(out)[0]
    assert decoded["metadata"]["annotations"] == obj["metadata"]["annotations"]
    template = decoded["spec"]["template"]
    assert template["metadata"]["annotations"] == {**dict.fromkeys(values, "key"), MARKER: "true"}
    [app] = template["spec"]["containers"]
    assert app == obj["spec"]["template"]["spec"]["containers"][0]


def test_the_reported_strings_come_out_quoted_and_numbers_keep_go_typing() -> None:
    """1e3, 0o755, y, n and 1234e56 are quoted; a plain 0o755 input stays Go's number 493."""
    values = ["1e3", "1.0e3", "1e-3", "0o755", "y", "n", "1234e56"]
    out = inject_text(dump(workload_with(values)), InjectOptions()).text
    for value in values:
        assert f'value: "{value}"' in out
    text = HERITAGE.read_text().replace("replicas: 3", "replicas: 0o3")
    [go] = [obj for obj in go_decode(inject_text(text, InjectOptions()).text)
            if obj["kind"] == "Deployment"]  # fmt: skip
    assert go["spec"]["replicas"] == 3


PLAIN = st.one_of(
    # Not .inf or .nan: Go reads them, but JSON cannot carry them out of kubectl.
    st.sampled_from(
        [w for w in WORDS if w.strip("+-") not in ("", "<<", "=", "~", ".inf", ".Inf", ".NaN")]
    ),
    st.from_regex(
        r"[-+]?(0[xXoObB])?[0-9a-fA-F_]{1,6}(\.[0-9_]{0,3})?([eE][-+]?[0-9]{0,3})?", fullmatch=True
    ),
    st.from_regex(r"[0-9]{1,20}(\.[0-9]{0,4})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
)
"""Unquoted scalars on which the YAML readers disagree most."""


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(st.lists(PLAIN, min_size=1, max_size=100))
def test_warmgate_types_unquoted_scalars_as_kubectl_does(tokens: list[str]) -> None:
    """Plain 0o755, 1e3, y, 08, 1_000... get the same type and value as in Go (one kubectl call)."""
    body = "".join(f"  k{i}: {token}\n" for i, token in enumerate(tokens))
    text = f"apiVersion: example.com/v1\nkind: Probe\nmetadata:\n  name: p\nspec:\n{body}"
    [go] = go_decode(text)
    assert go == python_view(text)[0], tokens
