"""The command line: ``run``, ``prime``, ``serve``, ``check``, ``validate``, ``report``, ``demo``,
``schema`` and ``inject``.

This is the only module that turns errors into exit codes (see ``errors.py``). Every flag also
reads a ``WARMGATE_<NAME>`` environment variable, and flags override the config file: each
plan flag maps one-to-one onto a config field (:data:`PLAN_FLAGS`).
"""

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from warmgate import __version__
from warmgate.errors import EXIT_NOT_READY, EXIT_OK, EXIT_USAGE, ConfigError, WarmgateError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="warmgate",
    help="Warm a slow-starting app before it takes traffic, and say when it is measurably ready.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True)
class PlanFlag:
    """A command-line flag that sets one config field."""

    name: str
    field: str
    kind: Any
    help: str


PLAN_FLAGS = (
    PlanFlag("url", "targets", list[str], "URL template to warm (repeatable); replaces targets."),
    PlanFlag("concurrency", "load.concurrency", int, "Target concurrency, also the cap."),
    PlanFlag("rate", "load.rate", float, "Total req/s (open model); default: closed loop."),
    PlanFlag("success_rate", "gate.success_rate", float, "Minimum success ratio, e.g. 0.99."),
    PlanFlag("p50", "gate.p50", str, "Maximum p50 latency, e.g. 50ms."),
    PlanFlag("p95", "gate.p95", str, "Maximum p95 latency, e.g. 200ms, or 'auto' (plateau)."),
    PlanFlag("p99", "gate.p99", str, "Maximum p99 latency, e.g. 1s."),
    PlanFlag("min_requests", "gate.min_requests", int, "Minimum requests in the window."),
    PlanFlag("window", "gate.window", str, "Sliding window, e.g. 10s."),
    PlanFlag("hold", "gate.hold", str, "How long thresholds must keep passing, e.g. 5s."),
    PlanFlag("timeout", "gate.timeout", str, "Deadline for warming, e.g. 5m."),
    PlanFlag("on_timeout", "gate.on_timeout", str, "At the deadline: 'ready' or 'fail'."),
    PlanFlag("status_dir", "status_dir", Path, "Directory for status.json and the ready marker."),
    PlanFlag("port", "server.port", int, "Port of /readyz, /status, /metrics (0: any free port)."),
    PlanFlag("host", "server.host", str, "Address the endpoint listens on."),
    PlanFlag("wait_url", "wait.url", str, "URL that answers 2xx once the app is up."),
    PlanFlag("wait_timeout", "wait.timeout", str, "How long to wait for the app to come up."),
    PlanFlag("keep_warm_rate", "after_ready.keep_warm_rate", float, "req/s once ready."),
    PlanFlag("rearm_after", "after_ready.rearm_after", str, "Re-arm after this long down."),
    PlanFlag("jitter", "load.jitter", str, "Random delay before priming (avoid stampedes)."),
    PlanFlag("log_format", "log_format", str, "auto, json or human."),
)  # fmt: skip


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_name(name: str) -> str:
    return "WARMGATE_" + name.upper()


def _plan_parameters() -> list[inspect.Parameter]:
    parameters = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None,
                typer.Option(
                    "--config", "-c", envvar=_env_name("config"), help="YAML config file."
                ),
            ],
        )
    ]
    for flag in PLAN_FLAGS:
        option = typer.Option(_option_name(flag.name), envvar=_env_name(flag.name), help=flag.help)
        annotation = Annotated[flag.kind | None, option]  # type: ignore[name-defined]
        parameters.append(
            inspect.Parameter(
                flag.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
            )
        )
    return parameters


def overrides_from_flags(values: dict[str, Any]) -> dict[str, Any]:
    """The config overrides the flags in ``values`` describe (unset flags are ``None``)."""
    overrides: dict[str, Any] = {}
    for flag in PLAN_FLAGS:
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


def with_plan_options(command: F) -> F:
    """Give ``command`` every plan flag; it receives them as ``plan: dict`` of flag values."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "plan"]
    plan_parameters = _plan_parameters()
    names = {p.name for p in plan_parameters}

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        plan = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        return command(plan=plan, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + plan_parameters)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def reports_errors(command: F) -> F:
    """Turn a :class:`WarmgateError` into one sentence on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WarmgateError as exc:
            typer.echo(f"warmgate: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _load(plan: dict[str, Any]) -> tuple[Any, Any]:
    from warmgate.loading import load_config

    config_path = plan.pop("config", None)
    return load_config(config_path, overrides_from_flags(plan))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"warmgate {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Warm a slow-starting app before it takes traffic, and say when it is measurably ready."""


@app.command()
@reports_errors
@with_plan_options
def run(plan: dict[str, Any]) -> None:
    """Sidecar mode: wait, prime until warm, serve readiness, keep watching and re-arm."""
    from warmgate.lifecycle import execute

    config, secrets = _load(plan)
    execute(config, secrets, mode="run")


@app.command()
@reports_errors
@with_plan_options
def prime(
    plan: dict[str, Any],
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            envvar=_env_name("report"),
            help="Also write the warm-up report to this .html or .svg file.",
        ),
    ] = None,
) -> None:
    """Init-container mode: prime until warm, write the status, exit 0 (1 if it fails closed)."""
    from warmgate.lifecycle import execute

    config, secrets = _load(plan)
    status = execute(config, secrets, mode="prime", report=report)
    if not status.ready:
        raise typer.Exit(EXIT_NOT_READY)


@app.command("report")
@reports_errors
def report_command(
    status_dir: Annotated[
        Path,
        typer.Option("--status-dir", envvar=_env_name("status_dir"), help="Status directory."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            envvar=_env_name("output"),
            help="Write an .html page or .svg chart instead.",
        ),
    ] = None,
) -> None:
    """Show the report of the last warm-up recorded in a status directory."""
    from warmgate.lifecycle import load_record, report_format
    from warmgate.render import render_html, render_svg, render_text

    record = load_record(status_dir)
    if output is None:
        typer.echo(render_text(record), nl=False)
        return
    text = render_html(record) if report_format(output) == "html" else render_svg(record)
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")


@app.command()
@reports_errors
@with_plan_options
def validate(plan: dict[str, Any]) -> None:
    """Check the config (and templates) and print the effective plan; exit 2 if it is wrong."""
    from warmgate.loading import describe
    from warmgate.targets import compile_targets

    config, secrets = _load(plan)
    compile_targets(config)
    typer.echo(describe(config, secrets))


@app.command()
@reports_errors
def serve(
    status_dir: Annotated[
        Path,
        typer.Option("--status-dir", envvar=_env_name("status_dir"), help="Status directory."),
    ],
    port: Annotated[
        int, typer.Option("--port", envvar=_env_name("port"), help="Port to serve on.")
    ] = 8099,
    host: Annotated[
        str, typer.Option("--host", envvar=_env_name("host"), help="Address to listen on.")
    ] = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
    log_format: Annotated[
        str,
        typer.Option("--log-format", envvar=_env_name("log_format"), help="auto, json or human."),
    ] = "auto",
) -> None:
    """Serve /readyz, /status and /metrics from a status directory written by `prime`."""
    from warmgate.lifecycle import serve_directory

    serve_directory(status_dir, host, port, log_format)


@app.command()
@reports_errors
def check(
    status_dir: Annotated[
        Path,
        typer.Option("--status-dir", envvar=_env_name("status_dir"), help="Status directory."),
    ],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", envvar=_env_name("quiet"), help="Print nothing.")
    ] = False,
) -> None:
    """Exit 0 if the status directory says ready, 1 if not (an exec probe)."""
    from warmgate.status import is_ready, read_status

    status = read_status(status_dir)
    ready = is_ready(status_dir, status)
    if not quiet:
        reason = "no status yet" if status is None else str(status.get("reason", ""))
        typer.echo(f"{'ready' if ready else 'not ready'}: {reason}")
    raise typer.Exit(EXIT_OK if ready else EXIT_NOT_READY)


@app.command()
@reports_errors
def demo(  # noqa: PLR0917 - typer maps each parameter to one option
    app_capacity: Annotated[
        int,
        typer.Option(
            envvar=_env_name("app_capacity"),
            help="Concurrent requests the simulated app copes with once warm.",
        ),
    ] = 32,
    app_warm_requests: Annotated[
        int,
        typer.Option(
            envvar=_env_name("app_warm_requests"),
            help="Requests it must serve before its pool is full (0: warm).",
        ),
    ] = 500,
    app_cold_latency: Annotated[
        str,
        typer.Option(
            envvar=_env_name("app_cold_latency"),
            help="Extra latency when cold, decaying with use (a JIT).",
        ),
    ] = "150ms",
    app_compile_delay: Annotated[
        str,
        typer.Option(
            envvar=_env_name("app_compile_delay"),
            help="Delay of the first hit of each page (JSPs compiling).",
        ),
    ] = "300ms",
    concurrency: Annotated[
        int, typer.Option(envvar=_env_name("concurrency"), help="Target concurrency of the gate.")
    ] = 16,
    p95: Annotated[
        str, typer.Option(envvar=_env_name("p95"), help="p95 limit, or 'auto'.")
    ] = "100ms",
    hold: Annotated[
        str,
        typer.Option(envvar=_env_name("hold"), help="How long the thresholds must keep passing."),
    ] = "3s",
    timeout: Annotated[
        str, typer.Option(envvar=_env_name("timeout"), help="Deadline for warming.")
    ] = "2m",
    sql: Annotated[
        bool, typer.Option(envvar=_env_name("sql"), help="Also prime the demo's SQLite database.")
    ] = True,
    report: Annotated[
        Path | None,
        typer.Option(
            envvar=_env_name("report"), help="Also write the report to this .html or .svg file."
        ),
    ] = None,
    log_format: Annotated[
        str, typer.Option(envvar=_env_name("log_format"), help="auto, json or human.")
    ] = "auto",
) -> None:
    """Watch a simulated cold app server warm up and the gate open (nothing to install)."""
    from warmgate.demo import run_demo, summary
    from warmgate.simapp import Behavior
    from warmgate.units import parse_duration

    try:
        behavior = Behavior(
            start_capacity=1,
            full_capacity=app_capacity,
            warm_requests=app_warm_requests,
            cold_latency=parse_duration(app_cold_latency),
            compile_delay=parse_duration(app_compile_delay),
            jit_half_life=400,
        )
    except ValueError as exc:
        raise ConfigError(f"--app-cold-latency/--app-compile-delay: {exc}.") from None
    overrides = {
        "load": {"concurrency": concurrency},
        "gate": {"p95": p95, "hold": hold, "timeout": timeout},
        "log_format": log_format,
    }
    result = run_demo(behavior, overrides, report, sql=sql)
    typer.echo(summary(result, concurrency, parse_duration(hold), result.window))
    if not result.status.ready:
        raise typer.Exit(EXIT_NOT_READY)


@app.command()
def schema(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the config reference in Markdown instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the config file (or its reference, with --markdown)."""
    from warmgate.reference import json_schema_text, markdown_reference

    typer.echo(markdown_reference() if markdown else json_schema_text(), nl=False)


def _inject_option(name: str, help: str) -> Any:
    return typer.Option(_option_name(name), envvar=_env_name(name), help=help)


@app.command()
@reports_errors
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
        str | None, _inject_option("cpu_request", "CPU request (default 100m).")
    ] = None,
    memory_request: Annotated[
        str | None, _inject_option("memory_request", "Memory request (default 64Mi).")
    ] = None,
    cpu_limit: Annotated[
        str | None,
        _inject_option("cpu_limit", "CPU limit (default none: throttling skews latency)."),
    ] = None,
    memory_limit: Annotated[
        str | None, _inject_option("memory_limit", "Memory limit (default 96Mi).")
    ] = None,
) -> None:
    """Add warmgate to the workloads in Kubernetes YAML and print it (like linkerd inject)."""
    from warmgate.inject import InjectOptions, inject_source

    given: dict[str, Any] = {
        "mode": mode,
        "image": image,
        "port": port,
        "config_map": config_map,
        "cpu_request": cpu_request,
        "memory_request": memory_request,
        "cpu_limit": cpu_limit,
        "memory_limit": memory_limit,
    }
    options = InjectOptions(**{key: value for key, value in given.items() if value is not None})
    result = inject_source(manifest, options)
    for note in result.notes:
        typer.echo(f"warmgate: {note}", err=True)
    for name in result.config_maps:
        typer.echo(f"warmgate: create ConfigMap {name} with a warmgate.yaml key", err=True)
    typer.echo(result.text, nl=False)


def main() -> None:
    """The console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_USAGE)
    except BrokenPipeError:
        sys.exit(EXIT_OK)
