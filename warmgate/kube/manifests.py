"""Kubernetes objects in a YAML stream, for ``inject`` and ``uninject``.

Theory of operation: a stream holds any number of documents; each is checked to be a Kubernetes
object (:func:`check_object`), and a workload's pod template is found where its kind keeps it
(:data:`POD_TEMPLATES`). :func:`rewrite_text` applies a transformation to every document and
copies the documents it does not change through as the exact text they were (comments, quoting
and order kept); a changed document is written again with its keys in their original order
(comments inside it are not kept, as with ``linkerd inject``). ``List`` items are transformed
one by one (:func:`map_list`). Pure functions of text and plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kube.yaml_stream import document_spans, dump, parse

CONFIG_KEY = "warmgate.yaml"
"""The ConfigMap key that holds warmgate's config."""

POD_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Rollout": ("spec", "template"),
}
"""Where each workload kind keeps its pod template (metadata + spec). ``Rollout`` is Argo
Rollouts' (``argoproj.io/v1alpha1``); the others are Kubernetes' own."""
GROUPS: dict[str, str] = {"Rollout": "argoproj.io"}
"""The API group a kind must come from when it is not Kubernetes' own."""


@dataclass(frozen=True)
class Injected:
    """The result of injecting one object: the new object (or the same one) and what happened.

    ``ignored`` names the kind of an object that is no workload at all (a Service, a
    ConfigMap), for the summary of what was left alone. ``starters`` are ``(ConfigMap name,
    starter ConfigMap)`` pairs for ``--emit-config``.
    """

    obj: Any
    changed: bool
    notes: tuple[str, ...] = ()
    config_maps: tuple[str, ...] = ()
    starters: tuple[tuple[str, dict[str, Any]], ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class InjectedText:
    """The output stream, one sentence per workload seen, and how many objects it held."""

    text: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    config_maps: tuple[str, ...] = field(default_factory=tuple)
    objects: int = 0


def describe_object(obj: Mapping[str, Any]) -> str:
    """``deployment/web``: how kubectl names an object."""
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{str(obj.get('kind', '?')).lower()}/{name or '(unnamed)'}"


def check_object(obj: Any, where: str) -> Mapping[str, Any]:
    """``obj`` if it is a Kubernetes object; a ConfigError saying why not otherwise."""
    if not isinstance(obj, Mapping):
        raise ConfigError(
            f"{where} is a {_type_name(obj)}, not a Kubernetes object; inject reads manifests "
            "whose documents each have apiVersion and kind."
        )
    missing = [key for key in ("apiVersion", "kind") if not isinstance(obj.get(key), str)]
    if missing:
        hint = (
            " It looks like a warmgate config: put it in a ConfigMap under the key "
            f"'{CONFIG_KEY}' and inject the workload's manifest instead."
            if "targets" in obj
            else ""
        )
        raise ConfigError(
            f"{where} has no {' or '.join(missing)}, so it is not a Kubernetes object; inject "
            f"reads manifests such as the output of 'kubectl get -o yaml' or 'kustomize "
            f"build'.{hint}"
        )
    return obj


def map_list(
    obj: Mapping[str, Any], transform: Callable[[Any, str], Injected], where: str
) -> Injected:
    """Apply ``transform`` to every item of a ``List``."""
    items = []
    notes: list[str] = []
    config_maps: list[str] = []
    starters: list[tuple[str, dict[str, Any]]] = []
    ignored: list[str] = []
    for index, item in enumerate(obj["items"]):
        done = transform(item, f"{where}, item {index + 1}")
        items.append(done.obj)
        notes.extend(done.notes)
        config_maps.extend(done.config_maps)
        starters.extend(done.starters)
        ignored.extend(done.ignored)
    changed = any(new is not old for new, old in zip(items, obj["items"], strict=True))
    result = dict(obj, items=items) if changed else obj
    return Injected(
        result, changed, tuple(notes), tuple(config_maps), tuple(starters), tuple(ignored)
    )


def workload_path(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Where ``obj`` keeps its pod template, or ``None`` when inject does not know its kind (a
    ``Rollout`` must be Argo's)."""
    kind = obj["kind"]
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    if kind not in POD_TEMPLATES or GROUPS.get(kind, group) != group:
        return None
    return POD_TEMPLATES[kind]


def looks_like_workload(obj: Mapping[str, Any]) -> str | None:
    """Where an object of a kind inject does not know seems to keep a pod template, if it does
    (``spec.template.spec.containers``, as a custom workload such as a CloneSet has)."""
    for path in (("spec", "template"), ("spec", "jobTemplate", "spec", "template")):
        node: Any = obj
        for key in (*path, "spec"):
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and isinstance(node.get("containers"), list):
            return ".".join(path)
    return None


def pod_template(obj: Mapping[str, Any], path: tuple[str, ...], name: str) -> Any:
    """The pod template (metadata and spec) of a workload; a ConfigError if it has none."""
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    spec = node.get("spec") if isinstance(node, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list):
        where = ".".join((*path, "spec", "containers"))
        raise ConfigError(
            f"{name} has no {where} list, so there is no pod to add warmgate to; inject "
            "complete manifests, not patches."
        )
    return node


def insert_before(mapping: dict[str, Any], key: str, value: Any, before: str) -> None:
    """Set ``mapping[key]``, placed just before ``before`` so the output reads naturally."""
    items = [(k, v) for k, v in mapping.items() if k != key]
    mapping.clear()
    for existing, existing_value in items:
        if existing == before:
            mapping[key] = value
        mapping[existing] = existing_value
    mapping.setdefault(key, value)


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def rewrite_text(
    text: str, transform: Callable[[Any, str], Injected], source: str = "the input"
) -> tuple[InjectedText, list[Injected]]:
    """Apply ``transform`` to every document; unchanged ones come out as the same text."""
    documents = parse(text, source)
    spans = list(document_spans(text))
    pieces: list[str] = []
    results: list[Injected] = []
    for index, (document, span) in enumerate(zip(documents, spans, strict=True)):
        if document is None:
            pieces.append(text[span.start : span.end])
            continue
        done = transform(document, f"document {index + 1} of {source}")
        results.append(done)
        if not done.changed:
            pieces.append(text[span.start : span.end])
            continue
        prefix = text[span.start : span.content_start]
        if prefix and not prefix.endswith("\n"):
            prefix = prefix.rstrip(" \t") + "\n"  # a block mapping cannot start on the --- line
        pieces.append(prefix)
        pieces.append(dump(done.obj))
        pieces.append(text[span.content_end : span.end].lstrip("\n"))
    pieces.append(text[spans[-1].end :] if spans else text)
    notes = tuple(note for done in results for note in done.notes)
    config_maps = tuple(dict.fromkeys(c for done in results for c in done.config_maps))
    return InjectedText("".join(pieces), notes, config_maps, len(results)), results
