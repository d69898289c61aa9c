"""Which workloads ``warmgate inject`` changes, and a sentence for each one it leaves alone.

Theory of operation: a platform team aims ``inject`` at a whole ``kustomize build`` or ``kubectl
get -o yaml`` stream. A workload is changed only when

1. it matches every filter given: ``--kind``, ``--name`` and ``-l/--selector`` (kubectl's
   label selector syntax, matched against the workload's own labels);
2. its owner has not opted out with the annotation ``warmgate.io/inject: disabled`` (or
   ``false``, the habit Istio and Linkerd taught; on the workload or on its pod template;
   honoured always). The value is read trimmed and in any letter case
   (:func:`inject_annotation`): ``enabled``/``true`` and ``disabled``/``false``; any other value
   (a typo) leaves the workload alone too, with a reason saying so: an opt-out that was
   misspelt must not inject. A pod template *label* ``warmgate.io/inject`` is read the same
   way (the webhook-adoption component opts pods in with the label, so that an opt-out
   annotation already there stays as written, and wins);
3. it is not one of the workloads warming makes no sense for, unless asked for explicitly:
   Jobs and CronJobs and the Pods a Job owns (they run to completion and take no traffic; naming
   the kind ``Job`` or ``CronJob`` with ``--kind`` includes them), Helm hooks (they run once
   around a release) and ``hostNetwork`` pods (warmgate's port would be taken on the node
   itself). Naming a workload with ``--name`` includes it whatever it is.

Two more rules, outside :func:`why_skipped` because inject and the webhook differ on them:
:func:`owner` names the object that owns another (``inject`` leaves every owned object alone,
since its owner would undo the change; every pod the webhook sees has one), and
:func:`daemon_set_owner` the DaemonSet that owns a pod (the webhook leaves those alone: a
per-node agent takes no Service traffic, and its rollout must not wait for a warm-up).

:func:`why_skipped` answers with ``None`` (inject it) or the reason, a sentence for stderr. Pure
functions of plain data; no YAML, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import shorten

OPT_OUT = "warmgate.io/inject"
"""Annotation whose value ``disabled`` (or ``false``) keeps inject away from a workload
(``enabled`` or ``true`` opts a pod in with the webhook)."""
ENABLED_VALUES = ("enabled", "true")
DISABLED_VALUES = ("disabled", "false")
HELM_HOOK = "helm.sh/hook"
RUN_TO_COMPLETION = ("Job", "CronJob")


class Choice(Enum):
    """What a workload's ``warmgate.io/inject`` annotation asks for."""

    UNSET = "unset"
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNRECOGNISED = "unrecognised"
    """A value that is neither: warmgate is not added, and a warning says why."""


def inject_annotation(annotations: Mapping[str, Any]) -> Choice:
    """How ``inject`` and the webhook read ``warmgate.io/inject`` in ``annotations`` (or in a
    pod's labels, where the webhook-adoption component opts pods in): surrounding
    whitespace and letter case do not matter; any other value (or one that is not a string) is
    :attr:`Choice.UNRECOGNISED`."""
    if OPT_OUT not in annotations:
        return Choice.UNSET
    value = annotations[OPT_OUT]
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ENABLED_VALUES:
        return Choice.ENABLED
    if text in DISABLED_VALUES:
        return Choice.DISABLED
    return Choice.UNRECOGNISED


def _unrecognised(where: str, value: Any) -> tuple[str, str]:
    """The reason, and the fix, for an annotation value that is neither enabled nor disabled."""
    if not isinstance(value, str):
        shown = shorten(json.dumps(value, default=str), 60)
        return (
            f"skipped: its {where} has the annotation {OPT_OUT}: {shown}, which is not a string",
            "quote it ('false' or 'true'): Kubernetes takes only strings",
        )
    return (
        f"skipped: its {where} has the annotation {OPT_OUT}: {shorten(repr(value), 60)}, which "
        "is neither enabled/true nor disabled/false",
        "write enabled or disabled",
    )


class Operator(Enum):
    """The operators of a label selector requirement."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    """One comma-separated part of a label selector."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        """Whether ``labels`` satisfy this requirement (kubectl's semantics)."""
        present = self.key in labels
        value = str(labels.get(self.key, ""))
        match self.operator:
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values


_KEY = r"([a-z0-9A-Z]([a-z0-9A-Z.-]*[a-z0-9A-Z])?/)?[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?"
_VALUE = r"([a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?)?"
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$")
_EQUALITY = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(?P<op>!?)\s*(?P<key>{_KEY})\s*$")


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """The requirements of a label selector such as ``app=web,tier in (a,b),!legacy``."""
    requirements: list[Requirement] = []
    if not text.strip():
        return ()
    for part in _split(text):
        if match := _SET.match(part):
            values = tuple(v.strip() for v in match["values"].split(","))
            if not all(re.fullmatch(_VALUE, v) for v in values):
                raise _bad_selector(text, part)
            operator = Operator.IN if match["op"] == "in" else Operator.NOT_IN
            requirements.append(Requirement(match["key"], operator, values))
        elif match := _EQUALITY.match(part):
            operator = Operator.NOT_EQUALS if match["op"] == "!=" else Operator.EQUALS
            requirements.append(Requirement(match["key"], operator, (match["value"],)))
        elif match := _EXISTS.match(part):
            operator = Operator.DOES_NOT_EXIST if match["op"] else Operator.EXISTS
            requirements.append(Requirement(match["key"], operator))
        else:
            raise _bad_selector(text, part)
    return tuple(requirements)


def _split(text: str) -> list[str]:
    """Split on the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _bad_selector(text: str, part: str) -> ConfigError:
    return ConfigError(
        f"--selector: '{part.strip()}' in '{text}' is not a label selector requirement; write "
        "key=value, key!=value, 'key in (a,b)', 'key notin (a,b)', key or !key, separated by "
        "commas."
    )


@dataclass(frozen=True)
class Selection:
    """The filters of one ``inject`` run; empty filters select everything."""

    kinds: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    selector: tuple[Requirement, ...] = ()


def why_skipped(
    obj: Mapping[str, Any],
    kind: str,
    template: Mapping[str, Any],
    selection: Selection,
    *,
    hints: bool = True,
) -> str | None:
    """``None`` to inject ``obj``, else why not: a clause that follows the object's name.

    ``hints`` adds how to include it anyway with inject's flags (the webhook has none to offer).
    """
    reason = _not_selected(obj, kind, selection)
    if reason:
        return reason
    left_alone = _left_alone(obj, kind, template, selection)
    if left_alone is None:
        return None
    reason, hint = left_alone
    return f"{reason}; {hint}" if hints and hint else reason


def _not_selected(obj: Mapping[str, Any], kind: str, selection: Selection) -> str | None:
    metadata = _mapping(obj.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    if selection.kinds and kind not in selection.kinds:
        return f"skipped: its kind is not one of --kind {', '.join(selection.kinds)}"
    if selection.names and metadata.get("name") not in selection.names:
        return f"skipped: its name is not one of --name {', '.join(selection.names)}"
    failed = [r for r in selection.selector if not r.matches(labels)]
    if failed:
        return f"skipped: its labels do not match --selector (requirement on '{failed[0].key}')"
    return None


def _left_alone(
    obj: Mapping[str, Any], kind: str, template: Mapping[str, Any], selection: Selection
) -> tuple[str, str] | None:
    """Why inject leaves ``obj`` alone and how to include it anyway, or ``None``."""
    metadata = _mapping(obj.get("metadata"))
    name = metadata.get("name")
    annotations = _mapping(metadata.get("annotations"))
    template_annotations = _mapping(_mapping(template.get("metadata")).get("annotations"))
    named = name in selection.names
    job = _owning_job(metadata) if kind == "Pod" else None
    hook = annotations.get(HELM_HOOK) or template_annotations.get(HELM_HOOK)
    by_name = f"pass --name {name} to inject it anyway"
    template_labels = _mapping(_mapping(template.get("metadata")).get("labels"))
    places = (
        ("metadata", annotations),
        ("pod template", template_annotations),
        ("pod template's label", template_labels),
    )
    choices = [(where, found, inject_annotation(found)) for where, found in places]
    reasons = [
        *(
            (f"skipped: its {where} has the annotation {OPT_OUT}: {_word(found)}", "")
            for where, found, choice in choices
            if choice is Choice.DISABLED
        ),
        *(
            _unrecognised(where, found[OPT_OUT])
            for where, found, choice in choices
            if choice is Choice.UNRECOGNISED
        ),
        kind in RUN_TO_COMPLETION and kind not in selection.kinds and not named and (
            f"skipped: a {kind} runs to completion and takes no traffic",
            f"pass --kind {kind} or --name {name} to inject it anyway",
        ),
        bool(job) and "Job" not in selection.kinds and not named and (
            f"skipped: it is a pod of Job {job}, which runs to completion and takes no traffic",
            "pass --kind Job to inject it anyway",
        ),
        bool(hook) and not named and (
            f"skipped: it is a Helm hook ({HELM_HOOK}: {hook}) that runs once around a release",
            by_name,
        ),
        _mapping(template.get("spec")).get("hostNetwork") is True and not named and (
            "skipped: it uses hostNetwork, so warmgate's port would be taken on the node itself "
            "and clash between pods",
            by_name,
        ),
    ]  # fmt: skip
    return next((reason for reason in reasons if isinstance(reason, tuple)), None)


def _owning_job(metadata: Mapping[str, Any]) -> str | None:
    """The name of the Job among the pod's owners (a CronJob's pods are owned by its Jobs)."""
    owners = metadata.get("ownerReferences")
    for owner in owners if isinstance(owners, list) else []:
        if isinstance(owner, Mapping) and owner.get("kind") == "Job":
            return str(owner.get("name") or "(unnamed)")
    return None


def owner(metadata: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(kind, name)`` of the object's owner (the controller among several), or ``None``."""
    owners = metadata.get("ownerReferences")
    found = [o for o in owners if isinstance(o, Mapping)] if isinstance(owners, list) else []
    if not found:
        return None
    chosen = next((o for o in found if o.get("controller") is True), found[0])
    return str(chosen.get("kind") or "(no kind)"), str(chosen.get("name") or "(unnamed)")


def owned_reason(obj: Mapping[str, Any]) -> str | None:
    """Why ``inject`` leaves an object with an owner alone, or ``None`` when it has none."""
    found = owner(_mapping(obj.get("metadata")))
    if found is None:
        return None
    kind, name = found
    return (
        f"skipped: it is owned by {kind} {name} (metadata.ownerReferences), which would undo "
        f"the change; inject {kind} {name} instead"
    )


def daemon_set_owner(metadata: Mapping[str, Any]) -> str | None:
    """The name of the DaemonSet that owns a pod, or ``None``."""
    owners = metadata.get("ownerReferences")
    for found in owners if isinstance(owners, list) else []:
        if isinstance(found, Mapping) and found.get("kind") == "DaemonSet":
            return str(found.get("name") or "(unnamed)")
    return None


def _word(found: Mapping[str, Any]) -> str:
    """The opt-out value as written, trimmed and in lower case (``disabled`` or ``false``)."""
    return str(found[OPT_OUT]).strip().lower()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
