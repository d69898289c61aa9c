"""``warmgate inject``: add warmgate to the pod templates in Kubernetes YAML.

Theory of operation: the input is a stream of YAML documents, each a Kubernetes object. Every
workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
CronJob, and the items of a ``List``) gets three things in its pod template:

- the warmgate container: a native sidecar (an ``initContainers`` entry with
  ``restartPolicy: Always`` running ``warmgate run``, with a ``readinessProbe`` on ``/readyz`` and
  no ``startupProbe``), or with ``mode="init"`` a classic init container running
  ``warmgate prime``; appended after the existing init containers, so it starts last, right
  before the app;
- the status volume (an ``emptyDir``) mounted at ``/warmgate``;
- the config volume: a ConfigMap whose ``warmgate.yaml`` key is passed with ``--config``.

Nothing else changes. Documents that are not workloads, and workloads that already have a
container named ``warmgate``, are copied through as the exact text they were (comments,
quoting and order kept), so injecting twice changes nothing. A workload that gets warmgate is
serialised again with its keys in their original order; comments inside it are not kept (as
with ``linkerd inject``).

:func:`inject_object` works on one parsed object and :func:`inject_text` on a whole stream;
both are pure. :func:`inject_source` reads a file or standard input.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from warmgate import __version__
from warmgate.errors import ConfigError
from warmgate.yaml_stream import document_spans, dump, parse, read_source

CONTAINER_NAME = "warmgate"
PORT_NAME = "warmgate"
STATUS_VOLUME = "warmgate-status"
CONFIG_VOLUME = "warmgate-config"
STATUS_DIR = "/warmgate"
CONFIG_DIR = "/etc/warmgate"
CONFIG_KEY = "warmgate.yaml"
DEFAULT_IMAGE = f"ghcr.io/warmgate/warmgate:{__version__}"
RUN_AS = 65532
"""The image's numeric non-root user and group."""

Mode = Literal["sidecar", "init"]
MODES: tuple[Mode, ...] = ("sidecar", "init")

POD_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload kind keeps its pod template (metadata + spec)."""

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NO_VALUE = frozenset({"", "none"})


@dataclass(frozen=True)
class InjectOptions:
    """What to inject. Resource values are Kubernetes quantities; ``""`` or ``"none"`` omits one.

    ``config_map`` may contain ``{name}``, replaced by each workload's ``metadata.name``.
    The CPU limit is off by default: a throttled load generator measures its own throttling
    as the app's latency.
    """

    mode: Mode = "sidecar"
    image: str = DEFAULT_IMAGE
    port: int = 8099
    config_map: str = "{name}-warmgate"
    cpu_request: str = "100m"
    memory_request: str = "64Mi"
    cpu_limit: str = ""
    memory_limit: str = "96Mi"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode: '{self.mode}' is not a mode; write sidecar or init.")
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise ConfigError(f"--image: '{self.image}' is not an image reference.")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port: {self.port} is not a port; pick one from 1 to 65535.")
        if not self.config_map.strip():
            raise ConfigError("--config-map is empty; name the ConfigMap that holds the config.")
        for flag, value in self._resources():
            if value.strip().lower() not in _NO_VALUE and not _QUANTITY.match(value.strip()):
                raise ConfigError(
                    f"--{flag}: '{value}' is not a Kubernetes quantity; write something like "
                    "'100m' for CPU or '64Mi' for memory, or 'none'."
                )

    def _resources(self) -> list[tuple[str, str]]:
        return [
            ("cpu-request", self.cpu_request),
            ("memory-request", self.memory_request),
            ("cpu-limit", self.cpu_limit),
            ("memory-limit", self.memory_limit),
        ]

    def resources(self) -> dict[str, dict[str, str]]:
        """The container's ``resources`` block."""
        blocks: dict[str, dict[str, str]] = {}
        for flag, value in self._resources():
            if value.strip().lower() in _NO_VALUE:
                continue
            resource, kind = flag.split("-")
            blocks.setdefault(f"{kind}s", {})[resource] = value.strip()
        return {key: blocks[key] for key in ("requests", "limits") if key in blocks}


@dataclass(frozen=True)
class Injected:
    """The result of injecting one object: the new object (or the same one) and what happened."""

    obj: Any
    changed: bool
    notes: tuple[str, ...] = ()
    config_maps: tuple[str, ...] = ()


@dataclass(frozen=True)
class InjectedText:
    """The output stream and one sentence per workload seen."""

    text: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    config_maps: tuple[str, ...] = field(default_factory=tuple)


def security_context() -> dict[str, Any]:
    """The hardened container security context warmgate runs with."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def warmgate_container(options: InjectOptions) -> dict[str, Any]:
    """The container to add: a native sidecar running ``run``, or an init container ``prime``."""
    config = f"{CONFIG_DIR}/{CONFIG_KEY}"
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": options.image}
    if options.mode == "sidecar":
        container["restartPolicy"] = "Always"
        container["args"] = ["run", "--config", config, "--status-dir", STATUS_DIR,
                             "--port", str(options.port)]  # fmt: skip
        container["ports"] = [{"name": PORT_NAME, "containerPort": options.port, "protocol": "TCP"}]
        # Readiness only: a startupProbe that waited for warmth would deadlock the pod, since
        # the app starts only after this sidecar counts as started.
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": PORT_NAME},
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 2,
        }
    else:
        container["args"] = ["prime", "--config", config, "--status-dir", STATUS_DIR]
    resources = options.resources()
    if resources:
        container["resources"] = resources
    container["securityContext"] = security_context()
    container["volumeMounts"] = [
        {"name": STATUS_VOLUME, "mountPath": STATUS_DIR},
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    return container


def volumes(config_map: str) -> list[dict[str, Any]]:
    """The status ``emptyDir`` and the config ConfigMap volume."""
    return [
        {"name": STATUS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": CONFIG_VOLUME, "configMap": {"name": config_map}},
    ]


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


def inject_object(obj: Any, options: InjectOptions, where: str = "the document") -> Injected:
    """Add warmgate to ``obj`` if it is a workload without it; never mutates ``obj``."""
    checked = check_object(obj, where)
    kind = checked["kind"]
    if kind.endswith("List") and isinstance(checked.get("items"), list):
        return _inject_list(checked, options, where)
    if kind not in POD_TEMPLATES:
        return Injected(obj, changed=False)
    name = describe_object(checked)
    template = _pod_template(checked, POD_TEMPLATES[kind], name)
    spec = template["spec"]
    present = [
        container.get("name")
        for key in ("initContainers", "containers")
        for container in spec.get(key) or []
        if isinstance(container, Mapping)
    ]
    if CONTAINER_NAME in present:
        return Injected(obj, changed=False, notes=(f"{name} already has warmgate; left as it is",))
    config_map = _config_map_name(checked, options, name)
    _check_conflicts(spec, options, name)
    result = copy.deepcopy(dict(checked))
    new_spec = _pod_template(result, POD_TEMPLATES[kind], name)["spec"]
    container = warmgate_container(options)
    if "initContainers" in new_spec and new_spec["initContainers"] is not None:
        new_spec["initContainers"].append(container)
    else:
        _insert_before(new_spec, "initContainers", [container], before="containers")
    if new_spec.get("volumes") is None:
        new_spec["volumes"] = []
    new_spec["volumes"].extend(volumes(config_map))
    how = "a native sidecar" if options.mode == "sidecar" else "an init container"
    note = f"{name}: warmgate added as {how}, config from ConfigMap {config_map}"
    return Injected(result, changed=True, notes=(note,), config_maps=(config_map,))


def _inject_list(obj: Mapping[str, Any], options: InjectOptions, where: str) -> Injected:
    items = []
    notes: list[str] = []
    config_maps: list[str] = []
    changed = False
    for index, item in enumerate(obj["items"]):
        done = inject_object(item, options, f"{where}, item {index + 1}")
        items.append(done.obj)
        notes.extend(done.notes)
        config_maps.extend(done.config_maps)
        changed = changed or done.changed
    if not changed:
        return Injected(obj, changed=False, notes=tuple(notes))
    result = dict(obj)
    result["items"] = items
    return Injected(result, changed=True, notes=tuple(notes), config_maps=tuple(config_maps))


def _pod_template(obj: Mapping[str, Any], path: tuple[str, ...], name: str) -> Any:
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
    if len(config_map) > 253 or not _DNS_SUBDOMAIN.match(config_map):
        raise ConfigError(
            f"--config-map: '{config_map}' is not a valid ConfigMap name; use lower-case "
            "letters, digits, '-' and '.'."
        )
    return config_map


def _check_conflicts(spec: Mapping[str, Any], options: InjectOptions, name: str) -> None:
    for volume in spec.get("volumes") or []:
        if isinstance(volume, Mapping) and volume.get("name") in (STATUS_VOLUME, CONFIG_VOLUME):
            raise ConfigError(
                f"{name} already has a volume named '{volume.get('name')}'; rename it, or "
                "remove it if it is left over from an earlier warmgate."
            )
    if options.mode != "sidecar":
        return
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if not isinstance(container, Mapping):
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


def _insert_before(mapping: dict[str, Any], key: str, value: Any, before: str) -> None:
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


def inject_text(text: str, options: InjectOptions, source: str = "the input") -> InjectedText:
    """Inject every workload in a YAML stream; everything else comes out as the same text."""
    documents = parse(text, source)
    spans = list(document_spans(text))
    pieces: list[str] = []
    notes: list[str] = []
    config_maps: list[str] = []
    for index, (document, span) in enumerate(zip(documents, spans, strict=True)):
        if document is None:
            pieces.append(text[span.start : span.end])
            continue
        done = inject_object(document, options, f"document {index + 1} of {source}")
        notes.extend(done.notes)
        config_maps.extend(c for c in done.config_maps if c not in config_maps)
        if not done.changed:
            pieces.append(text[span.start : span.end])
            continue
        prefix = text[span.start : span.content_start]
        if prefix and not prefix.endswith("\n"):
            prefix = prefix.rstrip(" \t") + "\n"  # a block mapping cannot start on the --- line
        pieces.append(prefix)
        pieces.append(dump(done.obj))
        pieces.append(text[span.content_end : span.end].lstrip("\n"))
    if spans:
        pieces.append(text[spans[-1].end :])
    else:
        pieces.append(text)
    return InjectedText("".join(pieces), tuple(notes), tuple(config_maps))


def inject_source(source: str, options: InjectOptions) -> InjectedText:
    """Read ``source`` (a path or ``-``) and inject it."""
    name = "standard input" if source == "-" else source
    return inject_text(read_source(source), options, name)
