"""The command-line options of ``webhook``; :mod:`warmgate.cli.main` registers it.

Each option also reads ``WARMGATE_WEBHOOK_<NAME>`` (:mod:`warmgate.cli.options`). The server is
:mod:`warmgate.kube.webhook`; what it adds to a pod is what ``inject`` adds, so the sidecar
options mirror inject's.
"""

import functools
from pathlib import Path
from typing import Annotated, Any, Literal

from warmgate.cli.options import option

_option = functools.partial(option, prefix="WARMGATE_WEBHOOK_")


def webhook(
    *,
    tls_cert: Annotated[Path, _option("tls_cert", "PEM certificate chain (reloaded on change).")],
    tls_key: Annotated[Path, _option("tls_key", "PEM private key (reloaded on change).")],
    port: Annotated[
        int, _option("port", "Port to answer reviews on (0: any free port).", min=0, max=65535)
    ] = 8443,
    host: Annotated[str, _option("host", "Address to listen on.")] = "0.0.0.0",  # noqa: S104 - the API server calls the pod IP
    image: Annotated[str | None, _option("image", "warmgate image the sidecar runs.")] = None,
    config_map: Annotated[
        str, _option("config_map", "ConfigMap for pods that name no config in annotations.")
    ] = "warmgate",
    sidecar_port: Annotated[
        int | None,
        _option("sidecar_port", "Port of the sidecar's /readyz (default 8099).", min=1, max=65535),
    ] = None,
    cpu_request: Annotated[str | None, _option("cpu_request", "Sidecar CPU request.")] = None,
    memory_request: Annotated[
        str | None, _option("memory_request", "Sidecar memory request.")
    ] = None,
    cpu_limit: Annotated[
        str | None, _option("cpu_limit", "Sidecar CPU limit (default none; for a quota on it).")
    ] = None,
    memory_limit: Annotated[str | None, _option("memory_limit", "Sidecar memory limit.")] = None,
    run_as_user: Annotated[
        str | None, _option("run_as_user", "Sidecar user id; none leaves it to OpenShift.")
    ] = None,
    drain: Annotated[
        str, _option("drain", "After SIGTERM, keep answering (not ready) this long, e.g. 5s.")
    ] = "0s",
    log_format: Annotated[
        Literal["auto", "json", "human"], _option("log_format", "auto, json or human.")
    ] = "auto",
    events: Annotated[
        bool,
        _option(
            "events",
            "Sidecars post Kubernetes Events about their pods (adds POD_NAME, POD_NAMESPACE and "
            "POD_UID); each namespace grants the RBAC (docs/operations.md).",
        ),
    ] = False,
) -> None:
    """Mutating admission webhook: add warmgate to pods that opt in (TLS; see k8s/webhook/)."""
    from warmgate.kernel.errors import ConfigError
    from warmgate.kernel.units import parse_duration
    from warmgate.kube.inject import InjectOptions
    from warmgate.kube.inject_parts import DNS_SUBDOMAIN
    from warmgate.kube.webhook import serve_webhook

    given: dict[str, Any] = {"image": image, "port": sidecar_port, "cpu_request": cpu_request,
                             "memory_request": memory_request, "cpu_limit": cpu_limit,
                             "memory_limit": memory_limit,
                             "run_as_user": run_as_user}  # fmt: skip
    try:
        drain_seconds = parse_duration(drain)
    except ValueError as exc:
        raise ConfigError(f"--drain: {exc}.") from None
    if len(config_map) > 253 or not DNS_SUBDOMAIN.match(config_map):
        # Checked here, not per pod: a typo would leave every pod without warmgate. No {name}:
        # a Deployment's pods have only a generateName when they are created.
        raise ConfigError(
            f"--config-map: '{config_map}' is not a ConfigMap name; use lower-case letters, "
            "digits, '-' and '.', the same name in every namespace."
        )
    options = InjectOptions(
        config_map=config_map,
        events=events,
        **{key: value for key, value in given.items() if value is not None},
    )
    serve_webhook(
        options,
        tls_cert=tls_cert,
        tls_key=tls_key,
        host=host,
        port=port,
        log_format=log_format,
        drain=drain_seconds,
    )
