"""``warmgate uninject``: take out exactly what ``warmgate inject`` put in.

Theory of operation: inject marks every pod template it changes with the annotation
:data:`~warmgate.kube.inject.MARKER`. Uninject touches only marked templates and removes the
warmgate container, the two warmgate volumes, the ``imagePullSecrets`` and the Istio port
exclusion it added (and the annotations that record them), the marker and the inline config,
then the ``initContainers``, ``volumes``, ``annotations`` and ``metadata`` entries that this
leaves empty (inject creates them when they are missing). A warmgate container without the
marker was written by hand and stays. Documents that do not change come out as the same text,
as with inject.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from warmgate.kube.inject import (
    CONFIG_VOLUME,
    CONTAINER_NAME,
    INLINE_CONFIG,
    MARKER,
    STATUS_VOLUME,
    has_warmgate,
    is_injected,
)
from warmgate.kube.inject_parts import remove_mesh_exclusion, remove_pull_secrets
from warmgate.kube.manifests import (
    Injected,
    InjectedText,
    check_object,
    describe_object,
    map_list,
    pod_template,
    rewrite_text,
    workload_path,
)
from warmgate.kube.yaml_stream import read_source


def uninject_object(obj: Any, where: str = "the document") -> Injected:
    """``obj`` without inject's warmgate; never mutates ``obj``."""
    checked = check_object(obj, where)
    kind = checked["kind"]
    if kind.endswith("List") and isinstance(checked.get("items"), list):
        return map_list(checked, uninject_object, where)
    path = workload_path(checked)
    if path is None or (kind == "Rollout" and "template" not in (checked.get("spec") or {})):
        return Injected(obj, changed=False)
    name = describe_object(checked)
    template = pod_template(checked, path, name)
    if not is_injected(template):
        if has_warmgate(template["spec"]):
            note = f"{name} has a warmgate container that inject did not add; left as it is"
            return Injected(obj, changed=False, notes=(note,))
        return Injected(obj, changed=False)
    result = copy.deepcopy(dict(checked))
    _remove(pod_template(result, path, name))
    return Injected(result, changed=True, notes=(f"{name}: warmgate removed",))


def _remove(template: dict[str, Any]) -> None:
    spec = template["spec"]
    _drop(spec, "initContainers", {CONTAINER_NAME})
    _drop(spec, "volumes", {STATUS_VOLUME, CONFIG_VOLUME})
    remove_pull_secrets(template)
    remove_mesh_exclusion(template)
    metadata = template["metadata"]
    del metadata["annotations"][MARKER]
    metadata["annotations"].pop(INLINE_CONFIG, None)
    if not metadata["annotations"]:
        del metadata["annotations"]
    if not metadata:
        del template["metadata"]


def _drop(spec: dict[str, Any], key: str, names: set[str]) -> None:
    kept = [
        item
        for item in spec.get(key) or []
        if not (isinstance(item, Mapping) and item.get("name") in names)
    ]
    if kept:
        spec[key] = kept
    else:
        spec.pop(key, None)


def uninject_text(text: str, source: str = "the input") -> InjectedText:
    """Uninject every workload in a YAML stream; everything else comes out as the same text."""
    return rewrite_text(text, uninject_object, source)[0]


def uninject_source(source: str) -> InjectedText:
    """Read ``source`` (a path or ``-``) and uninject it."""
    name = "standard input" if source == "-" else source
    return uninject_text(read_source(source), name)
