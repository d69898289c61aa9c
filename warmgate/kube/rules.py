"""The rules of ``warmgate doctor``: a warmgate set-up in, the findings (``WG001``...) out.

Theory of operation: :func:`diagnose` takes the workloads (:mod:`warmgate.kube.diagnosis`), each
with the settings of its warmgate containers as the loader read them, and every object among the
inputs (for the ConfigMaps, Services and monitors), and applies each rule of :data:`RULES` to
them. Every finding names the object and the field, says what will happen in the rollout and
how to fix it; docs/doctor.md shows an example of each. Pure: plain data in, findings out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from warmgate.kube.diagnosis import (
    READY_PATH,
    Finding,
    GateContainer,
    Severity,
    Workload,
    finding,
    items,
    metadata_of,
    port_number,
    same_namespace,
    scalar,
)
from warmgate.kube.scrape_rules import monitors, scraping

DEFAULT_PROGRESS_DEADLINE = 600
"""A Deployment's ``progressDeadlineSeconds`` when it sets none."""
CPU_BASE_MILLICORES = 100
"""CPU a primer needs besides its requests: starting Python, loading the config, the window."""
CPU_PER_SLOT_MILLICORES = 25
"""CPU per request kept in flight in a closed loop: ~100 req/s a slot against a fast app, at
~0.25 ms of client CPU a request (docs/benchmarks.md)."""
CPU_PER_RATE_MILLICORES = 0.5
"""CPU per req/s of an open model (``load.rate``): 0.5 ms a request, the top of the measured
0.2-0.5 ms."""
MARKER = "warmgate.io/injected"
"""The annotation inject puts on the pod templates it changed."""
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")

Rule = Callable[[Workload, Sequence[Mapping[str, Any]]], Iterator[Finding]]


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _probe_http(probe: Any) -> Mapping[str, Any] | None:
    if not isinstance(probe, Mapping):
        return None
    http = probe.get("httpGet")
    return http if isinstance(http, Mapping) else None


def _probe_words(probe: Any) -> str:
    if not isinstance(probe, Mapping) or not isinstance(probe.get("exec"), Mapping):
        return ""
    command = probe["exec"].get("command")
    return " ".join(str(word) for word in command) if isinstance(command, list) else ""


def _reads_marker(words: str, status_dirs: set[str]) -> bool:
    """An exec probe that asks warmgate: ``warmgate check``, or the ready marker's path."""
    if re.search(r"\bwarmgate\b.*\bcheck\b", words):
        return True
    return any(f"{directory.rstrip('/')}/ready" in words for directory in status_dirs)


def _status_dirs(workload: Workload) -> set[str]:
    dirs = {workload.setting(gate).status_dir for gate in workload.gates()}
    return {directory for directory in dirs if directory}


def roles(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG009, WG010, WG011: each warmgate command in the place it works in."""
    for gate in workload.gates():
        classic_init = gate.section == "initContainers" and not gate.native
        if gate.role in ("run", "serve") and classic_init:
            yield finding(
                "WG009", Severity.ERROR, workload, workload.path(gate, rest="restartPolicy"),
                f"'warmgate {gate.role}' never exits, and a classic init container must exit "
                "before the app's containers start: the app never starts, and the rollout "
                "stalls at its first pod.",
                "add 'restartPolicy: Always' to make it a native sidecar (Kubernetes 1.29+), "
                "or run 'warmgate prime' there instead.",
            )  # fmt: skip
        elif gate.role == "prime" and (gate.native or gate.section == "containers"):
            where = "a native sidecar" if gate.native else "a regular container"
            yield finding(
                "WG010", Severity.ERROR, workload, workload.path(gate, rest="args"),
                f"'warmgate prime' exits when its warm-up ends, and as {where} the kubelet "
                "restarts it: it primes again and again, with back-off, for the pod's life.",
                "run 'warmgate prime' as a classic init container (no restartPolicy), or "
                "'warmgate run' as the sidecar.",
            )  # fmt: skip
        elif (
            gate.role == "run"
            and gate.section == "containers"
            and workload.kind
            in (
                "Job",
                "CronJob",
            )
        ):
            yield finding(
                "WG011", Severity.ERROR, workload, workload.path(gate),
                "'warmgate run' never exits, and as a regular container of a Job's pod it keeps "
                "the pod running after the work is done: the Job never completes.",
                "make it a native sidecar (initContainers with 'restartPolicy: Always'), which "
                "Kubernetes stops when the Job's containers have finished.",
            )  # fmt: skip
        elif gate.role == "run" and gate.section == "containers":
            yield finding(
                "WG011", Severity.INFO, workload, workload.path(gate),
                "'warmgate run' is a regular container: it starts together with the app "
                "instead of before it, and is stopped together with it. Its readiness still "
                "counts toward Pod Ready, so this works, on any Kubernetes version.",
                "on Kubernetes 1.29+ move it to initContainers with 'restartPolicy: Always' "
                "(a native sidecar), as 'warmgate inject' writes it.",
            )  # fmt: skip


def readiness(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG001 (nothing in the pod's readiness asks warmgate) and WG012 (a probe aimed at
    warmgate on a port where it does not listen)."""
    runs = [gate for gate in workload.gates() if gate.role == "run"]
    if not runs:
        return
    ports = {workload.setting(gate).port for gate in runs}
    consulted = False
    for gate in runs:
        probe = gate.container.get("readinessProbe")
        http = _probe_http(probe)
        if http is not None and str(http.get("path", "")).startswith(READY_PATH):
            consulted = True
            yield from _port_check(workload, gate.container, workload.path(gate), http, ports)
        elif _reads_marker(_probe_words(probe), _status_dirs(workload)):
            consulted = True
    apps = [
        (index, container)
        for index, container in workload.containers("containers")
        if not any(g.section == "containers" and g.index == index for g in runs)
    ]
    for index, container in apps:
        probe = container.get("readinessProbe")
        http = _probe_http(probe)
        here = workload.path("containers", index)
        if http is not None and str(http.get("path", "")).startswith(READY_PATH):
            consulted = True
            yield from _port_check(workload, container, here, http, ports)
        elif _reads_marker(_probe_words(probe), _status_dirs(workload)):
            consulted = True
    if consulted:
        return
    gate = runs[0]
    probe = gate.container.get("readinessProbe")
    path = workload.path(gate, rest="readinessProbe")
    if _probe_http(probe) is not None:
        path += ".httpGet.path"
    port = workload.setting(gate).port
    yield finding(
        "WG001", Severity.ERROR, workload, path,
        "nothing in the pod's readiness asks warmgate (no readinessProbe on /readyz, no exec "
        "probe on the ready marker): the pod turns Ready, and takes traffic, as soon as the "
        "app's own probe passes, cold, and warmgate's verdict is ignored.",
        f"give the '{gate.name}' container 'readinessProbe: {{httpGet: {{path: /readyz, port: "
        f"{port}}}}}', or point the app's readinessProbe there.",
    )  # fmt: skip


def _port_check(
    workload: Workload,
    container: Mapping[str, Any],
    where: str,
    http: Mapping[str, Any],
    ports: set[int],
) -> Iterator[Finding]:
    number = port_number(container, http.get("port"))
    if number in ports:
        return
    listening = ", ".join(str(port) for port in sorted(ports))
    said = http.get("port")
    why = (
        f"names the port '{said}', which container '{container.get('name')}' does not declare"
        if number is None
        else f"asks port {number}"
    )
    yield finding(
        "WG012", Severity.ERROR, workload, f"{where}.readinessProbe.httpGet.port",
        f"the readinessProbe on /readyz {why}, but warmgate listens on {listening}: the probe "
        "never succeeds, the pod never turns Ready, and the rollout stalls.",
        f"set the probe's port to {listening}, the port warmgate's --port (or server.port) "
        "says.",
    )  # fmt: skip


def startup_probe(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG003: a startupProbe on a native warmgate sidecar holds the app back."""
    for gate in workload.gates():
        probe = gate.container.get("startupProbe")
        if not gate.native or not isinstance(probe, Mapping):
            continue
        http = _probe_http(probe)
        waits = (http is not None and str(http.get("path", "")).startswith(READY_PATH)) or (
            _reads_marker(_probe_words(probe), _status_dirs(workload))
        )
        if waits:
            message = (
                "the app's containers start only once this sidecar's startupProbe passes, and "
                "this one waits for warmth, which needs the app: the pod deadlocks, never "
                "turns Ready, and the rollout stalls."
            )
        else:
            message = (
                "the app's containers start only once this sidecar's startupProbe passes: every "
                "pod's start is held back by it, for nothing warmgate needs."
            )
        yield finding(
            "WG003", Severity.ERROR if waits else Severity.WARNING, workload,
            workload.path(gate, rest="startupProbe"), message,
            "remove the startupProbe; warmgate's sidecar needs its readinessProbe only.",
        )  # fmt: skip


def progress_deadline(
    workload: Workload, objects: Sequence[Mapping[str, Any]]
) -> Iterator[Finding]:
    """WG002: a Deployment that gives up on a rollout before a pod can have warmed."""
    if workload.kind != "Deployment":
        return
    spec = workload.obj.get("spec")
    given = spec.get("progressDeadlineSeconds") if isinstance(spec, Mapping) else None
    deadline = given if isinstance(given, int | float) else DEFAULT_PROGRESS_DEADLINE
    for gate in workload.gates():
        settings = workload.setting(gate)
        if gate.role not in ("run", "prime") or not settings.loaded:
            continue
        needed = settings.wait_timeout + settings.gate_timeout + settings.jitter
        if deadline >= needed:
            continue
        said = "" if isinstance(given, int | float) else " (the default)"
        yield finding(
            "WG002", Severity.WARNING, workload, "spec.progressDeadlineSeconds",
            f"a new pod may take up to {_seconds(needed)} to turn Ready (wait.timeout "
            f"{_seconds(settings.wait_timeout)} + gate.timeout {_seconds(settings.gate_timeout)}"
            f" + load.jitter {_seconds(settings.jitter)}), but the Deployment reports the "
            f"rollout failed (ProgressDeadlineExceeded) after {deadline:g}s{said} without a new "
            "pod available: 'kubectl rollout status' and CD tools give up on a rollout that is "
            "only warming.",
            f"set spec.progressDeadlineSeconds to at least {math.ceil(needed)}, or shorten the "
            "timeouts.",
        )  # fmt: skip
        return


def millicores(quantity: Any) -> float | None:
    """A CPU quantity (``500m``, ``1``, ``0.5``) in millicores; None when it is not one."""
    match = _QUANTITY.match(str(quantity).strip())
    if match is None:
        return None
    value = float(match.group(1))
    return value if match.group(2) else value * 1000


def needed_millicores(concurrency: int, rate: float | None) -> float:
    """The CPU a warm-up at ``concurrency`` (or capped at ``rate`` req/s) needs unthrottled."""
    if rate is not None:
        return CPU_BASE_MILLICORES + CPU_PER_RATE_MILLICORES * rate
    return CPU_BASE_MILLICORES + CPU_PER_SLOT_MILLICORES * concurrency


def cpu_limit(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG008: a CPU limit that throttles the load generator at the load the config asks for."""
    for gate in workload.gates():
        settings = workload.setting(gate)
        if gate.role not in ("run", "prime") or not settings.loaded:
            continue
        resources = gate.container.get("resources")
        limits = resources.get("limits") if isinstance(resources, Mapping) else None
        limit = millicores(limits.get("cpu")) if isinstance(limits, Mapping) else None
        needed = needed_millicores(settings.concurrency, settings.rate)
        if limit is None or limit >= needed:
            continue
        load = (
            f"load.rate {settings.rate:g} req/s"
            if settings.rate is not None
            else f"load.concurrency {settings.concurrency}"
        )
        yield finding(
            "WG008", Severity.WARNING, workload, workload.path(gate, rest="resources.limits.cpu"),
            f"a CPU limit of {limit:g}m is below the ~{needed:g}m that {load} needs: the "
            "throttled load generator measures its own throttling as the app's latency, so a "
            "warm app may miss the gate and wait out gate.timeout.",
            f"remove the CPU limit (warmgate ships without one), raise it to at least "
            f"{math.ceil(needed)}m, or lower the load.",
        )  # fmt: skip


def config(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG007: a config the loader refuses (what ``warmgate validate`` says), or webhook
    annotations the webhook refuses."""
    if workload.annotation_problem is not None:
        annotation, sentence = workload.annotation_problem
        path = workload.prefix.removesuffix("spec") + f"metadata.annotations['{annotation}']"
        yield finding(
            "WG007", Severity.ERROR, workload, path,
            f"the webhook admits the pods without warmgate, so they are never warmed: "
            f"{sentence}",
            "fix the annotation as the sentence says; 'warmgate validate' with the same flags "
            "shows the config it makes.",
        )  # fmt: skip
    for gate in workload.gates():
        settings = workload.setting(gate)
        if settings.problem:
            yield finding(
                "WG007", Severity.ERROR, workload,
                workload.path(gate, rest=settings.problem_path),
                f"'warmgate {gate.role}' refuses its config and exits 2 at start: the pod "
                f"never turns Ready (a crash loop). The loader says: {settings.problem}",
                "fix the config as the sentence says, and check it with 'warmgate validate "
                "--config FILE' before the rollout.",
            )  # fmt: skip


def _config_maps(objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [
        (str(metadata_of(obj).get("namespace") or ""), str(metadata_of(obj).get("name")))
        for obj in objects
        if obj.get("kind") == "ConfigMap"
    ]


def config_map_refs(workload: Workload, gate: GateContainer) -> Iterator[tuple[str, str, bool]]:
    """``(ConfigMap name, field path, optional)`` for each ConfigMap a warmgate container
    uses: mounted volumes, ``envFrom`` and ``env`` references."""
    mounted = {
        scalar(mount.get("name"))
        for mount in items(gate.container.get("volumeMounts"))
        if isinstance(mount, Mapping)
    }
    for index, volume in enumerate(items(workload.spec.get("volumes"))):
        if not isinstance(volume, Mapping) or scalar(volume.get("name")) not in mounted:
            continue
        source = volume.get("configMap")
        if isinstance(source, Mapping) and source.get("name"):
            path = f"{workload.prefix}.volumes[{index}].configMap.name"
            yield str(source["name"]), path, bool(source.get("optional"))
    for index, source in enumerate(items(gate.container.get("envFrom"))):
        ref = source.get("configMapRef") if isinstance(source, Mapping) else None
        if isinstance(ref, Mapping) and ref.get("name"):
            path = workload.path(gate, rest=f"envFrom[{index}].configMapRef.name")
            yield str(ref["name"]), path, bool(ref.get("optional"))
    for index, env in enumerate(items(gate.container.get("env"))):
        value_from = env.get("valueFrom") if isinstance(env, Mapping) else None
        ref = value_from.get("configMapKeyRef") if isinstance(value_from, Mapping) else None
        if isinstance(ref, Mapping) and ref.get("name"):
            path = workload.path(gate, rest=f"env[{index}].valueFrom.configMapKeyRef.name")
            yield str(ref["name"]), path, bool(ref.get("optional"))


def missing_config_maps(
    workload: Workload, objects: Sequence[Mapping[str, Any]]
) -> Iterator[Finding]:
    """WG006: a ConfigMap warmgate uses that is not among the inputs."""
    known = _config_maps(objects)
    # inject's (and the webhook's) output comes without its ConfigMaps, which inject asks for
    # separately: with no ConfigMap among the inputs, doctor takes them to live in the cluster.
    # Once the inputs carry ConfigMaps, they are taken as the whole set, and a missing one as
    # a mistake (a typo, a file left out of the kustomization).
    made = workload.via_webhook or str(workload.annotations.get(MARKER, "")).lower() == "true"
    severity = Severity.INFO if made and not known else Severity.WARNING
    seen: set[str] = set()
    for gate in workload.gates():
        for name, path, optional in config_map_refs(workload, gate):
            if name in seen or any(
                found == name and same_namespace(namespace, workload.namespace)
                for namespace, found in known
            ):
                continue
            seen.add(name)
            then = (
                "warmgate runs open, Ready at once and warming nothing"
                if optional
                else "the pod stays in ContainerCreating and the rollout stalls"
            )
            where = f"namespace {workload.namespace}" if workload.namespace else "the namespace"
            yield finding(
                "WG006", severity, workload, path,
                f"ConfigMap '{name}' is not among the inputs, so its config was not checked; if "
                f"it does not exist in {where} either, {then}.",
                f"pass the ConfigMap to doctor with the rest, or create it (kubectl create "
                f"configmap {name} --from-file=warmgate.yaml) and check it with 'warmgate "
                "validate'.",
            )  # fmt: skip


def marker_volume(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG013: a reader of warmgate's status directory that does not share its volume."""
    writers = [gate for gate in workload.gates() if gate.role in ("run", "prime")]
    for gate in writers:
        directory = workload.setting(gate).status_dir
        if not directory:
            continue
        volume = _volume_at(gate.container, directory)
        readers: list[tuple[str, Mapping[str, Any]]] = [
            (workload.path(other), other.container)
            for other in workload.gates()
            if other.role == "serve" and workload.setting(other).status_dir == directory
        ]
        for index, container in workload.containers("containers"):
            words = _probe_words(container.get("readinessProbe"))
            if f"{directory.rstrip('/')}/ready" in words:
                readers.append((workload.path("containers", index), container))
        for where, container in readers:
            if volume is not None and _volume_at(container, directory) == volume:
                continue
            yield finding(
                "WG013", Severity.ERROR, workload, f"{where}.volumeMounts",
                f"container '{container.get('name')}' reads warmgate's status directory "
                f"{directory} without mounting the volume '{gate.name}' writes it to: it never "
                "sees the ready marker or status, so the pod never turns Ready (or serve shows "
                "nothing).",
                f"mount the same emptyDir at {directory} in both containers (warmgate's "
                "'warmgate-status').",
            )  # fmt: skip


def _volume_at(container: Mapping[str, Any], directory: str) -> str | None:
    best: tuple[int, str] | None = None
    for mount in items(container.get("volumeMounts")):
        if not isinstance(mount, Mapping):
            continue
        path = str(mount.get("mountPath", "")).rstrip("/")
        if (directory.rstrip("/") + "/").startswith(path + "/") and (
            best is None or len(path) > best[0]
        ):
            best = (len(path), str(mount.get("name")))
    return best[1] if best else None


def webhook_skip(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG014: the pods opt in to the webhook, which would leave them alone all the same."""
    if workload.webhook_skip is None:
        return
    annotation, reason = workload.webhook_skip
    path = workload.prefix.removesuffix("spec") + f"metadata.annotations['{annotation}']"
    yield finding(
        "WG014", Severity.WARNING, workload, path,
        f"the pods ask for warmgate, but the admission webhook leaves them alone, so they are "
        f"never warmed: {reason}",
        "fix what the reason names (an annotation value is 'enabled' or 'disabled'), or add "
        "warmgate with 'warmgate inject'.",
    )  # fmt: skip


RULES: tuple[Rule, ...] = (
    readiness,
    progress_deadline,
    startup_probe,
    missing_config_maps,
    config,
    cpu_limit,
    roles,
    marker_volume,
    scraping,
)
"""The rules applied to each workload that runs warmgate (WG004 looks at the monitors)."""


def diagnose(workloads: Sequence[Workload], objects: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Every finding about ``workloads`` and the monitors among ``objects``, most severe first."""
    findings: list[Finding] = []
    for workload in workloads:
        findings.extend(webhook_skip(workload, objects))
        if workload.annotation_problem is not None and not workload.gates():
            findings.extend(config(workload, objects))
            continue
        if not workload.gates():
            continue
        for rule in RULES:
            findings.extend(rule(workload, objects))
    findings.extend(monitors(objects, workloads))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(findings, key=lambda finding: order[finding.severity])


def counts(findings: Sequence[Finding]) -> dict[Severity, int]:
    """How many findings of each severity."""
    return {severity: sum(1 for f in findings if f.severity is severity) for severity in Severity}


def failing(findings: Sequence[Finding]) -> bool:
    """Whether ``doctor`` exits 1: any error or warning (infos do not count)."""
    return any(finding.severity is not Severity.INFO for finding in findings)
