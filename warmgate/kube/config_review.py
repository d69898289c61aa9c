"""The validating admission decision for a namespace's warmgate ConfigMap: admit it, or refuse
it with the sentence ``warmgate validate`` prints. Plain data in, plain data out.

Theory of operation: the webhook's ``/validate`` route receives an AdmissionReview for every
ConfigMap CREATE and UPDATE the ``ValidatingWebhookConfiguration`` (k8s/webhook/) sends: those
named as the webhook's default ConfigMap (``warmgate``, ``--config-map``) and those labelled
``app.kubernetes.io/component: warmgate`` (the adoption component's). A ConfigMap that is
neither is admitted without a word, so a wider configuration costs nothing.

The ``warmgate.yaml`` key is read and checked as ``warmgate validate --config`` reads and checks
a file: the same bounded YAML reader and the same loader and model
(:func:`warmgate.config.loader.parse_yaml`, :func:`warmgate.config.loader.config_from_mapping`),
so the refusal carries the same sentence ``validate`` prints (``warmgate: gate.p95: ...``). One
difference: ``${VAR}`` refers to the sidecar's environment (a Secret's keys, usually), which the
webhook does not have. Every variable reads as a placeholder here, a word and then a number;
a config refused with the same sentence both times is refused (the variables are not the
cause), otherwise it is admitted with a warning that says to run ``validate`` where the
variables are set.
Files the config names (TLS, ``line()``) are the sidecar's too and are not opened here.

A ConfigMap without the key is refused: the sidecar would run open, warming nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import shorten
from warmgate.kube.manifests import CONFIG_KEY

COMPONENT_LABEL = ("app.kubernetes.io/component", "warmgate")
"""The label that marks a ConfigMap as warmgate's config, whatever its name."""
MAX_MESSAGE_CHARS = 1024
"""The refusal's length at most; kubectl shows it whole."""


@dataclass(frozen=True)
class ConfigVerdict:
    """Admit the ConfigMap or not, and what to tell whoever wrote it."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    config_map: str = ""
    """``ConfigMap shop/warmgate``, for the log; empty when the ConfigMap is not warmgate's."""


class _Placeholders(Mapping[str, str]):
    """An environment in which every variable is set: to a word, or with ``number`` to 1."""

    def __init__(self, number: bool = False) -> None:
        self.number = number

    def __getitem__(self, name: str) -> str:
        return "1" if self.number else f"warmgate-placeholder-{name.lower()}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def review_config_map(request: Mapping[str, Any], default_name: str) -> ConfigVerdict:
    """Decide one ConfigMap review (see the module's theory of operation)."""
    found = _warmgate_config_map(request, default_name)
    if isinstance(found, ConfigVerdict):
        return found
    shown, data = found
    text = data.get(CONFIG_KEY)
    if not isinstance(text, str):
        return _deny(
            shown, f"{shown} has no key {CONFIG_KEY}, so warmgate's sidecar would warm nothing; "
            f"put the config under data.{CONFIG_KEY}.",
        )  # fmt: skip
    try:
        check_config_text(text, f"{shown}, key {CONFIG_KEY}")
    except ConfigError as exc:
        from warmgate.config.loader import ENV_REFERENCE

        sentence = f"warmgate: {exc}"
        variables = any(match.group(2) is None for match in ENV_REFERENCE.finditer(text))
        if variables and _sentence(text, shown, number=True) != str(exc):
            warning = (
                f"{sentence} (checked with placeholders for its ${{VAR}} references; run "
                "warmgate validate where they are set)"
            )
            return ConfigVerdict(True, warnings=(shorten(warning, 512),), config_map=shown)
        return _deny(shown, sentence)
    return ConfigVerdict(True, config_map=shown)


def _warmgate_config_map(
    request: Mapping[str, Any], default_name: str
) -> tuple[str, Mapping[str, Any]] | ConfigVerdict:
    """``ConfigMap ns/name`` and its data when the review is of warmgate's ConfigMap; else the
    verdict to admit it without a word."""
    obj = request.get("object")
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or kind.get("kind") != "ConfigMap":
        return ConfigVerdict(True, warnings=("warmgate: the review is not about a ConfigMap",))
    if request.get("operation") not in ("CREATE", "UPDATE") or not isinstance(obj, Mapping):
        return ConfigVerdict(True)
    metadata = _mapping(obj.get("metadata"))
    name = str(metadata.get("name") or request.get("name") or "")
    key, value = COMPONENT_LABEL
    if name != default_name and _mapping(metadata.get("labels")).get(key) != value:
        return ConfigVerdict(True)
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    shown = f"ConfigMap {namespace}/{name}" if namespace else f"ConfigMap {name}"
    return shown, _mapping(obj.get("data"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def check_config_text(text: str, source: str, *, number: bool = False) -> None:
    """Check a config's YAML text as ``validate`` checks a file: a ConfigError if it is wrong.
    ``${VAR}`` reads as a placeholder word (with ``number``, as 1)."""
    from warmgate.config.loader import config_from_mapping, parse_yaml

    config_from_mapping(parse_yaml(text, source), environ=_Placeholders(number))


def _sentence(text: str, shown: str, *, number: bool) -> str:
    """What the check says about ``text`` (empty when it passes)."""
    try:
        check_config_text(text, f"{shown}, key {CONFIG_KEY}", number=number)
    except ConfigError as exc:
        return str(exc)
    return ""


def _deny(shown: str, message: str) -> ConfigVerdict:
    return ConfigVerdict(False, shorten(message, MAX_MESSAGE_CHARS), config_map=shown)


def validation_response(uid: str, verdict: ConfigVerdict) -> dict[str, Any]:
    """The AdmissionReview the API server expects back: allowed, or refused with the message."""
    answer: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        answer["status"] = {"code": 422, "reason": "Invalid", "message": verdict.message}
    if verdict.warnings:
        answer["warnings"] = list(verdict.warnings)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
