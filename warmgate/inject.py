"""``warmgate inject``: add warmgate to the pod templates in Kubernetes YAML.

Theory of operation: the input is a stream of YAML documents, each a Kubernetes object. Every
selected workload (see :mod:`warmgate.selection`: Pod, Deployment, StatefulSet, DaemonSet,
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
  missing (``run --optional-config-map``, :mod:`warmgate.open_run`), as the webhook injects it;
- the annotation :data:`MARKER`, which says inject added them.

Nothing else changes. Running inject again over its own output rebuilds these from the options
given, in place: the same options change nothing (the document comes out as the same text), new
ones update it. A warmgate container without the marker was written by hand and is left alone;
``warmgate uninject`` (:mod:`warmgate.uninject`) removes what the marker covers.

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
from warmgate.manifests import (
    CONFIG_KEY,
    POD_TEMPLATES,
    Injected,
    InjectedText,
    check_object,
    describe_object,
    insert_before,
    map_list,
    pod_template,
    rewrite_text,
)
from warmgate.selection import Selection, why_skipped
from warmgate.yaml_stream import dump, parse, read_source

CONTAINER_NAME = "warmgate"
PORT_NAME = "warmgate"
STATUS_VOLUME = "warmgate-status"
CONFIG_VOLUME = "warmgate-config"
STATUS_DIR = "/warmgate"
CONFIG_DIR = "/etc/warmgate"
DEFAULT_IMAGE = f"ghcr.io/warmgate/warmgate:{__version__}"
RUN_AS = 65532
"""The image's numeric non-root user and group."""
MARKER = "warmgate.io/injected"
"""Pod template annotation saying inject added warmgate, so it may update or remove it."""
INLINE_CONFIG = "warmgate.io/inline-config"
"""Pod annotation holding the config when it comes with the pod rather than from a ConfigMap."""

Mode = Literal["sidecar", "init"]
MODES: tuple[Mode, ...] = ("sidecar", "init")

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NO_VALUE = frozenset({"", "none"})
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def workload_kind(text: str) -> str:
    """The kind named by ``text`` in any case (``deployment``, ``Deployment``), or a ConfigError."""
    for kind in POD_TEMPLATES:
        if kind.lower() == text.strip().lower():
            return kind
    raise ConfigError(
        f"--kind: '{text}' is not a workload kind inject knows; write one of "
        f"{', '.join(POD_TEMPLATES)}."
    )


@dataclass(frozen=True)
class InjectOptions:
    """What to inject, and where. Resource values are Kubernetes quantities; ``""`` or
    ``"none"`` omits one.

    ``inline_config``, when given, is the config's YAML text, carried in the pod's annotation
    :data:`INLINE_CONFIG` instead of a ConfigMap. ``config_map`` may contain ``{name}``,
    replaced by each workload's ``metadata.name``. ``config_optional``: the pod starts even
    when the ConfigMap does not exist, and the sidecar then runs open (ready, no warm-up).
    The CPU limit is off by default: a throttled load generator measures its own throttling
    as the app's latency. ``run_as_user`` ``"none"`` leaves the user to the platform
    (OpenShift's restricted SCC assigns one from the namespace's range).
    """

    mode: Mode = "sidecar"
    image: str = DEFAULT_IMAGE
    port: int = 8099
    config_map: str = "{name}-warmgate"
    cpu_request: str = "250m"
    memory_request: str = "64Mi"
    cpu_limit: str = ""
    memory_limit: str = "128Mi"
    run_as_user: str = str(RUN_AS)
    env: tuple[str, ...] = ()
    env_from_secret: tuple[str, ...] = ()
    selection: Selection = field(default_factory=Selection)
    emit_config: bool = False
    inline_config: str = ""
    config_optional: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode: '{self.mode}' is not a mode; write sidecar or init.")
        if not self.image.strip() or any(c.isspace() for c in self.image):
            raise ConfigError(f"--image: '{self.image}' is not an image reference.")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port: {self.port} is not a port; pick one from 1 to 65535.")
        if not self.config_map.strip():
            raise ConfigError("--config-map is empty; name the ConfigMap that holds the config.")
        if self.config_optional and self.mode != "sidecar":
            raise ConfigError(
                "an optional ConfigMap needs --mode sidecar: only the sidecar can run open "
                "without a config, an init container would fail."
            )
        for flag, value in self._resources():
            if value.strip().lower() not in _NO_VALUE and not _QUANTITY.match(value.strip()):
                raise ConfigError(
                    f"--{flag}: '{value}' is not a Kubernetes quantity; write something like "
                    "'100m' for CPU or '64Mi' for memory, or 'none'."
                )
        self._check_additions()

    def _check_additions(self) -> None:
        if self.run_as_user.lower() != "none" and not (
            self.run_as_user.isdigit() and int(self.run_as_user) > 0
        ):
            raise ConfigError(
                f"--run-as-user: '{self.run_as_user}' is not a user; write a numeric user id "
                "above 0, or 'none' to leave it to the platform (OpenShift)."
            )
        for item in self.env:
            env_var, equals, _ = item.partition("=")
            if not equals or not _ENV_NAME.match(env_var):
                raise ConfigError(
                    f"--env: '{item.partition('=')[0]}...' is not NAME=VALUE with a valid "
                    "variable name; write e.g. --env TZ=UTC."
                )
        for secret in self.env_from_secret:
            if not _DNS_SUBDOMAIN.match(secret):
                raise ConfigError(
                    f"--env-from-secret: '{secret}' is not a Secret name; use lower-case "
                    "letters, digits, '-' and '.'."
                )
        for kind in self.selection.kinds:
            workload_kind(kind)

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


def security_context(run_as_user: str = str(RUN_AS)) -> dict[str, Any]:
    """The hardened container security context warmgate runs with (Pod Security "restricted").

    ``run_as_user`` ``"none"`` leaves the user and group to the platform.
    """
    context: dict[str, Any] = {"runAsNonRoot": True}
    if run_as_user.lower() != "none":
        context["runAsUser"] = int(run_as_user)
        context["runAsGroup"] = int(run_as_user)
    context.update({
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })  # fmt: skip
    return context


def warmgate_container(options: InjectOptions, config_map: str = "") -> dict[str, Any]:
    """The container to add: a native sidecar running ``run``, or an init container ``prime``.

    With ``options.config_optional``, the sidecar is told which ConfigMap (``config_map``) may
    be missing, so that it runs open and names it instead of exiting.
    """
    config = f"{CONFIG_DIR}/{CONFIG_KEY}"
    container: dict[str, Any] = {"name": CONTAINER_NAME, "image": options.image}
    if options.mode == "sidecar":
        container["restartPolicy"] = "Always"
        container["args"] = ["run", "--config", config, "--status-dir", STATUS_DIR,
                             "--port", str(options.port)]  # fmt: skip
        if options.config_optional and config_map:
            container["args"] += ["--optional-config-map", config_map]
    else:
        container["args"] = ["prime", "--config", config, "--status-dir", STATUS_DIR]
    if options.env:
        container["env"] = [
            {"name": name, "value": value}
            for name, _, value in (item.partition("=") for item in options.env)
        ]
    if options.env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in options.env_from_secret]
    if options.mode == "sidecar":
        container["ports"] = [{"name": PORT_NAME, "containerPort": options.port, "protocol": "TCP"}]
        # Readiness only: a startupProbe that waited for warmth would deadlock the pod, since
        # the app starts only after this sidecar counts as started.
        container["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": PORT_NAME},
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 2,
        }
        # /livez fails only when run's supervisor loop stalls: generous, never a busy warm-up.
        container["livenessProbe"] = {
            "httpGet": {"path": "/livez", "port": PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        }
    resources = options.resources()
    if resources:
        container["resources"] = resources
    container["securityContext"] = security_context(options.run_as_user)
    container["volumeMounts"] = [
        {"name": STATUS_VOLUME, "mountPath": STATUS_DIR},
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    return container


def volumes(config_map: str, inline: bool = False, optional: bool = False) -> list[dict[str, Any]]:
    """The status ``emptyDir`` and the config volume: a ConfigMap (``optional``: the pod starts
    without it), or the inline annotation."""
    field_path = f"metadata.annotations['{INLINE_CONFIG}']"
    config: dict[str, Any] = (
        {"downwardAPI": {"items": [{"path": CONFIG_KEY, "fieldRef": {"fieldPath": field_path}}]}}
        if inline
        else {"configMap": {"name": config_map, **({"optional": True} if optional else {})}}
    )
    return [
        {"name": STATUS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": CONFIG_VOLUME, **config},
    ]


def inject_object(obj: Any, options: InjectOptions, where: str = "the document") -> Injected:
    """Add warmgate to ``obj`` if it is a selected workload, or bring inject's warmgate there
    up to date with ``options``; never mutates ``obj``."""
    checked = check_object(obj, where)
    kind = checked["kind"]
    if kind.endswith("List") and isinstance(checked.get("items"), list):
        return map_list(checked, lambda item, at: inject_object(item, options, at), where)
    if kind not in POD_TEMPLATES:
        return Injected(obj, changed=False)
    name = describe_object(checked)
    template = pod_template(checked, POD_TEMPLATES[kind], name)
    reason = why_skipped(checked, kind, template, options.selection)
    if reason:
        return Injected(obj, changed=False, notes=(f"{name}: {reason}",))
    ours = is_injected(template)
    if has_warmgate(template["spec"]) and not ours:
        note = f"{name} has a warmgate container that inject did not add; left as it is"
        return Injected(obj, changed=False, notes=(note,))
    config_map = "" if options.inline_config else _config_map_name(checked, options, name)
    _check_conflicts(template["spec"], options, name, ours)
    result = copy.deepcopy(dict(checked))
    _apply(pod_template(result, POD_TEMPLATES[kind], name), options, config_map)
    starters: tuple[tuple[str, dict[str, Any]], ...] = ()
    if options.emit_config:
        from warmgate.starter import starter_config_map

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


def _put(items: list[Any], item: dict[str, Any]) -> None:
    """Replace the entry with ``item``'s name, or append ``item``."""
    for index, existing in enumerate(items):
        if isinstance(existing, Mapping) and existing.get("name") == item["name"]:
            items[index] = item
            return
    items.append(item)


def is_injected(template: Mapping[str, Any]) -> bool:
    """Whether inject added the warmgate of this pod template (it carries :data:`MARKER`)."""
    metadata = template.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return isinstance(annotations, Mapping) and str(annotations.get(MARKER)).lower() == "true"


def has_warmgate(spec: Mapping[str, Any]) -> bool:
    """Whether any container of the pod spec is named ``warmgate``."""
    return any(
        isinstance(container, Mapping) and container.get("name") == CONTAINER_NAME
        for key in ("initContainers", "containers")
        for container in spec.get(key) or []
    )


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
