"""``warmgate inject --emit-config``: a starter ConfigMap from what a workload already declares.

Theory of operation: the app container (the first of ``containers``) says where the app listens
(its first TCP ``containerPort``) and, through its ``readinessProbe``'s ``httpGet``, which URL
answers once it is up. Those become ``wait.url`` and the first target's address. Everything
that needs judgement (what to request, the concurrency, the thresholds) is written with a
reasonable value and a ``CHOOSE`` comment, so nobody ships a starter by accident without
reading it. The config passes ``warmgate validate`` as written. Pure: plain data in, plain
data out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kube.manifests import CONFIG_KEY


def starter_config_map(
    obj: Mapping[str, Any], template: Mapping[str, Any], config_map: str, name: str
) -> dict[str, Any]:
    """A ConfigMap named ``config_map`` holding a starter config for the workload ``obj``."""
    metadata: dict[str, Any] = {"name": config_map}
    namespace = _mapping(obj.get("metadata")).get("namespace")
    if isinstance(namespace, str):
        metadata["namespace"] = namespace
    metadata["labels"] = {"app.kubernetes.io/component": "warmgate"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {CONFIG_KEY: starter_config(template, name)},
    }


def starter_config(template: Mapping[str, Any], name: str) -> str:
    """The text of a starter ``warmgate.yaml`` for the pod template of the workload ``name``."""
    containers = _mapping(template.get("spec")).get("containers") or []
    app = containers[0] if containers and isinstance(containers[0], Mapping) else {}
    ports = [p for p in app.get("ports") or [] if isinstance(p, Mapping)]
    tcp = [p for p in ports if p.get("protocol", "TCP") == "TCP" and "containerPort" in p]
    if not tcp:
        raise ConfigError(
            f"--emit-config: {name}'s container '{app.get('name', '?')}' declares no TCP "
            "containerPort to warm; add its port to the manifest, or write the warmgate "
            "ConfigMap yourself and drop --emit-config."
        )
    port = int(tcp[0]["containerPort"])
    probe = _mapping(_mapping(app.get("readinessProbe")).get("httpGet"))
    base = f"http://127.0.0.1:{port}"
    wait = tls = ""
    if probe:
        scheme = str(probe.get("scheme", "HTTP")).lower()
        probe_port = _port_number(probe.get("port"), ports, port)
        path = str(probe.get("path") or "/")
        base = f"{scheme}://127.0.0.1:{port}"
        # wait.url takes the TLS settings of the target on its port; another port needs its own.
        wait_tls = "  tls: {verify: false}\n" if scheme == "https" and probe_port != port else ""
        wait = (
            "wait:\n"
            f"  # From the readinessProbe of container '{app.get('name')}': the app is up.\n"
            f"  url: {_quote(f'{scheme}://127.0.0.1:{probe_port}{path}')}\n"
            f"{wait_tls}"
            "  timeout: 10m\n"
        )
        if scheme == "https":
            tls = (
                "      # CHOOSE: the app speaks HTTPS. Like the kubelet's probe this skips\n"
                "      # checking its certificate (warned at start-up); trust it instead with\n"
                "      # ca_file and server_name (docs/https.md).\n"
                "      tls: {verify: false}\n"
            )
    return (
        f"# A starter config for {name}, written by warmgate inject --emit-config.\n"
        "# Lines marked CHOOSE are choices only you can make: set them from production figures\n"
        "# (docs/operations.md), then check with: warmgate validate --config warmgate.yaml\n"
        "targets:\n"
        "  - name: app\n"
        "    http:\n"
        "      # CHOOSE: requests that warm what users hit (real paths, templated ids), not a\n"
        "      # health check. Methods other than GET/HEAD/OPTIONS need confirm_read_only.\n"
        f"      url: {_quote(base + '/')}\n"
        f"{tls}"
        "load:\n"
        "  # CHOOSE: about the peak req/s one pod serves times its warm latency in seconds.\n"
        "  concurrency: 8\n"
        "  # Replicas of a rollout start together; spread their first requests out.\n"
        "  jitter: 5s\n"
        "gate:\n"
        "  # CHOOSE: what warm means; p95 from the warm steady state, with some headroom.\n"
        "  success_rate: 0.99\n"
        "  p95: 500ms\n"
        "  window: 10s\n"
        "  hold: 5s\n"
        "  # CHOOSE: the deadline, and fail open (ready) or closed (fail) when it passes.\n"
        "  timeout: 5m\n"
        "  on_timeout: ready\n"
        f"{wait}"
    )


def _port_number(port: Any, ports: list[Mapping[str, Any]], default: int) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for candidate in ports:
        if candidate.get("name") == port:
            return int(candidate["containerPort"])
    return default


def _quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's)."""
    return json.dumps(text)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
