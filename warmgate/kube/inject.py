"""``warmgate inject``: add warmgate to the pod templates in Kubernetes YAML.

Theory of operation: the input is a stream of YAML documents, each a Kubernetes object. Every
selected workload (see :mod:`warmgate.kube.selection`: Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, ReplicationController, and on request Job and CronJob; the items of a ``List`` too)
gets four things in its pod template:

- the warmgate container: a native sidecar (an ``initContainers`` entry with
  ``restartPolicy: Always`` running ``warmgate run``, with a ``readinessProbe`` on ``/readyz`` and
  no ``startupProbe``), or with ``mode="init"`` a classic init container running
  ``warmgate prime``; appended after the existing init containers, so it starts last, right
  before the app;
- the status volume (an ``emptyDir``) mounted at ``/warmgate``;
- the config volume: a ConfigMap whose ``warmgate.yaml`` key is passed with ``--config``, or with
  ``inline_config`` a ``downwardAPI`` volume that reads the config from the pod's own annotation
  :data:`INLINE_CONFIG` (the admission webhook writes it from validated annotations); with
  ``config_optional`` the ConfigMap is ``optional: true`` and the sidecar runs open while it is
  missing (``run --optional-config-map``, :mod:`warmgate.runtime.open_run`), as the webhook injects
  it;
- the annotation :data:`MARKER`, which says inject added them.

Nothing else changes. Running inject again over its own output rebuilds these from the options
given, in place: the same options change nothing (the document comes out as the same text), new
ones update it. A warmgate container without the marker was written by hand and is left alone;
``warmgate uninject`` (:mod:`warmgate.kube.uninject`) removes what the marker covers.

What is added (the container, the volumes, the options and names) is built in
:mod:`warmgate.kube.inject_parts`; this module walks the documents and puts it in place.
:func:`inject_object` works on one parsed object and :func:`inject_text` on a whole stream;
both are pure. :func:`inject_source` reads a file or standard input.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kube.inject_parts import (
    CONFIG_VOLUME,
    CONTAINER_NAME,
    DEFAULT_IMAGE,
    DNS_SUBDOMAIN,
    INLINE_CONFIG,
    MARKER,
    PORT_NAME,
    PULL_SECRETS,
    STATUS_VOLUME,
    InjectOptions,
    has_warmgate,
    is_injected,
    put_mesh_exclusion,
    put_pull_secrets,
    volumes,
    warmgate_container,
    workload_kind,
)
from warmgate.kube.manifests import (
    POD_TEMPLATES,
    Injected,
    InjectedText,
    check_object,
    describe_object,
    insert_before,
    looks_like_workload,
    map_list,
    pod_template,
    rewrite_text,
    workload_path,
)
from warmgate.kube.pod_config import RESOURCES, InvalidAnnotationError, pod_resources
from warmgate.kube.selection import owned_reason, why_skipped
from warmgate.kube.yaml_stream import dump, parse, read_source

__all__ = [
    "CONFIG_VOLUME",
    "CONTAINER_NAME",
    "DEFAULT_IMAGE",
    "INLINE_CONFIG",
    "MARKER",
    "PULL_SECRETS",
    "STATUS_VOLUME",
    "InjectOptions",
    "has_warmgate",
    "inject_object",
    "inject_source",
    "inject_text",
    "is_injected",
    "workload_kind",
]
"""inject's public names: the walking is here, the parts in :mod:`warmgate.kube.inject_parts`."""


def inject_object(
    obj: Any, options: InjectOptions, where: str = "the document", *, owned: bool = False
) -> Injected:
    """Add warmgate to ``obj`` if it is a selected workload, or bring inject's warmgate there
    up to date with ``options``; never mutates ``obj``.

    An object with an owner is left alone (its owner would undo the change) unless ``owned``:
    the admission webhook changes pods, which all have one.
    """
    checked = check_object(obj, where)
    kind = checked["kind"]
    if kind.endswith("List") and isinstance(checked.get("items"), list):
        return map_list(
            checked, lambda item, at: inject_object(item, options, at, owned=owned), where
        )
    name = describe_object(checked)
    path = workload_path(checked)
    if path is None or (kind == "Rollout" and "template" not in _mapping(checked.get("spec"))):
        return _not_a_workload(checked, name) if path is None else _by_reference(checked, name)
    template = pod_template(checked, path, name)
    reason = (None if owned else owned_reason(checked)) or why_skipped(
        checked, kind, template, options.selection
    )
    if reason:
        return Injected(obj, changed=False, notes=(f"{name}: {reason}",))
    options = _with_pod_resources(template, options, name)
    ours = is_injected(template)
    if has_warmgate(template["spec"]) and not ours:
        note = f"{name} has a warmgate container that inject did not add; left as it is"
        return Injected(obj, changed=False, notes=(note,))
    config_map = "" if options.inline_config else _config_map_name(checked, options, name)
    _check_conflicts(template["spec"], options, name, ours)
    result = copy.deepcopy(dict(checked))
    _apply(pod_template(result, path, name), options, config_map)
    starters: tuple[tuple[str, dict[str, Any]], ...] = ()
    if options.emit_config:
        from warmgate.kube.starter import starter_config_map

        starters = ((config_map, starter_config_map(checked, template, config_map, name)),)
    if result == checked:
        note = f"{name} already has this warmgate; left as it is"
        return Injected(obj, changed=False, notes=(note,), starters=starters)
    how = "a native sidecar" if options.mode == "sidecar" else "an init container"
    verb = "updated" if ours else "added"
    source = f"ConfigMap {config_map}" if config_map else f"the annotation {INLINE_CONFIG}"
    note = f"{name}: warmgate {verb} as {how}, config from {source}"
    return Injected(result, True, (note,), (config_map,) if config_map else (), starters)


def _apply(template: dict[str, Any], options: InjectOptions, config_map: str) -> None:
    """Put inject's container, volumes and marker into ``template``, replacing its own in place."""
    spec = template["spec"]
    if spec.get("initContainers") is None:
        insert_before(spec, "initContainers", [], before="containers")
    _put(spec["initContainers"], warmgate_container(options, config_map))
    if spec.get("volumes") is None:
        spec["volumes"] = []
    optional = options.config_optional and not options.inline_config
    for volume in volumes(config_map, inline=bool(options.inline_config), optional=optional):
        _put(spec["volumes"], volume)
    if not isinstance(template.get("metadata"), dict):
        insert_before(template, "metadata", {}, before="spec")
    metadata = template["metadata"]
    if not isinstance(metadata.get("annotations"), dict):
        metadata["annotations"] = {}
    metadata["annotations"][MARKER] = "true"
    if options.inline_config:
        metadata["annotations"][INLINE_CONFIG] = options.inline_config
    else:
        metadata["annotations"].pop(INLINE_CONFIG, None)
    put_pull_secrets(template, options.image_pull_secrets)
    put_mesh_exclusion(template, options)


def _not_a_workload(obj: Mapping[str, Any], name: str) -> Injected:
    """An object of a kind inject does not change: said once per object when it seems to have a
    pod template (a custom workload), else counted for the summary."""
    kind, version = obj["kind"], obj.get("apiVersion")
    template = looks_like_workload(obj)
    if template is None:
        return Injected(obj, changed=False, ignored=(kind,))
    known = ", ".join(k if k != "Rollout" else "Rollout (argoproj.io)" for k in POD_TEMPLATES)
    note = (
        f"{name}: skipped: inject does not know the kind {kind} ({version}), though it has a "
        f"pod template at {template}; inject knows {known}"
    )
    return Injected(obj, changed=False, notes=(note,))


def _by_reference(obj: Mapping[str, Any], name: str) -> Injected:
    """An Argo Rollout that takes its pod template from a Deployment (``spec.workloadRef``)."""
    reference = _mapping(_mapping(obj.get("spec")).get("workloadRef"))
    target = f"{reference.get('kind', 'Deployment')} {reference.get('name', '(unnamed)')}"
    note = (
        f"{name}: skipped: it takes its pod template from spec.workloadRef ({target}); "
        f"inject {target} instead"
    )
    return Injected(obj, changed=False, notes=(note,))


def _with_pod_resources(
    template: Mapping[str, Any], options: InjectOptions, name: str
) -> InjectOptions:
    """``options`` with the sidecar resources the pod's own annotations ask for."""
    annotations = _mapping(_mapping(template.get("metadata")).get("annotations"))
    defaults = {field: getattr(options, field) for field in RESOURCES.values()}
    try:
        chosen = pod_resources(annotations, defaults)
    except InvalidAnnotationError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    given: dict[str, Any] = dict(chosen)
    return dataclasses.replace(options, **given) if given else options


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _put(items: list[Any], item: dict[str, Any]) -> None:
    """Replace the entry with ``item``'s name, or append ``item``."""
    for index, existing in enumerate(items):
        if isinstance(existing, Mapping) and existing.get("name") == item["name"]:
            items[index] = item
            return
    items.append(item)


def _config_map_name(obj: Mapping[str, Any], options: InjectOptions, name: str) -> str:
    config_map = options.config_map
    if "{name}" in config_map:
        metadata = obj.get("metadata")
        own = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(own, str) or not own:
            raise ConfigError(
                f"{name} has no metadata.name to build the ConfigMap name "
                f"'{config_map}' from; pass --config-map NAME."
            )
        config_map = config_map.replace("{name}", own)
    if len(config_map) > 253 or not DNS_SUBDOMAIN.match(config_map):
        raise ConfigError(
            f"--config-map: '{config_map}' is not a valid ConfigMap name; use lower-case "
            "letters, digits, '-' and '.'."
        )
    return config_map


def _check_conflicts(
    spec: Mapping[str, Any], options: InjectOptions, name: str, ours: bool
) -> None:
    """Refuse volume names and ports that clash with inject's; its own warmgate does not count."""
    for volume in [] if ours else spec.get("volumes") or []:
        if isinstance(volume, Mapping) and volume.get("name") in (STATUS_VOLUME, CONFIG_VOLUME):
            raise ConfigError(
                f"{name} already has a volume named '{volume.get('name')}'; rename it, or "
                "remove it if it is left over from an earlier warmgate."
            )
    if options.mode != "sidecar":
        return
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, Mapping) or container.get("name") == CONTAINER_NAME:
                continue
            for port in container.get("ports") or []:
                if not isinstance(port, Mapping):
                    continue
                if port.get("containerPort") == options.port or port.get("name") == PORT_NAME:
                    raise ConfigError(
                        f"{name}: container '{container.get('name')}' already uses port "
                        f"{port.get('containerPort')} ('{port.get('name', '')}'); pick another "
                        "--port for warmgate."
                    )


def inject_text(text: str, options: InjectOptions, source: str = "the input") -> InjectedText:
    """Inject every workload in a YAML stream; everything else comes out as the same text.

    With ``emit_config``, a starter ConfigMap follows the stream for every ConfigMap name the
    injected workloads use that the stream does not define already.
    """
    result, results = rewrite_text(text, lambda doc, at: inject_object(doc, options, at), source)
    ignored = Counter(kind for done in results for kind in done.ignored)
    if ignored:
        kinds = ", ".join(f"{kind} ({count})" for kind, count in sorted(ignored.items()))
        summary = f"left as they are, having no pod template: {kinds}"
        result = dataclasses.replace(result, notes=(*result.notes, summary))
    if not options.emit_config:
        return result
    defined = {
        str(obj.get("metadata", {}).get("name"))
        for obj in parse(text, source)
        if isinstance(obj, Mapping) and obj.get("kind") == "ConfigMap"
    }
    extra: list[str] = []
    notes = list(result.notes)
    written: set[str] = set()
    for name, config_map in (starter for done in results for starter in done.starters):
        if name in defined:
            notes.append(f"ConfigMap {name} is in the input already; no starter written for it")
        elif name not in written:
            extra.append(dump(config_map))
            notes.append(f"starter ConfigMap {name} written: make the choices marked CHOOSE")
        written.add(name)
    out = result.text
    for document in extra:
        out += ("" if not out or out.endswith("\n") else "\n") + "---\n" + document
    return InjectedText(out, tuple(notes), (), result.objects)


def inject_source(source: str, options: InjectOptions) -> InjectedText:
    """Read ``source`` (a path or ``-``) and inject it."""
    name = "standard input" if source == "-" else source
    return inject_text(read_source(source), options, name)
