"""A pod's own warm-up config, from its annotations, for the admission webhook.

Theory of operation: a pod names its config in one of two ways.

- ``warmgate.io/config: NAME``: the ConfigMap ``NAME`` (key ``warmgate.yaml``) in the pod's
  namespace, mounted as ``warmgate inject`` mounts one.
- Inline annotations for the common case (:data:`INLINE`): ``warmgate.io/url`` (one URL template
  a line) and a few gate settings. They map one-to-one onto the command-line flags of the same
  names (:data:`warmgate.config.flags.CONFIG_FLAGS`), are laid into a config exactly as those
  flags are, and validated with the same model; the result travels as YAML in the pod's
  annotation :data:`~warmgate.kube.inject.INLINE_CONFIG`, with ``template_files: false`` so that
  the sidecar refuses file reads too.

Neither: the webhook's default ConfigMap. Both: a mistake, since one would be silently ignored.

The sidecar's resources, per pod (as Linkerd's ``config.linkerd.io/proxy-cpu-request`` and
Istio's ``sidecar.istio.io/proxyCPU``): ``warmgate.io/cpu-request``, ``memory-request``,
``cpu-limit`` and ``memory-limit`` (:data:`RESOURCES`), each a Kubernetes quantity or ``none``,
override the webhook's (or inject's) flags; :func:`pod_resources` also refuses a request above
its limit, which the API server would refuse, the pod with it.

Annotations come from pod authors, who are trusted less than the platform's config: every value
is bounded in size (:data:`MAX_ANNOTATION_CHARS`), and a template may not call ``line()`` (it
reads files), nor mention it anywhere, even in a branch that never runs, because the sidecar
renders it with the full set of functions; nor may it use ``${VAR}``, which the sidecar would
expand from its environment after the check. A mistake is an :class:`InvalidAnnotationError`
naming the annotation; the webhook then admits the pod unmutated. Pure: no I/O, no environment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import shorten

if TYPE_CHECKING:
    from warmgate.traffic.templating import Templates

CONFIG_MAP = "warmgate.io/config"
"""Annotation naming the ConfigMap that holds the pod's config."""
INLINE: dict[str, str] = {
    "warmgate.io/url": "url",
    "warmgate.io/concurrency": "concurrency",
    "warmgate.io/p95": "p95",
    "warmgate.io/p99": "p99",
    "warmgate.io/success-rate": "success_rate",
    "warmgate.io/timeout": "timeout",
    "warmgate.io/on-timeout": "on_timeout",
}
"""Inline config annotations and the command-line flag each one stands for."""
RESOURCES: dict[str, str] = {
    "warmgate.io/cpu-request": "cpu_request",
    "warmgate.io/memory-request": "memory_request",
    "warmgate.io/cpu-limit": "cpu_limit",
    "warmgate.io/memory-limit": "memory_limit",
}
"""Per-pod resource annotations and the inject option each one overrides."""
MAX_ANNOTATION_CHARS = 2048
"""The longest value an inline annotation may have (a URL template is rarely a tenth of it)."""
MAX_URLS = 16
"""The most URL templates ``warmgate.io/url`` may list."""
FILE_FUNCTIONS = frozenset({"line"})
"""Template functions that read files, unavailable to annotations."""

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class InvalidAnnotationError(ConfigError):
    """An annotation the webhook cannot use; the pod is admitted unmutated."""

    def __init__(self, annotation: str, message: str) -> None:
        super().__init__(f"{annotation}: {message}")
        self.annotation = annotation


@dataclass(frozen=True)
class PodConfig:
    """Where the pod's config comes from: a ConfigMap name, or inline YAML (the other empty)."""

    config_map: str = ""
    inline: str = ""


def pod_config(annotations: Mapping[str, Any]) -> PodConfig:
    """The config a pod's annotations ask for; empty when they name none."""
    given = {key: annotations[key] for key in (CONFIG_MAP, *INLINE) if key in annotations}
    for key, value in given.items():
        if not isinstance(value, str):
            raise InvalidAnnotationError(key, "the value must be a string.")
        if len(value) > MAX_ANNOTATION_CHARS:
            raise InvalidAnnotationError(
                key, f"the value has {len(value)} characters, over the {MAX_ANNOTATION_CHARS} "
                f"an annotation may hold; put the config in a ConfigMap ({CONFIG_MAP}).",
            )  # fmt: skip
    inline = {key: value for key, value in given.items() if key in INLINE}
    if CONFIG_MAP in given and inline:
        raise InvalidAnnotationError(
            CONFIG_MAP, f"it names a ConfigMap, and {', '.join(inline)} give(s) an inline config; "
            "use one or the other.",
        )  # fmt: skip
    if CONFIG_MAP in given:
        name = given[CONFIG_MAP].strip()
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise InvalidAnnotationError(
                CONFIG_MAP, f"'{shorten(name, 80)}' is not a ConfigMap name; use lower-case "
                "letters, digits, '-' and '.'.",
            )  # fmt: skip
        return PodConfig(config_map=name)
    if not inline:
        return PodConfig()
    return PodConfig(inline=inline_config(inline))


def inline_config(inline: Mapping[str, str]) -> str:
    """The config YAML the inline annotations describe, validated as the CLI validates flags."""
    from warmgate.config.flags import CONFIG_FLAGS, overrides_from_flags
    from warmgate.config.loader import ENV_REFERENCE, load_config
    from warmgate.kube.yaml_stream import dump

    kinds = {flag.name: flag.kind for flag in CONFIG_FLAGS}
    fields = {flag.name: flag.field for flag in CONFIG_FLAGS}
    values: dict[str, Any] = {}
    for key, value in inline.items():
        if ENV_REFERENCE.search(value):
            # The sidecar reads this as its config file and expands ${VAR} there, from its own
            # environment: what is checked here would not be what runs.
            raise InvalidAnnotationError(
                key, "annotations cannot use ${VAR}, which the sidecar would replace from its "
                f"environment; put the config in a ConfigMap ({CONFIG_MAP}).",
            )  # fmt: skip
        name = INLINE[key]
        values[name] = _typed(key, value.strip(), kinds[name])
    if "url" not in values:
        raise InvalidAnnotationError(
            next(iter(inline)), "an inline config needs warmgate.io/url, the URL(s) to warm, "
            "one a line.",
        )  # fmt: skip
    for index, url in enumerate(values["url"]):
        _check_template(url, f"line {index + 1}")
    # The sidecar compiles these templates again; it must refuse file reads there too.
    overrides = {**overrides_from_flags(values), "template_files": False}
    try:
        load_config(None, overrides, environ={})
    except ConfigError as exc:
        # One problem a line, each starting with its field: name the annotation that set it.
        problems = [line.strip().removeprefix("- ") for line in str(exc).splitlines()[1:]]
        problems = problems or [str(exc)]
        location = problems[0].split(":", 1)[0]
        named = [key for key in inline if location == fields[INLINE[key]]]
        if location.startswith("targets"):
            named = ["warmgate.io/url"]
        raise InvalidAnnotationError((named or list(inline))[0], "; ".join(problems)) from None
    return dump(overrides)


def _typed(key: str, value: str, kind: Any) -> Any:
    if kind is int:
        if not re.fullmatch(r"[0-9]{1,9}", value):
            raise InvalidAnnotationError(key, f"'{shorten(value, 80)}' is not a whole number.")
        return int(value)
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise InvalidAnnotationError(key, f"'{shorten(value, 80)}' is not a number.") from None
    if kind == list[str]:
        urls = [line.strip() for line in value.splitlines() if line.strip()]
        if not urls or len(urls) > MAX_URLS:
            raise InvalidAnnotationError(key, f"give 1 to {MAX_URLS} URLs, one a line.")
        return urls
    return value


@functools.cache
def _templates() -> Templates:
    """One sandbox for every review: building Jinja2's environment costs more than a review."""
    from warmgate.traffic.templating import Templates

    return Templates(files=False)


def _check_template(url: str, where: str) -> None:
    from warmgate.traffic.templating import referenced_names

    key = "warmgate.io/url"
    try:
        reading = referenced_names(url) & FILE_FUNCTIONS
        if not reading:
            _templates().compile(url, where)
    except ConfigError as exc:
        raise InvalidAnnotationError(key, str(exc)) from None
    if reading:
        raise InvalidAnnotationError(
            key, f"{where}: templates from annotations cannot read files, so "
            f"{', '.join(sorted(reading))}() is not available; put the config in a ConfigMap "
            f"({CONFIG_MAP}) to use it.",
        )  # fmt: skip


def pod_resources(annotations: Mapping[str, Any], defaults: Mapping[str, str]) -> dict[str, str]:
    """The resource options (``cpu_request`` -> ``"500m"``) the annotations set, checked.

    ``defaults`` holds the four options' values otherwise; a request above its limit, once
    both are known, is an :class:`InvalidAnnotationError` naming the annotation that caused it.
    """
    from warmgate.kube.inject_parts import is_quantity, no_value, quantity_value

    chosen: dict[str, str] = {}
    for key, field in RESOURCES.items():
        if key not in annotations:
            continue
        value = annotations[key]
        if not isinstance(value, str) or not (no_value(value) or is_quantity(value)):
            shown = shorten(str(value), 40)
            raise InvalidAnnotationError(
                key, f"'{shown}' is not a Kubernetes quantity; write e.g. '250m' for CPU, "
                "'128Mi' for memory, or 'none'.",
            )  # fmt: skip
        chosen[field] = value.strip()
    merged = {**defaults, **chosen}
    for resource in ("cpu", "memory"):
        fields = [f"{resource}_request", f"{resource}_limit"]
        request, limit = (merged[field] for field in fields)
        given = [field for field in fields if field in chosen]
        if not given or no_value(request) or no_value(limit):
            continue
        if quantity_value(request) > quantity_value(limit):
            key = next(k for k, f in RESOURCES.items() if f == given[0])
            raise InvalidAnnotationError(
                key, f"the {resource} request {request} is above the {resource} limit {limit}, "
                f"which Kubernetes refuses; raise warmgate.io/{resource}-limit too, or set it "
                "to none.",
            )  # fmt: skip
    return chosen
