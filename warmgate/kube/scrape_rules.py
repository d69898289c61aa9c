"""The monitoring rules of ``warmgate doctor``: is warmgate's ``/metrics`` scraped?

WG004: a PodMonitor or ServiceMonitor about warmgate (named so, or aimed at warmgate's port name)
that selects no pod running warmgate among the inputs. WG005: nothing among the inputs scrapes a
warmgate pod (info: Prometheus may find it another way), or its ``prometheus.io/port``
annotation points elsewhere (warning). A PodMonitor selects pods (and sees native sidecars'
ports); a ServiceMonitor selects Services, which must select the pods and expose warmgate's
port. Pure: plain data in, findings out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from warmgate.kube.diagnosis import (
    Finding,
    Severity,
    Workload,
    finding,
    items,
    metadata_of,
    same_namespace,
    scalar,
    selector_matches,
)

MONITOR_KINDS = ("PodMonitor", "ServiceMonitor")


SCRAPE = "prometheus.io/scrape"
SCRAPE_PORT = "prometheus.io/port"


def _gate_ports(workload: Workload) -> tuple[set[str], set[int]]:
    names: set[str] = set()
    numbers: set[int] = set()
    for gate in workload.gates():
        if gate.role == "prime":
            continue
        port = workload.setting(gate).port
        numbers.add(port)
        for declared in items(gate.container.get("ports")):
            if isinstance(declared, Mapping) and declared.get("containerPort") == port:
                names.add(str(declared.get("name")))
    return names, numbers


def _monitor_namespaces(monitor: Mapping[str, Any], workload: Workload) -> bool:
    spec = monitor.get("spec") if isinstance(monitor.get("spec"), Mapping) else {}
    chosen = spec.get("namespaceSelector") if isinstance(spec, Mapping) else None
    if isinstance(chosen, Mapping) and chosen.get("any") is True:
        return True
    if isinstance(chosen, Mapping) and isinstance(chosen.get("matchNames"), list):
        return workload.namespace in chosen["matchNames"] or not workload.namespace
    own = str(metadata_of(monitor).get("namespace") or "")
    return same_namespace(own, workload.namespace)


def _selects(monitor: Mapping[str, Any], workload: Workload, objects: Sequence[Any]) -> bool:
    """Whether ``monitor`` scrapes warmgate's port on the pods of ``workload``."""
    spec = monitor.get("spec")
    if not isinstance(spec, Mapping) or not _monitor_namespaces(monitor, workload):
        return False
    names, numbers = _gate_ports(workload)
    if monitor.get("kind") == "PodMonitor":
        if not selector_matches(spec.get("selector"), workload.labels):
            return False
        endpoints = items(spec.get("podMetricsEndpoints"))
        return any(
            isinstance(e, Mapping)
            and (scalar(e.get("port")) in names or scalar(e.get("targetPort")) in numbers)
            for e in endpoints
        )
    for service in objects:
        service_spec = service.get("spec")
        if (
            service.get("kind") != "Service"
            or not isinstance(service_spec, Mapping)
            or not selector_matches(spec.get("selector"), metadata_of(service).get("labels") or {})
            or not selector_matches({"matchLabels": service_spec.get("selector")}, workload.labels)
        ):
            continue
        ports = [
            port.get("name")
            for port in items(service_spec.get("ports"))
            if isinstance(port, Mapping)
            and (
                scalar(port.get("targetPort")) in names or scalar(port.get("targetPort")) in numbers
            )
        ]
        endpoints = items(spec.get("endpoints"))
        if any(isinstance(e, Mapping) and scalar(e.get("port")) in ports for e in endpoints):
            return True
    return False


def _selects_something(
    monitor: Mapping[str, Any], workloads: Sequence[Workload], objects: Sequence[Any]
) -> bool:
    """Whether ``monitor``'s selector matches anything among the inputs: a pod template (a
    PodMonitor) or a Service (a ServiceMonitor; with no Service among the inputs, doctor cannot
    tell, and takes it that it does)."""
    spec = monitor.get("spec")
    selector = spec.get("selector") if isinstance(spec, Mapping) else None
    if monitor.get("kind") == "PodMonitor":
        return any(
            _monitor_namespaces(monitor, workload) and selector_matches(selector, workload.labels)
            for workload in workloads
        )
    services = [obj for obj in objects if obj.get("kind") == "Service"]
    return not services or any(
        selector_matches(selector, metadata_of(service).get("labels") or {}) for service in services
    )


def _about_warmgate(monitor: Mapping[str, Any], workloads: Sequence[Workload]) -> bool:
    if "warmgate" in str(metadata_of(monitor).get("name", "")):
        return True
    spec = monitor.get("spec")
    endpoints = []
    if isinstance(spec, Mapping):
        endpoints = (items(spec.get("podMetricsEndpoints"))) + (items(spec.get("endpoints")))
    names = {name for workload in workloads for name in _gate_ports(workload)[0]}
    return any(isinstance(e, Mapping) and scalar(e.get("port")) in names for e in endpoints)


def scraping(workload: Workload, objects: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """WG005: nothing scrapes warmgate's metrics (info), or the annotations aim elsewhere."""
    numbers = _gate_ports(workload)[1]
    if not numbers:
        return
    monitors = [obj for obj in objects if obj.get("kind") in MONITOR_KINDS]
    if any(_selects(monitor, workload, objects) for monitor in monitors):
        return
    annotations = workload.annotations
    template_path = workload.prefix.removesuffix("spec") + "metadata.annotations"
    if str(annotations.get(SCRAPE, "")).lower() == "true":
        port = str(annotations.get(SCRAPE_PORT, ""))
        if port in {str(number) for number in numbers}:
            return
        listening = ", ".join(str(number) for number in sorted(numbers))
        yield finding(
            "WG005", Severity.WARNING, workload, f"{template_path}['{SCRAPE_PORT}']",
            f"the pod asks to be scraped on port '{port or '(none)'}', not on warmgate's "
            f"{listening}: warmgate_ready and the warm-up metrics are never collected, and the "
            "alerts on them stay silent.",
            f"set {SCRAPE_PORT} to {listening}, or scrape warmgate with a PodMonitor.",
        )  # fmt: skip
        return
    yield finding(
        "WG005", Severity.INFO, workload, template_path,
        "nothing among the inputs scrapes warmgate's /metrics (no PodMonitor or ServiceMonitor "
        f"selecting the pods, no {SCRAPE} annotation): a warm-up that opened on timeout or "
        "failed closed will go unnoticed.",
        "add a PodMonitor on the port 'warmgate' (k8s/variants/prometheus-operator/), or the "
        "prometheus.io/* annotations, unless your Prometheus finds it another way.",
    )  # fmt: skip


def monitors(
    objects: Sequence[Mapping[str, Any]], workloads: Sequence[Workload]
) -> Iterator[Finding]:
    """WG004: a PodMonitor or ServiceMonitor that scrapes no warmgate pod, when it is about
    warmgate (named so, or aimed at warmgate's port name) or selects nothing at all among the
    inputs. A monitor of another app among the inputs is left alone."""
    gated = [workload for workload in workloads if workload.gates()]
    if not gated:
        return
    for monitor in objects:
        if monitor.get("kind") not in MONITOR_KINDS:
            continue
        if any(_selects(monitor, workload, objects) for workload in gated):
            continue
        if not _about_warmgate(monitor, gated) and _selects_something(monitor, workloads, objects):
            continue
        metadata = metadata_of(monitor)
        yield Finding(
            "WG004", Severity.WARNING, str(monitor.get("kind")),
            str(metadata.get("namespace") or ""), str(metadata.get("name") or "(unnamed)"),
            "spec.selector",
            "it selects no pod (or no port) that runs warmgate among the inputs: Prometheus "
            "never scrapes warmgate_ready, and the alerts on it stay silent.",
            "make spec.selector match the pod template's labels (a ServiceMonitor: a Service "
            "that selects the pods and exposes warmgate's port), in the pods' namespace, and "
            "the endpoint's port warmgate's port name.",
        )  # fmt: skip
