"""AdmissionReview requests shaped like the API server's, for the webhook's tests and benchmark.

A pod reaches a mutating webhook after the built-in admission plugins and defaulting have run
and before the name is generated: a Deployment's pod has ``generateName`` and no ``name``, no
``uid`` and a null ``creationTimestamp``, defaulted fields everywhere, and the service account
token volume the ServiceAccount plugin added.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from typing import Any

import jsonpatch

_UIDS = itertools.count(1)


def app_container(name: str = "app", port: int = 8080) -> dict[str, Any]:
    """An app container as defaulting leaves it."""
    return {
        "name": name,
        "image": "registry.example.com/heritage-app:1.0",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [{"name": "kube-api-access-7x2kq", "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }  # fmt: skip


def deployment_pod(
    annotations: dict[str, str] | None = None, app: str = "heritage-app"
) -> dict[str, Any]:
    """A pod a Deployment's ReplicaSet creates: generateName, no name, an owner reference."""
    template_hash = "7c9f8d5b4"
    metadata: dict[str, Any] = {
        "generateName": f"{app}-{template_hash}-",
        "namespace": "shop",
        "creationTimestamp": None,
        "labels": {"app.kubernetes.io/name": app, "pod-template-hash": template_hash},
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-{template_hash}",
            "uid": "0b6f3c8e-8d0b-4a55-9c43-2f7d1f3a9e10", "controller": True,
            "blockOwnerDeletion": True,
        }],
    }  # fmt: skip
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "volumes": [{"name": "kube-api-access-7x2kq", "projected": {
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                ],
                "defaultMode": 420,
            }}],
            "containers": [app_container()],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }  # fmt: skip


def with_sidecars(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` with a classic init container and a native sidecar (a log shipper) of its own."""
    pod = copy.deepcopy(pod)
    pod["spec"]["initContainers"] = [
        {"name": "wait-for-db", "image": "busybox:1.36", "command": ["sh", "-c", "true"],
         "resources": {}, "terminationMessagePath": "/dev/termination-log",
         "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"},
        {"name": "log-shipper", "image": "fluent/fluent-bit:3.0", "restartPolicy": "Always",
         "resources": {}, "terminationMessagePath": "/dev/termination-log",
         "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"},
    ]  # fmt: skip
    return pod


def request(
    pod: dict[str, Any], *, dry_run: bool = False, namespace: str = "shop"
) -> dict[str, Any]:
    """The AdmissionReview the API server sends for creating ``pod``."""
    pod_kind = {"group": "", "version": "v1", "kind": "Pod"}
    resource = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"705ab4f5-6393-11e8-b7cc-{next(_UIDS):012d}",
            "kind": pod_kind, "resource": resource,
            "requestKind": pod_kind, "requestResource": resource,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "2c9d1c70-0b1e-4b5b-8e2c-8a1d3f6e2b11",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                           "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }  # fmt: skip


def patched(pod: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """``pod`` after the answer's JSONPatch, as the API server applies it."""
    response = answer["response"]
    if "patch" not in response:
        return pod
    assert response["patchType"] == "JSONPatch"
    operations = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(pod, operations)  # type: ignore[no-any-return]
