"""``warmgate doctor``: read manifests, load each warmgate container's config, apply the rules.

Theory of operation:

1. :func:`read_objects` reads files, directories (their ``.yaml``, ``.yml`` and ``.json``
   files) and standard input (``-``), with the bounds ``inject`` reads with, and flattens
   ``List`` objects. A kustomization directory is refused with the command that renders it:
   its files are not what the cluster gets.
2. A pod template opted in with ``warmgate.io/inject: enabled`` and without a warmgate container
   is taken as the admission webhook would create its pods: the webhook's own decision
   (:func:`warmgate.kube.admission.decide`, which reads the annotations through
   :mod:`warmgate.kube.pod_config`) and its patch.
3. Each warmgate container's command line is read by the CLI's own parser of ``run``,
   ``prime`` or ``serve`` (the ``read_args`` the CLI hands in), with its ``WARMGATE_*``
   environment; its ``--config`` file is found through its volume mounts, in a ConfigMap among
   the inputs or the pod's inline-config annotation, and loaded with the loader ``run`` uses
   (:func:`warmgate.config.loader.load_config`, ``${VAR}`` from the container's environment:
   a variable from a Secret or a source not among the inputs gets a placeholder value).
4. The rules (:mod:`warmgate.kube.rules`) decide; this module only gathers.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kube.diagnosis import (
    DEFAULT_PORT,
    Finding,
    GateContainer,
    RunSettings,
    Workload,
    find_workloads,
    items,
    metadata_of,
    same_namespace,
    scalar,
)
from warmgate.kube.rules import diagnose
from warmgate.kube.yaml_stream import parse, read_source

ArgsReader = Callable[[str, Sequence[str], Mapping[str, str]], dict[str, Any]]
"""The CLI's reading of a warmgate command line: ``(command, args, environment)`` to the values
of its parameters by name; a :class:`ConfigError` with the CLI's sentence when it refuses them."""
PLACEHOLDER = "doctor-placeholder"
"""The value of a variable whose value doctor cannot see (a Secret, a source not given)."""
SUFFIXES = (".yaml", ".yml", ".json")
KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass(frozen=True)
class Examination:
    """What doctor found: the findings, and how much it looked at."""

    findings: list[Finding]
    objects: int
    workloads: int


def read_objects(sources: Sequence[str]) -> list[dict[str, Any]]:
    """The Kubernetes objects in ``sources``; a ConfigError naming the unreadable one."""
    if not sources:
        raise ConfigError("no input: give one or more FILEs or directories, or - for stdin.")
    objects: list[dict[str, Any]] = []
    for source in sources:
        for name, text in _texts(source):
            for index, document in enumerate(parse(text, name)):
                if document is not None:
                    objects.extend(_flatten(document, f"document {index + 1} of {name}"))
    return objects


def _texts(source: str) -> Iterator[tuple[str, str]]:
    path = Path(source)
    if source != "-" and path.is_dir():
        for marker in KUSTOMIZATIONS:
            if (path / marker).exists():
                raise ConfigError(
                    f"{source} is a kustomization, whose files are not what the cluster gets; "
                    f"render it first: kubectl kustomize {source} | warmgate doctor -"
                )
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise ConfigError(f"{source} holds no .yaml, .yml or .json file to read.")
        for file in files:
            yield str(file), read_source(str(file))
        return
    if source != "-" and not path.exists():
        raise ConfigError(f"{source} does not exist; check the path, or pass - for stdin.")
    yield ("standard input" if source == "-" else source), read_source(source)


def _flatten(document: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), str) for key in ("apiVersion", "kind")
    ):
        hint = (
            " It looks like a warmgate config: put it in a ConfigMap under the key "
            "'warmgate.yaml', or check it with 'warmgate validate --config FILE'."
            if isinstance(document, dict) and "targets" in document
            else ""
        )
        raise ConfigError(
            f"{where} is not a Kubernetes object (it has no apiVersion and kind); doctor reads "
            f"manifests, such as the output of 'kubectl kustomize' or 'helm template'.{hint}"
        )
    if document["kind"].endswith("List") and isinstance(document.get("items"), list):
        items: list[dict[str, Any]] = []
        for index, item in enumerate(document["items"]):
            items.extend(_flatten(item, f"{where}, item {index + 1}"))
        return items
    return [document]


def examine(
    objects: Sequence[dict[str, Any]],
    read_args: ArgsReader,
    webhook_config_map: str = "warmgate",
) -> Examination:
    """The findings about ``objects``."""
    workloads = find_workloads(objects)
    namespaces = _opted_in_namespaces(objects)
    for workload in workloads:
        if not workload.gates():
            opted = bool(workload.namespace) and workload.namespace in namespaces
            _as_webhook_makes_it(workload, webhook_config_map, opted)
        for gate in workload.gates():
            workload.settings[gate.name] = _settings(workload, gate, objects, read_args)
    gated = sum(1 for w in workloads if w.gates() or w.annotation_problem or w.webhook_skip)
    return Examination(diagnose(workloads, objects), len(objects), gated)


def _opted_in_namespaces(objects: Sequence[Mapping[str, Any]]) -> set[str]:
    """The namespaces among ``objects`` labelled for the webhook (``warmgate.io/inject:
    enabled``), as its namespace entry selects them."""
    from warmgate.kube.selection import OPT_OUT

    opted = set()
    for obj in objects:
        labels = metadata_of(obj).get("labels")
        if not isinstance(labels, Mapping) or obj.get("kind") != "Namespace":
            continue
        if str(labels.get(OPT_OUT, "")).strip() == "enabled":
            opted.add(str(metadata_of(obj).get("name")))
    return opted - {"kube-system", "warmgate-system"}


def _as_webhook_makes_it(workload: Workload, config_map: str, namespace_opted_in: bool) -> None:
    """Put in ``workload`` the pod template the admission webhook makes of its pods, when they
    opt in (by annotation, or by their namespace's label); or why the webhook leaves them."""
    from warmgate.kube.admission import Outcome, decide
    from warmgate.kube.inject_parts import InjectOptions
    from warmgate.kube.pod_config import InvalidAnnotationError, pod_config
    from warmgate.kube.selection import OPT_OUT, RUN_TO_COMPLETION

    if workload.kind in RUN_TO_COMPLETION:
        return  # the webhook leaves the pods of Jobs alone, on purpose
    metadata = dict(metadata_of(workload.template))
    metadata.setdefault("name", workload.name)
    if workload.namespace:
        metadata["namespace"] = workload.namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": workload.spec}
    request = {
        "uid": "doctor", "kind": {"kind": "Pod"}, "operation": "CREATE",
        "namespace": workload.namespace, "object": copy.deepcopy(pod),
    }  # fmt: skip
    options = InjectOptions(config_map=config_map)
    decision = decide(request, options, namespace_opted_in=namespace_opted_in)
    if decision.outcome is Outcome.INVALID:
        try:
            pod_config(workload.annotations)
        except InvalidAnnotationError as exc:  # the whole sentence, not the warning's 256
            workload.annotation_problem = (exc.annotation, str(exc))
        return
    if decision.outcome is Outcome.SKIPPED and decision.warnings:
        opted = str(workload.annotations.get(OPT_OUT, "")).strip().lower()
        if opted != "disabled":  # disabled is a choice; anything else is a surprise
            reason = decision.warnings[0].removeprefix("warmgate: ")
            workload.webhook_skip = (OPT_OUT, reason)
        return
    if decision.outcome is not Outcome.MUTATED:
        return
    import jsonpatch

    mutated = jsonpatch.apply_patch(pod, list(decision.patch))
    workload.template = {"metadata": mutated["metadata"], "spec": mutated["spec"]}
    workload.via_webhook = True


class _Environment(Mapping[str, str]):
    """A container's environment as far as the inputs show it; with ``open_ended``, every
    other variable may be set from a source doctor cannot see, and reads as the placeholder."""

    def __init__(self, known: dict[str, str], open_ended: bool) -> None:
        self.known = known
        self.open_ended = open_ended

    def __getitem__(self, key: str) -> str:
        if key in self.known:
            return self.known[key]
        if self.open_ended:
            return PLACEHOLDER
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)


def _config_map(
    objects: Sequence[Mapping[str, Any]], name: Any, namespace: str
) -> Mapping[str, Any] | None:
    for obj in objects:
        metadata = metadata_of(obj)
        if (
            obj.get("kind") == "ConfigMap"
            and metadata.get("name") == name
            and same_namespace(str(metadata.get("namespace") or ""), namespace)
        ):
            data = obj.get("data")
            return data if isinstance(data, Mapping) else {}
    return None


def _environment(
    container: Mapping[str, Any], objects: Sequence[Mapping[str, Any]], namespace: str
) -> tuple[dict[str, str], _Environment]:
    """The literal variables (for the flags) and the whole environment (for ``${VAR}``)."""
    literal: dict[str, str] = {}
    known: dict[str, str] = {}
    open_ended = False
    for source in items(container.get("envFrom")):
        ref = source.get("configMapRef") if isinstance(source, Mapping) else None
        data = (
            _config_map(objects, ref.get("name"), namespace) if isinstance(ref, Mapping) else None
        )
        if data is None:
            open_ended = True  # a Secret, or a ConfigMap doctor was not given
            continue
        prefix = str(source.get("prefix") or "")
        for key, value in data.items():
            known[prefix + str(key)] = literal[prefix + str(key)] = str(value)
    for env in items(container.get("env")):
        if not isinstance(env, Mapping) or not isinstance(env.get("name"), str):
            continue
        name = env["name"]
        if "value" in env or "valueFrom" not in env:
            known[name] = literal[name] = str(env.get("value") or "")
            continue
        value_from = env.get("valueFrom")
        ref = value_from.get("configMapKeyRef") if isinstance(value_from, Mapping) else None
        data = (
            _config_map(objects, ref.get("name"), namespace) if isinstance(ref, Mapping) else None
        )
        if data is not None and isinstance(ref, Mapping) and scalar(ref.get("key")) in data:
            known[name] = literal[name] = str(data[ref["key"]])
        else:
            known[name] = PLACEHOLDER
    return literal, _Environment(known, open_ended)


@dataclass(frozen=True)
class _ConfigFile:
    """Where a container's ``--config`` file comes from."""

    text: str | None = None
    """Its text, when the inputs hold it."""
    missing_config_map: str = ""
    exists: bool = True


def _config_file(  # noqa: PLR0912 - one branch per kind of volume and mount
    workload: Workload, gate: GateContainer, path: str, objects: Sequence[Mapping[str, Any]]
) -> _ConfigFile | None:
    """The config file at ``path`` in ``gate``'s file system; None when doctor cannot tell."""
    best: Mapping[str, Any] | None = None
    for mount in items(gate.container.get("volumeMounts")):
        if not isinstance(mount, Mapping):
            continue
        mount_path = str(mount.get("mountPath", "")).rstrip("/")
        if (path == mount_path or path.startswith(mount_path + "/")) and (
            best is None or len(mount_path) > len(str(best.get("mountPath", "")).rstrip("/"))
        ):
            best = mount
    if best is None:
        return None
    inside = path[len(str(best.get("mountPath", "")).rstrip("/")) :].lstrip("/")
    if best.get("subPath"):
        inside = str(best["subPath"]) + ("/" + inside if inside else "")
    volume = next(
        (
            v
            for v in items(workload.spec.get("volumes"))
            if isinstance(v, Mapping) and v.get("name") == best.get("name")
        ),
        None,
    )
    if not isinstance(volume, Mapping):
        return None
    if isinstance(volume.get("configMap"), Mapping):
        source = volume["configMap"]
        data = _config_map(objects, source.get("name"), workload.namespace)
        if data is None:
            return _ConfigFile(missing_config_map=str(source.get("name")))
        key = inside
        for item in items(source.get("items")):
            if isinstance(item, Mapping) and item.get("path") == inside:
                key = str(item.get("key"))
        return _ConfigFile(str(data[key])) if key in data else _ConfigFile(exists=False)
    if isinstance(volume.get("downwardAPI"), Mapping):
        for item in items(volume["downwardAPI"].get("items")):
            if not isinstance(item, Mapping) or not isinstance(item.get("fieldRef"), Mapping):
                continue
            field = str(item["fieldRef"].get("fieldPath", ""))
            if item.get("path") == inside and field.startswith("metadata.annotations['"):
                annotation = field.removeprefix("metadata.annotations['").removesuffix("']")
                value = workload.annotations.get(annotation)
                return _ConfigFile(str(value)) if value is not None else _ConfigFile(exists=False)
    return None


def _settings(
    workload: Workload,
    gate: GateContainer,
    objects: Sequence[Mapping[str, Any]],
    read_args: ArgsReader,
) -> RunSettings:
    """What ``gate`` runs with, loaded as ``run`` loads it. A refusal is blamed on the
    container's ``env`` when the same container without its ``WARMGATE_*`` variables loads."""
    literal, environment = _environment(gate.container, objects, workload.namespace)
    settings = _load(workload, gate, objects, read_args, literal, environment)
    flags_from_env = {key for key in literal if key.startswith("WARMGATE_")}
    if settings.problem and flags_from_env:
        without = {key: value for key, value in literal.items() if key not in flags_from_env}
        if not _load(workload, gate, objects, read_args, without, environment).problem:
            return dataclasses.replace(settings, problem_path="env")
    return settings


def _load(  # noqa: PLR0917 - the container and the two views of its environment
    workload: Workload,
    gate: GateContainer,
    objects: Sequence[Mapping[str, Any]],
    read_args: ArgsReader,
    literal: dict[str, str],
    environment: _Environment,
) -> RunSettings:
    try:
        params = read_args(gate.role, gate.args, literal)
    except ConfigError as exc:
        return RunSettings(problem=str(exc), problem_path="args")
    status_dir = params.get("status_dir")
    status = str(status_dir) if status_dir is not None else None
    port = params.get("port")
    port = DEFAULT_PORT if port is None else int(port)
    if gate.role == "serve":
        return RunSettings(port=port, status_dir=status)
    config = params.get("config")
    found = _config_file(workload, gate, str(config), objects) if config is not None else None
    if config is not None and (found is None or found.missing_config_map):
        # The file is in the image, or in a ConfigMap not given: its content is unknown.
        open_run = bool(found and params.get("optional_config_map"))
        return RunSettings(port=port, status_dir=status, runs_open=open_run)
    from warmgate.config.flags import overrides_from_flags
    from warmgate.config.loader import load_config

    with tempfile.TemporaryDirectory(prefix="warmgate-doctor-") as directory:
        local: Path | None = None
        if config is not None and found is not None:
            local = Path(directory) / Path(str(config)).name
            if found.text is not None:
                local.write_text(found.text, encoding="utf-8")
        try:
            loaded, _ = load_config(local, overrides_from_flags(params), environ=environment)
        except ConfigError as exc:
            message = str(exc).replace(str(local), str(config)) if local else str(exc)
            return RunSettings(port=port, status_dir=status, problem=" ".join(message.split()))
    return RunSettings(
        port=loaded.server.port,
        status_dir=str(loaded.status_dir) if loaded.status_dir is not None else None,
        loaded=True,
        wait_timeout=loaded.wait.timeout,
        gate_timeout=loaded.gate.timeout,
        jitter=loaded.load.jitter,
        concurrency=loaded.load.concurrency,
        rate=loaded.load.rate,
    )


def doctor(
    sources: Sequence[str], read_args: ArgsReader, webhook_config_map: str = "warmgate"
) -> Examination:
    """Read ``sources`` and examine every warmgate set-up in them."""
    return examine(read_objects(sources), read_args, webhook_config_map)
