"""Pod Security Standards "restricted" (which includes "baseline"), as a test over pod specs.

No Pod Security admission evaluator installs here without a Go toolchain, so these are the
documented controls of https://kubernetes.io/docs/concepts/security/pod-security-standards/
(policy version "latest", Kubernetes 1.29 onward), each as a check that names what it found.
:func:`violations` of a pod template returns one sentence per breach; none means the pod would
be admitted into a namespace labelled ``pod-security.kubernetes.io/enforce: restricted``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_ALLOWED = {"RuntimeDefault", "Localhost"}


def containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every container of a pod spec: init, regular and ephemeral."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def violations(template: Mapping[str, Any]) -> list[str]:
    """The restricted profile's breaches in a pod template (metadata and spec)."""
    spec = template.get("spec") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    pod = spec.get("securityContext") or {}
    found = [*_baseline_pod(spec, pod, annotations), *_restricted_pod(spec)]
    for container in containers(spec):
        found.extend(f"container {container.get('name')}: {v}" for v in _container(container, pod))
    return found


def _baseline_pod(
    spec: Mapping[str, Any], pod: Mapping[str, Any], annotations: Mapping[str, Any]
) -> Iterator[str]:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield f"{key} is true"
    if (pod.get("windowsOptions") or {}).get("hostProcess"):
        yield "the pod is a Windows HostProcess pod"
    yield from _selinux(pod.get("seLinuxOptions"), "the pod")
    if (pod.get("seccompProfile") or {}).get("type") == "Unconfined":
        yield "the pod's seccomp profile is Unconfined"
    if (pod.get("appArmorProfile") or {}).get("type") not in (None, *SECCOMP_ALLOWED):
        yield "the pod's AppArmor profile is not RuntimeDefault or Localhost"
    for sysctl in pod.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')} is not in the safe set"
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or str(value).startswith("localhost/")
        ):
            yield f"AppArmor annotation {key} is {value}"


def _restricted_pod(spec: Mapping[str, Any]) -> Iterator[str]:
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            yield f"volume {volume.get('name')} is a hostPath"
        elif not kinds <= RESTRICTED_VOLUMES:
            yield f"volume {volume.get('name')} is of a type restricted forbids: {sorted(kinds)}"


def _container(container: Mapping[str, Any], pod: Mapping[str, Any]) -> Iterator[str]:
    context = container.get("securityContext") or {}
    if context.get("privileged"):
        yield "privileged is true"
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        yield "it is a Windows HostProcess container"
    capabilities = context.get("capabilities") or {}
    added = set(capabilities.get("add") or [])
    if added - BASELINE_CAPABILITIES:
        yield f"it adds capabilities beyond baseline: {sorted(added - BASELINE_CAPABILITIES)}"
    if added - {"NET_BIND_SERVICE"}:
        yield f"it adds capabilities other than NET_BIND_SERVICE: {sorted(added)}"
    if "ALL" not in (capabilities.get("drop") or []):
        yield "it does not drop ALL capabilities"
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            yield f"it uses hostPort {port['hostPort']}"
    yield from _selinux(context.get("seLinuxOptions"), "it")
    if context.get("procMount") not in (None, "Default"):
        yield f"procMount is {context.get('procMount')}"
    yield from _restricted_container(context, pod)


def _restricted_container(context: Mapping[str, Any], pod: Mapping[str, Any]) -> Iterator[str]:
    if context.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation is not false"
    if context.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
        yield "runAsNonRoot is not true (on the container or the pod)"
    if context.get("runAsUser", pod.get("runAsUser")) == 0:
        yield "runAsUser is 0"
    seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
    if seccomp not in SECCOMP_ALLOWED:
        yield "its seccomp profile (or the pod's) is not RuntimeDefault or Localhost"
    if (context.get("appArmorProfile") or {}).get("type") not in (None, *SECCOMP_ALLOWED):
        yield "its AppArmor profile is not RuntimeDefault or Localhost"


def _selinux(options: Mapping[str, Any] | None, who: str) -> Iterator[str]:
    options = options or {}
    if options.get("type", "") not in SELINUX_TYPES:
        yield f"{who} sets SELinux type {options.get('type')}"
    if options.get("user") or options.get("role"):
        yield f"{who} sets a custom SELinux user or role"
