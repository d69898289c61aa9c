"""The admission decision: mutate this pod or not, and why. Pure: plain data in, plain data out.

Theory of operation: the API server sends an ``AdmissionReview`` (``admission.k8s.io/v1``) for
every Pod ``CREATE`` the webhook configuration selects; :func:`admit` answers it.

1. A body that is not an AdmissionReview with a ``request.uid`` has nothing to answer: it is a
   :class:`MalformedReviewError` (the server answers 400).
2. Opt-in: the pod's namespace is opted in (the webhook entry that selects namespaces by label
   says so through ``namespace_opted_in``: the review itself carries no namespace labels), or the
   pod carries the annotation (or the label) ``warmgate.io/inject: enabled`` (or ``true``); the
   webhook-adoption component sets the label. Otherwise the pod is
   :attr:`Outcome.SKIPPED` silently: no warning for pods nobody asked about. The annotation is
   read as ``inject`` reads it (:func:`warmgate.kube.selection.inject_annotation`: trimmed, any
   letter case, ``enabled``/``true`` and ``disabled``/``false``); any other value is a request
   nobody can read, answered with a warning and no warmgate, wherever the pod is.
3. Left alone, with the reason in ``warnings``: the annotation ``warmgate.io/inject: disabled``
   or ``false`` (it wins over the namespace label) or an unrecognised value, a static pod's
   mirror, a pod a DaemonSet owns (a per-node agent: no Service traffic to gate, and a node's
   agent must not wait for a warm-up), a pod a Job owns, a Helm hook,
   ``hostNetwork`` (:func:`warmgate.kube.selection.why_skipped`, shared with ``inject``), a pod
   that already has a warmgate container (``inject``'s or an earlier pass of this webhook:
   reinvocation gives an empty patch), and a pod whose ports or volumes clash with warmgate's.
4. The pod's config and resource annotations (:mod:`warmgate.kube.pod_config`); a mistake there
   admits the pod unmutated, :attr:`Outcome.INVALID`, with a warning naming the annotation.
5. The pod ``warmgate inject`` would write (:func:`warmgate.kube.inject.inject_object`, the one
   mutation code path), and the JSONPatch from the received pod to it (``jsonpatch``). Its
   ConfigMap, the namespace's default or the one the pod names, is optional: a pod whose
   ConfigMap does not exist starts, and its sidecar runs open (ready, no warm-up) and says which
   ConfigMap to create (:mod:`warmgate.runtime.open_run`), instead of the pod waiting to be created.

Nothing here blocks a pod: every answer is ``allowed``. Anything unexpected while deciding is
:attr:`Outcome.ERROR`: allowed, no patch, a warning (fail open).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import shorten
from warmgate.kube.inject import InjectOptions, has_warmgate, inject_object
from warmgate.kube.pod_config import RESOURCES, InvalidAnnotationError, pod_config, pod_resources
from warmgate.kube.selection import (
    Choice,
    Selection,
    daemon_set_owner,
    inject_annotation,
    why_skipped,
)

API_VERSION = "admission.k8s.io/v1"
MIRROR = "kubernetes.io/config.mirror"
"""The annotation of the pod a kubelet creates to show a static pod (a mirror pod)."""
MAX_WARNING_CHARS = 256
"""Longer warnings may be cut by the API server; say it within this."""


class Outcome(Enum):
    """What the webhook did with one review."""

    MUTATED = "mutated"
    SKIPPED = "skipped"
    INVALID = "invalid"
    ERROR = "error"


class MalformedReviewError(ValueError):
    """The body is not an AdmissionReview request; there is no uid to answer."""


@dataclass(frozen=True)
class Decision:
    """The answer to one review: always allowed; a patch only when mutated."""

    outcome: Outcome
    patch: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    invalid_annotation: str = ""
    pod: str = ""
    """The pod as a person knows it (``pod shop/web-7c9f8d5b4-*``), for the log."""


@dataclass(frozen=True)
class Review:
    """The parts of an AdmissionReview request the decision reads."""

    uid: str
    request: Mapping[str, Any]


def parse_review(body: bytes) -> Review:
    """The request of an AdmissionReview body, or :class:`MalformedReviewError`."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedReviewError("the body is not JSON") from None
    except RecursionError:  # nesting no Kubernetes object has; it would escape as a traceback
        raise MalformedReviewError("the body's JSON is nested too deeply") from None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise MalformedReviewError("the body is not an AdmissionReview")
    if review.get("apiVersion") != API_VERSION:
        raise MalformedReviewError(f"only {API_VERSION} AdmissionReviews are understood")
    request = review.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    if not isinstance(request, dict) or not isinstance(uid, str) or not uid:
        raise MalformedReviewError("the AdmissionReview has no request.uid")
    return Review(uid, request)


def admit(review: Review, options: InjectOptions, *, namespace_opted_in: bool) -> Decision:
    """Decide one review; never raises (an unexpected error is :attr:`Outcome.ERROR`)."""
    try:
        return decide(review.request, options, namespace_opted_in=namespace_opted_in)
    except Exception as exc:  # noqa: BLE001 - fail open: a webhook bug must not block pods
        return Decision(
            Outcome.ERROR,
            warnings=(f"warmgate: internal error ({type(exc).__name__}); pod admitted without "
                      "warmgate",),
        )  # fmt: skip


def decide(
    request: Mapping[str, Any], options: InjectOptions, *, namespace_opted_in: bool
) -> Decision:
    """Mutate or not, and why (see the module's theory of operation)."""
    found = _opted_in_pod(request, namespace_opted_in)
    if isinstance(found, Decision):
        return found
    pod, name = found
    reason = why_skipped(pod, "Pod", pod, Selection(), hints=False)
    if reason:
        return _skip(f"{name}: {reason}")
    if has_warmgate(pod.get("spec") or {}):
        return _skip(f"{name}: skipped: it already has a warmgate container")
    annotations = pod["metadata"].get("annotations") or {}
    try:
        config = pod_config(annotations)
        defaults = {field: getattr(options, field) for field in RESOURCES.values()}
        resources: dict[str, Any] = pod_resources(annotations, defaults)
    except InvalidAnnotationError as exc:
        warning = f"warmgate: {name} admitted without warmgate: {exc}"
        return Decision(
            Outcome.INVALID, warnings=(_short(warning),), invalid_annotation=exc.annotation
        )
    chosen = dataclasses.replace(
        options,
        config_map=config.config_map or options.config_map,
        inline_config=config.inline,
        config_optional=True,  # a missing ConfigMap must not keep the pod from starting
        **resources,
    )
    try:
        injected = inject_object(pod, chosen, name, owned=True)
    except ConfigError as exc:
        return _skip(f"{name}: skipped: {exc}")
    import jsonpatch

    patch = tuple(jsonpatch.make_patch(pod, injected.obj).patch)
    return Decision(Outcome.MUTATED if patch else Outcome.SKIPPED, patch, pod=name)


def _opted_in_pod(
    request: Mapping[str, Any], namespace_opted_in: bool
) -> tuple[dict[str, Any], str] | Decision:
    """The pod and its name when it opted in; else the decision to leave it."""
    pod = request.get("object")
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or kind.get("kind") != "Pod" or not isinstance(pod, Mapping):
        return _skip("the review is not about a Pod; nothing to do")
    if request.get("operation", "CREATE") != "CREATE":
        return _skip(f"{request.get('operation')} is not CREATE; pods are changed only then")
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(metadata, Mapping) or not isinstance(annotations or {}, Mapping):
        return _skip("the pod's metadata or annotations are not mappings")
    labels = metadata.get("labels")
    choices = {inject_annotation(annotations or {})}
    choices.add(inject_annotation(labels if isinstance(labels, Mapping) else {}))
    if not (namespace_opted_in or choices & {Choice.ENABLED, Choice.UNRECOGNISED}):
        return Decision(Outcome.SKIPPED)
    name = _pod_name(request, metadata)
    daemon_set = daemon_set_owner(metadata)
    # The kubelet runs a static pod from its file; and NodeRestriction (reinvoked after this
    # patch) refuses a mirror pod that references a ConfigMap, so it would not exist.
    why = (
        "it is the mirror of a static pod, which the kubelet runs"
        if MIRROR in (annotations or {})
        else f"it is a pod of DaemonSet {daemon_set}, a per-node agent with no Service traffic "
        "to gate"
        if daemon_set
        else ""
    )
    if why:
        return _skip(f"{name}: skipped: {why}")
    return {"apiVersion": "v1", "kind": "Pod", **pod}, name


def response(uid: str, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview the API server expects back: allowed, with the patch if any."""
    answer: dict[str, Any] = {"uid": uid, "allowed": True}
    if decision.patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(decision.patch).encode()).decode()
    if decision.warnings:
        answer["warnings"] = list(decision.warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}


def _pod_name(request: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """``pod web-7c9f…-`` as the user knows it: a Deployment's pods have only a generateName."""
    name = metadata.get("name") or request.get("name")
    if not name and metadata.get("generateName"):
        name = f"{metadata['generateName']}*"
    namespace = request.get("namespace") or metadata.get("namespace")
    return f"pod {namespace}/{name or '(unnamed)'}" if namespace else f"pod {name or '(unnamed)'}"


def _skip(reason: str) -> Decision:
    return Decision(Outcome.SKIPPED, warnings=(_short(f"warmgate: {reason}"),))


def _short(warning: str) -> str:
    """One line, within :data:`MAX_WARNING_CHARS`: a URL's password masked before the cut."""
    return shorten(" ".join(warning.split()), MAX_WARNING_CHARS)
