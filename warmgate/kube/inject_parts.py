"""What ``warmgate inject`` adds to a pod template, as plain data: the names it owns, its options,
the warmgate container and the two volumes, and the predicates that recognise them.

Pure: no documents are walked here (that is :mod:`warmgate.kube.inject`), and nothing is read or
written. The admission webhook and ``uninject`` use the same names, so a pod that one of them
changed is recognised by the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from warmgate import __version__
from warmgate.kernel.errors import ConfigError
from warmgate.kube.manifests import CONFIG_KEY, POD_TEMPLATES
from warmgate.kube.selection import Selection

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
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
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
    events: bool = False
    """The sidecar posts Kubernetes Events about its pod (``run --events``): it gets the pod's
    name, namespace and uid from the downward API. The RBAC stays the user's to grant."""

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
        if self.events and self.mode != "sidecar":
            raise ConfigError(
                "--events needs --mode sidecar: only the sidecar's run posts Events, an init "
                "container's prime does not."
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
            if not DNS_SUBDOMAIN.match(secret):
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


POD_FIELDS = (("POD_NAME", "name"), ("POD_NAMESPACE", "namespace"), ("POD_UID", "uid"))
"""The downward API variables ``--events`` adds, and the pod's field each one holds."""


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
        if options.events:
            container["args"].append("--events")
    else:
        container["args"] = ["prime", "--config", config, "--status-dir", STATUS_DIR]
    env: list[dict[str, Any]] = [
        {"name": name, "value": value}
        for name, _, value in (item.partition("=") for item in options.env)
    ]
    if options.events:
        env += [
            {"name": variable, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.{field}"}}}
            for variable, field in POD_FIELDS
        ]
    if env:
        container["env"] = env
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
