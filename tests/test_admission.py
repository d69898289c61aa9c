"""The admission decision with plain data: opt-in, opt-out, skip reasons, annotations, patches."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reviews import deployment_pod, patched, request, with_sidecars
from warmgate.kube.admission import (
    MalformedReviewError,
    Outcome,
    Review,
    admit,
    parse_review,
    response,
)
from warmgate.kube.inject import INLINE_CONFIG, MARKER, InjectOptions, inject_object
from warmgate.kube.pod_config import (
    INLINE,
    MAX_ANNOTATION_CHARS,
    InvalidAnnotationError,
    pod_config,
)
from warmgate.traffic.templating import referenced_names

OPTIONS = InjectOptions(config_map="warmgate")
ENABLED = {"warmgate.io/inject": "enabled"}
URL = "http://127.0.0.1:8080/items/{{ randint(1, 1000) }}"
INLINE_KEYS = sorted(INLINE)
JOB_OWNER = {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-1", "uid": "u",
             "controller": True}  # fmt: skip


def decide(pod: dict[str, Any], *, namespace: bool = False) -> tuple[Any, dict[str, Any]]:
    """The decision for creating ``pod`` and the pod after its patch."""
    review = request(pod)
    decision = admit(
        Review(review["request"]["uid"], review["request"]), OPTIONS, namespace_opted_in=namespace
    )
    after = patched(copy.deepcopy(pod), response(review["request"]["uid"], decision))
    return decision, after


def warmgate_of(pod: dict[str, Any]) -> dict[str, Any]:
    """The warmgate init container of a pod."""
    [container] = [c for c in pod["spec"]["initContainers"] if c["name"] == "warmgate"]
    return container


def config_volume(pod: dict[str, Any]) -> dict[str, Any]:
    """The warmgate-config volume of a pod."""
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "warmgate-config"]
    return volume


def test_a_pod_of_an_opted_in_namespace_gets_warmgate_from_the_default_config_map() -> None:
    """Namespace entry: a pod with no annotations gets the sidecar and the default ConfigMap."""
    decision, after = decide(deployment_pod(), namespace=True)
    assert decision.outcome is Outcome.MUTATED
    assert decision.warnings == ()
    assert warmgate_of(after)["restartPolicy"] == "Always"
    # A missing ConfigMap must not hold the pod in ContainerCreating: the sidecar runs open.
    assert config_volume(after)["configMap"] == {"name": "warmgate", "optional": True}
    assert warmgate_of(after)["args"][-2:] == ["--optional-config-map", "warmgate"]
    assert after["metadata"]["annotations"][MARKER] == "true"


def test_a_pod_is_left_alone_silently_when_nothing_opted_it_in() -> None:
    """Annotation entry, no annotation: allowed, no patch, no warning (nobody asked)."""
    decision, after = decide(deployment_pod())
    assert decision.outcome is Outcome.SKIPPED
    assert (decision.patch, decision.warnings) == ((), ())
    assert after == deployment_pod()


def test_the_pod_annotation_opts_in_without_the_namespace_label() -> None:
    """Annotation entry: warmgate.io/inject: enabled on the pod (template) is enough."""
    decision, after = decide(deployment_pod(ENABLED | {"warmgate.io/config": "web-warmup"}))
    assert decision.outcome is Outcome.MUTATED
    assert config_volume(after)["configMap"] == {"name": "web-warmup", "optional": True}
    assert warmgate_of(after)["args"][-2:] == ["--optional-config-map", "web-warmup"]


def test_the_disabled_annotation_wins_over_the_namespace_label() -> None:
    """warmgate.io/inject: disabled keeps the pod out of an opted-in namespace, with a warning."""
    decision, _ = decide(deployment_pod({"warmgate.io/inject": "disabled"}), namespace=True)
    assert decision.outcome is Outcome.SKIPPED
    assert decision.patch == ()
    [warning] = decision.warnings
    assert "warmgate.io/inject: disabled" in warning
    assert "pod shop/heritage-app-7c9f8d5b4-*" in warning


@pytest.mark.parametrize("value", [" disabled", "disabled ", "\tDISABLED\n", "Disabled"])
def test_the_disabled_annotation_is_read_trimmed_and_in_any_case(value: str) -> None:
    """Whitespace around disabled, or capitals, still keep an opted-in namespace's pod out."""
    decision, after = decide(deployment_pod({"warmgate.io/inject": value}), namespace=True)
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    [warning] = decision.warnings
    assert "has the annotation warmgate.io/inject: disabled" in warning
    assert after == deployment_pod({"warmgate.io/inject": value})


def test_the_enabled_annotation_is_read_trimmed_and_in_any_case() -> None:
    """Enabled  (spaces, a capital) opts a pod in as enabled does."""
    decision, _ = decide(deployment_pod({"warmgate.io/inject": " Enabled "}))
    assert decision.outcome is Outcome.MUTATED


@pytest.mark.parametrize("namespace", [True, False])
@pytest.mark.parametrize("value", ["disable", "false", "no", "", "enabled,disabled", False, None])
def test_an_unrecognised_annotation_leaves_the_pod_alone_with_a_warning(
    value: Any, namespace: bool
) -> None:
    """A value that is neither enabled nor disabled (a typo, false) admits the pod without
    warmgate and says so, in an opted-in namespace or not."""
    pod = deployment_pod()
    pod["metadata"]["annotations"] = {"warmgate.io/inject": value}
    decision, after = decide(copy.deepcopy(pod), namespace=namespace)
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    [warning] = decision.warnings
    assert "the annotation warmgate.io/inject: " in warning
    assert "which is neither enabled nor disabled" in warning
    assert after == pod


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda pod: pod["spec"].update(hostNetwork=True), "it uses hostNetwork"),
        (
            lambda pod: pod["metadata"].update(ownerReferences=[JOB_OWNER]),
            "it is a pod of Job nightly-1",
        ),
    ],
    ids=["hostNetwork", "job"],
)
def test_pods_warming_makes_no_sense_for_are_left_alone_with_the_reason(
    change: Any, reason: str
) -> None:
    """hostNetwork pods and a Job's pods: allowed unmutated, the reason in warnings, no flag hint."""
    pod = deployment_pod(ENABLED)
    change(pod)
    decision, after = decide(pod)
    assert decision.outcome is Outcome.SKIPPED
    assert after == pod
    [warning] = decision.warnings
    assert reason in warning
    assert "--" not in warning


def test_a_static_pods_mirror_is_left_alone_with_the_reason() -> None:
    """A mirror pod: the kubelet runs the static pod, and NodeRestriction refuses a ConfigMap in it."""
    pod = deployment_pod(
        {"kubernetes.io/config.mirror": "3f1c", "kubernetes.io/config.source": "file"}
    )
    decision, after = decide(pod, namespace=True)
    assert decision.outcome is Outcome.SKIPPED
    assert after == pod
    [warning] = decision.warnings
    assert "static pod" in warning


def test_an_already_injected_pod_is_left_alone() -> None:
    """A pod that `warmgate inject` already wrote (another image) is not touched again."""
    pod = deployment_pod(ENABLED)
    injected = inject_object(pod, InjectOptions(image="example.com/warmgate:old", config_map="x"))
    decision, after = decide(injected.obj, namespace=True)
    assert decision.outcome is Outcome.SKIPPED
    assert after == injected.obj
    assert "already has a warmgate container" in decision.warnings[0]


def test_reinvocation_gives_an_empty_patch() -> None:
    """Deciding again on the mutated pod (reinvocationPolicy IfNeeded) patches nothing."""
    _, after = decide(with_sidecars(deployment_pod(ENABLED)))
    again, same = decide(after)
    assert again.patch == ()
    assert same == after


def test_warmgate_is_appended_after_existing_init_containers_and_native_sidecars() -> None:
    """The pod's own init containers and sidecars stay first and unchanged."""
    pod = with_sidecars(deployment_pod(ENABLED))
    decision, after = decide(pod)
    assert decision.outcome is Outcome.MUTATED
    names = [c["name"] for c in after["spec"]["initContainers"]]
    assert names == ["wait-for-db", "log-shipper", "warmgate"]
    assert after["spec"]["initContainers"][:2] == pod["spec"]["initContainers"]
    assert after["spec"]["containers"] == pod["spec"]["containers"]


def test_the_webhook_adds_exactly_what_inject_adds() -> None:
    """One mutation path: the patched pod equals inject's output for the same options."""
    pod = deployment_pod(ENABLED)
    _, after = decide(pod)
    assert after == inject_object(pod, dataclasses.replace(OPTIONS, config_optional=True)).obj


def test_an_inline_config_has_nothing_optional_to_open_on() -> None:
    """The inline config is the pod's own annotation: always there, so no optional flag."""
    _, after = decide(deployment_pod(ENABLED | {"warmgate.io/url": URL}))
    assert "configMap" not in config_volume(after)
    assert "--optional-config-map" not in warmgate_of(after)["args"]


def test_inline_annotations_become_the_config_in_the_pods_own_annotation() -> None:
    """Inline annotations: validated, written as YAML to an annotation the sidecar mounts."""
    annotations = ENABLED | {"warmgate.io/url": URL, "warmgate.io/concurrency": "16",
                             "warmgate.io/p95": "200ms", "warmgate.io/on-timeout": "ready"}  # fmt: skip
    decision, after = decide(deployment_pod(annotations))
    assert decision.outcome is Outcome.MUTATED
    inline = after["metadata"]["annotations"][INLINE_CONFIG]
    import yaml

    assert yaml.safe_load(inline) == {
        "targets": [{"http": {"url": URL}}],
        "load": {"concurrency": 16},
        "gate": {"p95": "200ms", "on_timeout": "ready"},
        "template_files": False,
    }
    [item] = config_volume(after)["downwardAPI"]["items"]
    assert item == {
        "path": "warmgate.yaml",
        "fieldRef": {"fieldPath": f"metadata.annotations['{INLINE_CONFIG}']"},
    }


@pytest.mark.parametrize(
    ("annotations", "annotation", "words"),
    [
        ({"warmgate.io/url": "http://127.0.0.1:8080/{{ line('/etc/passwd') }}"},
         "warmgate.io/url", "cannot read files"),
        ({"warmgate.io/url": "http://x:1/{% if false %}{{ line('/etc/shadow') }}{% endif %}"},
         "warmgate.io/url", "cannot read files"),
        ({"warmgate.io/url": "http://127.0.0.1:8080/" + "a" * MAX_ANNOTATION_CHARS},
         "warmgate.io/url", "characters"),
        ({"warmgate.io/url": "http://127.0.0.1:8080/{{ 'x' * 10**7 }}"},
         "warmgate.io/url", "1,000,000 characters"),
        ({"warmgate.io/url": "http://127.0.0.1:8080/{{ nope() }}"}, "warmgate.io/url", "undefined"),
        ({"warmgate.io/url": URL, "warmgate.io/p95": "200"}, "warmgate.io/p95", "has no unit"),
        ({"warmgate.io/url": URL, "warmgate.io/concurrency": "lots"},
         "warmgate.io/concurrency", "whole number"),
        ({"warmgate.io/url": URL, "warmgate.io/success-rate": "1.5"},
         "warmgate.io/success-rate", "less than or equal to 1"),
        ({"warmgate.io/p99": "1s"}, "warmgate.io/p99", "needs warmgate.io/url"),
        ({"warmgate.io/url": URL, "warmgate.io/config": "web"}, "warmgate.io/config", "one or the other"),
        ({"warmgate.io/config": "Web_App"}, "warmgate.io/config", "not a ConfigMap name"),
    ],
    ids=["line", "line-never-run", "too-long", "renders-too-much", "unknown-function",
         "p95-unit", "concurrency", "success-rate", "no-url", "both", "configmap-name"],
)  # fmt: skip
def test_an_invalid_annotation_admits_the_pod_unmutated_with_a_warning(
    annotations: dict[str, str], annotation: str, words: str
) -> None:
    """Invalid annotations never block a pod: allowed, no patch, a warning naming it."""
    pod = deployment_pod(ENABLED | annotations)
    decision, after = decide(pod)
    assert decision.outcome is Outcome.INVALID
    assert decision.invalid_annotation == annotation
    assert after == pod
    [warning] = decision.warnings
    assert annotation in warning
    assert words in warning
    assert "\n" not in warning
    assert len(warning) <= 256


def test_a_port_clash_leaves_the_pod_alone_with_the_reason() -> None:
    """An app already on warmgate's port: allowed unmutated, the clash in warnings."""
    pod = deployment_pod(ENABLED)
    pod["spec"]["containers"][0]["ports"][0]["containerPort"] = 8099
    decision, after = decide(pod)
    assert decision.outcome is Outcome.SKIPPED
    assert after == pod
    assert "already uses port 8099" in decision.warnings[0]


def test_an_internal_error_admits_the_pod_without_a_patch() -> None:
    """A review the decision cannot process (initContainers is a string) fails open."""
    pod = deployment_pod(ENABLED)
    pod["spec"]["initContainers"] = "not-a-list"
    decision, after = decide(pod)
    assert decision.outcome is Outcome.ERROR
    assert after == pod
    assert "internal error" in decision.warnings[0]


def test_reviews_about_other_things_are_allowed_with_a_warning() -> None:
    """A review of another kind or operation: allowed, no patch (the config should not send it)."""
    review = request(deployment_pod(ENABLED))
    review["request"]["operation"] = "UPDATE"
    decision = admit(Review("u", review["request"]), OPTIONS, namespace_opted_in=True)
    assert (decision.outcome, decision.patch) == (Outcome.SKIPPED, ())
    review["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    decision = admit(Review("u", review["request"]), OPTIONS, namespace_opted_in=True)
    assert "not about a Pod" in decision.warnings[0]


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}',
     b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "u"}}',
     b'{"kind": "Pod", "apiVersion": "v1"}', b'\xff\xfe', b"[" * 200_000,
     b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": '
     + b'{"a": ' * 200_000],
)  # fmt: skip
def test_a_body_that_is_not_a_review_is_malformed(body: bytes) -> None:
    """No AdmissionReview v1 with a request.uid: nothing to answer (the server says 400)."""
    with pytest.raises(MalformedReviewError):
        parse_review(body)


def test_the_response_is_an_admission_review_with_a_base64_json_patch() -> None:
    """response() echoes the uid, allows, and encodes the patch as the API server expects."""
    review = request(deployment_pod(ENABLED))
    parsed = parse_review(json.dumps(review).encode())
    answer = response(parsed.uid, admit(parsed, OPTIONS, namespace_opted_in=False))
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == review["request"]["uid"]
    assert answer["response"]["allowed"] is True
    assert answer["response"]["patchType"] == "JSONPatch"


def test_pod_config_without_annotations_names_no_config() -> None:
    """No config annotations: empty, so the webhook's default ConfigMap is used."""
    config = pod_config({"unrelated": "x"})
    assert (config.config_map, config.inline) == ("", "")
    with pytest.raises(InvalidAnnotationError):
        pod_config({"warmgate.io/url": 5})


ANNOTATION_VALUES = {
    "warmgate.io/inject": st.sampled_from(["enabled", "disabled", "Enabled", "", "maybe"]),
    "warmgate.io/config": st.sampled_from(["web", "Bad Name", ""]),
    "warmgate.io/url": st.sampled_from([URL, "ftp://x", "{{ line('f') }}", "http://h:1/{{"]),
    "warmgate.io/concurrency": st.sampled_from(["8", "-1", "x", "0"]),
    "warmgate.io/p95": st.sampled_from(["200ms", "auto", "200", ""]),
}


@given(
    annotations=st.fixed_dictionaries({}, optional=ANNOTATION_VALUES),
    namespace=st.booleans(),
    sidecars=st.booleans(),
    host_network=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_every_answer_allows_and_a_second_pass_never_patches(
    annotations: dict[str, str], namespace: bool, sidecars: bool, host_network: bool
) -> None:
    """Whatever the annotations: allowed; a patch only when mutated; reinvocation patches nothing."""
    pod = deployment_pod(annotations)
    if sidecars:
        pod = with_sidecars(pod)
    if host_network:
        pod["spec"]["hostNetwork"] = True
    decision, after = decide(pod, namespace=namespace)
    assert decision.outcome is not Outcome.ERROR
    assert bool(decision.patch) == (decision.outcome is Outcome.MUTATED)
    if decision.outcome is Outcome.MUTATED:
        assert warmgate_of(after)["name"] == "warmgate"
        assert after["spec"]["containers"] == pod["spec"]["containers"]
        again, _ = decide(after, namespace=namespace)
        assert again.patch == ()
    else:
        assert after == pod


def test_uninject_takes_out_exactly_what_the_webhook_put_in() -> None:
    """The patched pod, inline config included, goes back to the received pod through uninject."""
    from warmgate.kube.uninject import uninject_object

    pod = with_sidecars(deployment_pod(ENABLED | {"warmgate.io/url": URL}))
    _, after = decide(pod)
    assert INLINE_CONFIG in after["metadata"]["annotations"]
    assert uninject_object(after).obj == pod


@given(
    st.dictionaries(
        st.sampled_from(["warmgate.io/config", *INLINE_KEYS]),
        st.one_of(st.text(max_size=200), st.sampled_from(["{{ line('x') }}", "{{", "{% for %}"])),
    )
)
@settings(max_examples=300, deadline=None)
def test_any_annotation_text_is_a_config_or_an_invalid_annotation(
    annotations: dict[str, str],
) -> None:
    """pod_config never fails any other way, and an accepted inline config never reads files."""
    import yaml

    outcome: Any
    try:
        outcome = pod_config(annotations)
    except InvalidAnnotationError as exc:
        outcome = exc
    if isinstance(outcome, InvalidAnnotationError):
        assert outcome.annotation in annotations
        return
    assert not (outcome.config_map and outcome.inline)
    for target in yaml.safe_load(outcome.inline or "{}").get("targets", []):
        assert "line" not in referenced_names(target["http"]["url"])


def test_a_config_without_template_files_refuses_line_in_the_sidecar_too() -> None:
    """template_files: false (what the webhook writes) makes the sidecar's own compile refuse line()."""
    from warmgate.config.loader import load_config
    from warmgate.kernel.errors import TemplateError
    from warmgate.traffic.targets import compile_targets

    source = "http://127.0.0.1:8080/{{ line('/etc/hostname') }}"
    overrides = {"targets": [{"http": {"url": source}}], "template_files": False}
    config, _ = load_config(None, overrides, environ={})
    with pytest.raises(TemplateError, match="'line' is undefined"):
        compile_targets(config)
    allowed, _ = load_config(None, {"targets": [{"http": {"url": source}}]}, environ={})
    assert compile_targets(allowed)


@pytest.mark.parametrize(
    "template",
    ["{{ 'a' * 10**8 }}", "{{ '%s'|format(1) * 99999999 }}", "{{ (10**100000)|string }}"],
)
def test_an_annotation_template_whose_constants_fold_huge_is_refused_without_building_them(
    template: str,
) -> None:
    """Jinja folds constants at compile time: the size bounds apply there too (the webhook has 128 MiB)."""
    import tracemalloc

    pod_config(ENABLED | {"warmgate.io/url": "http://127.0.0.1:8080/{{ 'a' * 2 }}"})  # imports
    tracemalloc.start()
    try:
        with pytest.raises(InvalidAnnotationError, match=r"warmgate\.io/url"):
            pod_config(ENABLED | {"warmgate.io/url": f"http://127.0.0.1:8080/{template}"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/${NOT_SET}", "http://127.0.0.1:8080/${HOSTNAME:-x}",
     "http://127.0.0.1:8080/{{ '${KUBERNETES_SERVICE_HOST}' }}"],
)  # fmt: skip
def test_an_environment_reference_in_an_annotation_is_invalid(url: str) -> None:
    """The sidecar expands ${VAR} in its config file: what the webhook checked would not be what runs."""
    with pytest.raises(InvalidAnnotationError, match=r"warmgate\.io/url: .*\$\{VAR\}"):
        pod_config(ENABLED | {"warmgate.io/url": url})


def test_a_dollar_that_is_no_environment_reference_stays_in_the_url() -> None:
    """A '$' of the URL itself is kept: only ${NAME} is expanded by the sidecar."""
    import yaml

    config = pod_config(ENABLED | {"warmgate.io/url": "http://127.0.0.1:8080/a$b/{c}"})
    assert yaml.safe_load(config.inline)["targets"][0]["http"]["url"].endswith("/a$b/{c}")


def test_webhook_events_give_each_sidecar_the_flag_and_its_pod_from_the_downward_api() -> None:
    """webhook --events: the admitted sidecar runs with --events and POD_NAME, POD_NAMESPACE and
    POD_UID; the pod's service account is left as it was."""
    pod = deployment_pod()
    review = request(pod)
    options = dataclasses.replace(OPTIONS, events=True)
    decision = admit(
        Review(review["request"]["uid"], review["request"]), options, namespace_opted_in=True
    )
    after = patched(copy.deepcopy(pod), response(review["request"]["uid"], decision))
    sidecar = warmgate_of(after)
    assert sidecar["args"][-1] == "--events"
    assert [item["name"] for item in sidecar["env"]] == ["POD_NAME", "POD_NAMESPACE", "POD_UID"]
    assert sidecar["env"][2]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert after["spec"].get("serviceAccountName") == pod["spec"].get("serviceAccountName")
