"""The command-line options of ``inject`` and ``uninject``; :mod:`warmgate.cli.main` registers
both.

Each option also reads ``WARMGATE_INJECT_<NAME>`` (:mod:`warmgate.cli.options`). The work is done
by :mod:`warmgate.kube.inject` and :mod:`warmgate.kube.uninject`; errors are turned into exit
codes by :mod:`warmgate.cli.main` alone.
"""

import functools
from typing import Annotated, Any

import typer

from warmgate.cli.options import option

# Their own prefix: WARMGATE_PORT set for `run` or `serve` must not change what inject writes.
_inject_option = functools.partial(option, prefix="WARMGATE_INJECT_")


def inject(
    manifest: Annotated[
        str, typer.Argument(metavar="FILE", help="Kubernetes YAML to read; - for standard input.")
    ],
    *,
    mode: Annotated[
        str | None,
        _inject_option("mode", "sidecar (native sidecar, Kubernetes 1.29+; default) or init."),
    ] = None,
    image: Annotated[str | None, _inject_option("image", "warmgate image to run.")] = None,
    port: Annotated[
        int | None, _inject_option("port", "Port of /readyz and /metrics (default 8099).")
    ] = None,
    config_map: Annotated[
        str | None,
        _inject_option(
            "config_map",
            "ConfigMap with a warmgate.yaml key; {name} is the workload's name "
            "(default {name}-warmgate).",
        ),
    ] = None,
    cpu_request: Annotated[
        str | None, _inject_option("cpu_request", "CPU request (default 250m).")
    ] = None,
    memory_request: Annotated[
        str | None, _inject_option("memory_request", "Memory request (default 64Mi).")
    ] = None,
    cpu_limit: Annotated[
        str | None,
        _inject_option("cpu_limit", "CPU limit (default none: throttling skews latency)."),
    ] = None,
    memory_limit: Annotated[
        str | None, _inject_option("memory_limit", "Memory limit (default 128Mi).")
    ] = None,
    run_as_user: Annotated[
        str | None,
        _inject_option("run_as_user", "User id (default 65532); none leaves it to OpenShift."),
    ] = None,
    env: Annotated[
        list[str] | None, _inject_option("env", "NAME=VALUE for warmgate's env (repeatable).")
    ] = None,
    env_from_secret: Annotated[
        list[str] | None,
        _inject_option("env_from_secret", "Secret whose keys become warmgate's env (repeatable)."),
    ] = None,
    kind: Annotated[
        list[str] | None, _inject_option("kind", "Only workloads of this kind (repeatable).")
    ] = None,
    name: Annotated[
        list[str] | None, _inject_option("name", "Only workloads of this name (repeatable).")
    ] = None,
    selector: Annotated[
        str | None, _inject_option("selector", "Only workloads whose labels match.", "-l")
    ] = None,
    emit_config: Annotated[
        bool, _inject_option("emit_config", "Also write a starter ConfigMap per workload.")
    ] = False,
    config_optional: Annotated[
        bool,
        _inject_option(
            "config_optional",
            "Let pods start without their ConfigMap: the sidecar is then ready, warming nothing.",
        ),
    ] = False,
    events: Annotated[
        bool,
        _inject_option(
            "events",
            "The sidecar posts Kubernetes Events about its pod (adds POD_NAME, POD_NAMESPACE "
            "and POD_UID); grant the RBAC yourself (docs/operations.md).",
        ),
    ] = False,
) -> None:
    """Add warmgate to the workloads in Kubernetes YAML and print it (like linkerd inject).

    Re-running updates the warmgate it added; Jobs, CronJobs, Helm hooks, hostNetwork pods and
    workloads annotated warmgate.io/inject: disabled are skipped, each with a reason on stderr.
    """
    from warmgate.kube.inject import InjectOptions, inject_source, workload_kind
    from warmgate.kube.selection import Selection, parse_selector

    given: dict[str, Any] = {"mode": mode, "image": image, "port": port, "config_map": config_map,
                             "cpu_request": cpu_request, "memory_request": memory_request,
                             "cpu_limit": cpu_limit, "memory_limit": memory_limit,
                             "run_as_user": run_as_user, "env": tuple(env or ()),
                             "env_from_secret": tuple(env_from_secret or ())}  # fmt: skip
    kinds = tuple(workload_kind(k) for k in kind or ())
    selection = Selection(kinds, tuple(name or ()), parse_selector(selector or ""))
    options = InjectOptions(
        **{key: value for key, value in given.items() if value is not None},
        selection=selection,
        emit_config=emit_config,
        config_optional=config_optional,
        events=events,
    )
    _print_rewritten(inject_source(manifest, options), "inject")


def uninject(
    manifest: Annotated[
        str, typer.Argument(metavar="FILE", help="Kubernetes YAML to read; - for standard input.")
    ],
) -> None:
    """Remove exactly what inject added (its container, volumes and annotation) and print it."""
    from warmgate.kube.uninject import uninject_source

    _print_rewritten(uninject_source(manifest), "uninject")


def _print_rewritten(result: Any, command: str) -> None:
    if result.objects == 0:
        typer.echo(
            f"warmgate: the input holds no Kubernetes objects; nothing to {command}", err=True
        )
    for note in result.notes:
        typer.echo(f"warmgate: {note}", err=True)
    for config_map in result.config_maps:
        typer.echo(f"warmgate: create ConfigMap {config_map} with a warmgate.yaml key", err=True)
    typer.echo(result.text, nl=False)
