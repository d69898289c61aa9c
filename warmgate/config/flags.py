"""The config flags: the command-line flags that each set one config field, and loading from them.

:data:`CONFIG_FLAGS` is the one table of them: ``--p95`` sets ``gate.p95``, ``--url`` (repeatable)
replaces ``targets``. The CLI builds a typer option from each (:mod:`warmgate.cli.options`) and
the admission webhook reads a pod's inline annotations through the same table
(:mod:`warmgate.kube.pod_config`), so a flag and its annotation can never mean two things.
:func:`overrides_from_flags` lays flag values into the shape of a config file, and
:func:`load_from_flags` loads the config they describe, the ``--config`` file under them.

No typer here, and nothing heavy at import: the CLI imports this table on every command,
``check`` (an exec probe) included, so the loader is imported only when a config is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warmgate.config.model import Config
    from warmgate.kernel.redaction import Secrets


@dataclass(frozen=True)
class ConfigFlag:
    """A command-line flag that sets one config field."""

    name: str
    field: str
    kind: Any
    help: str


CONFIG_FLAGS = (
    ConfigFlag("url", "targets", list[str], "URL template to warm (repeatable); replaces targets. "
               "Env var WARMGATE_URL: one URL a line."),
    ConfigFlag("concurrency", "load.concurrency", int, "Target concurrency, also the cap."),
    ConfigFlag("rate", "load.rate", float, "Total req/s (open model); default: closed loop."),
    ConfigFlag("success_rate", "gate.success_rate", float, "Minimum success ratio, e.g. 0.99."),
    ConfigFlag("p50", "gate.p50", str, "Maximum p50 latency, e.g. 50ms, or 'auto'."),
    ConfigFlag("p95", "gate.p95", str, "Maximum p95 latency, e.g. 200ms, or 'auto' (plateau)."),
    ConfigFlag("p99", "gate.p99", str, "Maximum p99 latency, e.g. 1s, or 'auto'."),
    ConfigFlag("min_requests", "gate.min_requests", int, "Minimum requests in the window."),
    ConfigFlag("window", "gate.window", str, "Sliding window, e.g. 10s, or 'auto'."),
    ConfigFlag("hold", "gate.hold", str, "How long thresholds must keep passing, e.g. 5s."),
    ConfigFlag("timeout", "gate.timeout", str, "Deadline for warming, e.g. 5m."),
    ConfigFlag("on_timeout", "gate.on_timeout", str, "At the deadline: 'ready' or 'fail'."),
    ConfigFlag("status_dir", "status_dir", str, "Directory for status.json and the ready marker."),
    ConfigFlag("port", "server.port", int,
               "Port of /readyz, /status, /metrics (0: any free port)."),
    ConfigFlag("host", "server.host", str, "Address the endpoint listens on."),
    ConfigFlag("wait_url", "wait.url", str, "URL that answers 2xx once the app is up."),
    ConfigFlag("wait_timeout", "wait.timeout", str, "How long to wait for the app to come up."),
    ConfigFlag("keep_warm_rate", "after_ready.keep_warm_rate", float, "req/s once ready."),
    ConfigFlag("rearm_after", "after_ready.rearm_after", str, "Re-arm after this long down."),
    ConfigFlag("jitter", "load.jitter", str, "Random delay before priming (avoid stampedes)."),
    ConfigFlag("log_format", "log_format", str, "auto, json or human."),
    ConfigFlag("events", "kubernetes.events", bool,
               "Post Kubernetes Events about this pod (needs POD_NAME, POD_NAMESPACE, RBAC)."),
)  # fmt: skip
"""Every flag that sets a config field, in the order ``--help`` lists them."""


def overrides_from_flags(values: Mapping[str, Any]) -> dict[str, Any]:
    """The config overrides the flags in ``values`` describe (unset flags are ``None``)."""
    overrides: dict[str, Any] = {}
    for flag in CONFIG_FLAGS:
        value = values.get(flag.name)
        if value is None or value == []:
            continue
        if flag.name == "url":
            value = [{"http": {"url": url}} for url in value]
        elif isinstance(value, Path):
            value = str(value)
        node = overrides
        *parents, leaf = flag.field.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return overrides


def load_from_flags(flags: Mapping[str, Any], *, warn: bool = True) -> tuple[Config, Secrets]:
    """The config that flag values describe: the file ``flags["config"]`` (if given) with the
    other flags laid on top. With ``warn``, each warning goes to stderr as a ``warmgate:
    warning:`` line. Raises :class:`~warmgate.kernel.errors.ConfigError` naming the field."""
    from warmgate.config.loader import load_config, load_for_command

    load = load_for_command if warn else load_config
    return load(flags.get("config"), overrides_from_flags(flags))
