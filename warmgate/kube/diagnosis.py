"""What ``warmgate doctor`` reasons about: findings, workloads and their warmgate containers.

Theory of operation: ``doctor`` reads Kubernetes objects (:mod:`warmgate.kube.doctor` does the
reading and loads each warmgate container's config with the loader ``run`` uses) and hands them
here as plain data. :func:`find_workloads` finds every pod template among them, and
:func:`gate_containers` the containers in it that run warmgate, however they were added (by
``inject``, the webhook or by hand): a container named ``warmgate``, or one whose image is
warmgate's, running ``run``, ``prime`` or ``serve``. The settings of each (its port, status
directory and, when its config could be loaded, the timeouts and load) arrive as
:class:`RunSettings`; the rules (:mod:`warmgate.kube.rules`) turn all of it into
:class:`Finding`\\ s. Pure: no I/O, no YAML, no environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from warmgate.kube.manifests import POD_TEMPLATES

ROLES = ("run", "prime", "serve")
"""The warmgate commands that make a container part of the gate."""
DEFAULT_PORT = 8099
"""The port ``run`` and ``serve`` listen on unless told otherwise."""
READY_PATH = "/readyz"
_IMAGE_NAME = re.compile(r"(^|/)warmgate([:@]|$)")


class Severity(Enum):
    """How bad a finding is. Errors and warnings make ``doctor`` exit 1; infos do not."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One problem: which rule, how bad, where, what the rollout will do, and the fix."""

    id: str
    severity: Severity
    kind: str
    namespace: str
    name: str
    path: str
    message: str
    fix: str

    @property
    def object(self) -> str:
        """``deployment/web``, as kubectl names it."""
        return f"{self.kind.lower()}/{self.name}"

    def as_dict(self) -> dict[str, str]:
        """The finding as JSON-ready data."""
        return {
            "id": self.id,
            "severity": self.severity.value,
            "object": self.object,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "path": self.path,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class RunSettings:
    """What a warmgate container will run with, as far as the inputs tell.

    ``port`` and ``status_dir`` come from its flags, environment or config; the rest only when
    its config was loaded (``loaded``). ``problem`` is the loader's sentence when the config is
    refused, and ``missing`` names a ConfigMap the config was to come from that is not among the
    inputs (so the config could not be checked).
    """

    port: int = DEFAULT_PORT
    status_dir: str | None = None
    loaded: bool = False
    wait_timeout: float = 0.0
    gate_timeout: float = 0.0
    jitter: float = 0.0
    concurrency: int = 0
    rate: float | None = None
    problem: str = ""
    problem_path: str = "args"
    runs_open: bool = False


@dataclass(frozen=True)
class GateContainer:
    """One container of a pod template that runs warmgate."""

    section: str
    """``initContainers`` or ``containers``."""
    index: int
    container: Mapping[str, Any]
    role: str
    """``run``, ``prime`` or ``serve``."""
    args: tuple[str, ...]
    """The arguments after the command."""

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.container.get("name", ""))

    @property
    def native(self) -> bool:
        """An init container with ``restartPolicy: Always``: a native sidecar."""
        return self.section == "initContainers" and self.container.get("restartPolicy") == "Always"


@dataclass
class Workload:
    """A pod template among the inputs, with what is known about its warmgate containers.

    ``prefix`` is the field path of the pod spec (``spec.template.spec`` for a Deployment);
    ``via_webhook``: the template was taken as the admission webhook would mutate its pods.
    """

    kind: str
    namespace: str
    name: str
    obj: Mapping[str, Any]
    template: Mapping[str, Any]
    prefix: str
    via_webhook: bool = False
    settings: dict[str, RunSettings] = field(default_factory=dict)
    annotation_problem: tuple[str, str] | None = None
    """``(annotation, sentence)`` when the webhook would refuse the pod's annotations."""
    webhook_skip: tuple[str, str] | None = None
    """``(annotation, reason)`` when the pods opt in but the webhook would leave them alone."""

    @property
    def spec(self) -> Mapping[str, Any]:
        """The pod spec."""
        spec = self.template.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @property
    def labels(self) -> Mapping[str, Any]:
        """The pod template's labels."""
        metadata = self.template.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
        return labels if isinstance(labels, Mapping) else {}

    @property
    def annotations(self) -> Mapping[str, Any]:
        """The pod template's annotations."""
        metadata = self.template.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
        return annotations if isinstance(annotations, Mapping) else {}

    def containers(self, section: str) -> list[tuple[int, Mapping[str, Any]]]:
        """The containers of one section with their indexes (entries that are not mappings
        are left out)."""
        items = self.spec.get(section)
        if not isinstance(items, list):
            return []
        return [(index, c) for index, c in enumerate(items) if isinstance(c, Mapping)]

    def gates(self) -> list[GateContainer]:
        """The warmgate containers of this pod template."""
        return gate_containers(self.spec)

    def setting(self, gate: GateContainer) -> RunSettings:
        """What ``gate`` runs with (the defaults when nothing is known)."""
        return self.settings.get(gate.name, RunSettings())

    def path(self, gate_or_section: GateContainer | str, index: int = 0, rest: str = "") -> str:
        """The field path of a container, or of ``rest`` inside it."""
        if isinstance(gate_or_section, GateContainer):
            section, index = gate_or_section.section, gate_or_section.index
        else:
            section = gate_or_section
        base = f"{self.prefix}.{section}[{index}]"
        return f"{base}.{rest}" if rest else base


def items(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty one: a malformed field holds nothing."""
    return value if isinstance(value, list) else []


def scalar(value: Any) -> str | int | None:
    """``value`` if it is a string or a whole number (something a name or port can be), else
    None: manifests are read as they are, and a list where a name belongs must not break a
    lookup."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object's metadata (empty when it has none)."""
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def find_workloads(objects: Sequence[Mapping[str, Any]]) -> list[Workload]:
    """Every pod template among ``objects`` (``List`` items already flattened)."""
    found = []
    for obj in objects:
        kind = obj.get("kind")
        if not isinstance(kind, str) or kind not in POD_TEMPLATES:
            continue
        node: Any = obj
        for key in POD_TEMPLATES[kind]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping) or not isinstance(node.get("spec"), Mapping):
            continue
        metadata = metadata_of(obj)
        prefix = ".".join((*POD_TEMPLATES[kind], "spec"))
        found.append(
            Workload(
                kind=kind,
                namespace=str(metadata.get("namespace") or ""),
                name=str(metadata.get("name") or "(unnamed)"),
                obj=obj,
                template=node,
                prefix=prefix,
            )
        )
    return found


def command_line(container: Mapping[str, Any]) -> list[str]:
    """The container's ``command`` then ``args``, as strings."""
    words: list[str] = []
    for key in ("command", "args"):
        value = container.get(key)
        if isinstance(value, list):
            words.extend(str(word) for word in value)
    return words


def _role(container: Mapping[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    words = command_line(container)
    if isinstance(container.get("command"), list):
        # An explicit command: it must be warmgate itself (the image's entrypoint is replaced).
        if not words or words[0].rsplit("/", 1)[-1] != "warmgate":
            return None
        words = words[1:]
    if words and words[0] in ROLES:
        return words[0], tuple(words[1:])
    return None


def is_warmgate(container: Mapping[str, Any]) -> bool:
    """Whether a container is warmgate's: named ``warmgate`` or running warmgate's image."""
    image = container.get("image")
    named = container.get("name") == "warmgate"
    return named or (isinstance(image, str) and bool(_IMAGE_NAME.search(image)))


def gate_containers(spec: Mapping[str, Any]) -> list[GateContainer]:
    """The containers of a pod spec that run ``warmgate run``, ``prime`` or ``serve``."""
    gates = []
    for section in ("initContainers", "containers"):
        items = spec.get(section)
        for index, container in enumerate(items if isinstance(items, list) else []):
            if not isinstance(container, Mapping) or not is_warmgate(container):
                continue
            role = _role(container)
            if role is not None:
                gates.append(GateContainer(section, index, container, role[0], role[1]))
    return gates


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a Kubernetes label selector (``matchLabels``, ``matchExpressions``) matches
    ``labels``. An empty selector matches everything, as the API server reads it."""
    if not isinstance(selector, Mapping):
        return False
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        return False
    if any(str(labels.get(key)) != str(value) for key, value in match_labels.items()):
        return False
    for expression in items(selector.get("matchExpressions")):
        if not isinstance(expression, Mapping):
            return False
        key, operator = str(expression.get("key")), expression.get("operator")
        values = [str(value) for value in items(expression.get("values"))]
        present = key in labels
        value = str(labels.get(key)) if present else None
        if (
            (operator == "In" and value not in values)
            or (operator == "NotIn" and value in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
            or operator not in ("In", "NotIn", "Exists", "DoesNotExist")
        ):
            return False
    return True


def port_number(container: Mapping[str, Any], port: Any) -> int | None:
    """The number a probe's ``port`` stands for in ``container`` (a named port resolves
    against the container's own ports, as the kubelet resolves it); None when it does not."""
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in items(container.get("ports")):
        if isinstance(declared, Mapping) and declared.get("name") == port:
            number = declared.get("containerPort")
            return number if isinstance(number, int) else None
    return None


def same_namespace(first: str, second: str) -> bool:
    """Namespaces match when equal, or when either is left to ``kubectl apply -n``."""
    return not first or not second or first == second


def finding(  # noqa: PLR0917 - a finding is these six, in the order it is read
    rule: str, severity: Severity, workload: Workload, path: str, message: str, fix: str
) -> Finding:
    """A finding about ``workload``."""
    return Finding(
        rule, severity, workload.kind, workload.namespace, workload.name, path, message, fix
    )
