"""The command line: ``run``, ``prime``, ``serve``, ``check``, ``validate``, ``report``, ``demo``,
``schema``, ``inject``, ``uninject`` and ``webhook``.

This is the only module that turns errors into exit codes (see ``errors.py``). Every flag also
reads a ``WARMGATE_<NAME>`` environment variable (``inject``'s read ``WARMGATE_INJECT_<NAME>``),
and flags override the config file: each plan flag maps one-to-one onto a config field
(:data:`PLAN_FLAGS`). ``WARMGATE_URL`` holds one URL, or several on separate lines: a URL
template may contain spaces (``{{ randint(1, 1000) }}``), so it is never split on whitespace.
"""

import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from warmgate import __version__
from warmgate.cli.inject import inject, uninject
from warmgate.cli.paths import paths
from warmgate.cli.webhook import webhook
from warmgate.kernel.errors import EXIT_INTERRUPTED, EXIT_NOT_READY, EXIT_OK, WarmgateError
from warmgate.runtime import signals

F = TypeVar("F", bound=Callable[..., Any])
LogFormat = Literal["auto", "json", "human"]

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
    PlanFlag("url", "targets", list[str], "URL template to warm (repeatable); replaces targets. "
             "Env var WARMGATE_URL: one URL a line."),
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
    PlanFlag("status_dir", "status_dir", str, "Directory for status.json and the ready marker."),
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


def _env_name(name: str, prefix: str = "WARMGATE_") -> str:
    return prefix + name.upper()


def _option(name: str, help: str, *short: str, prefix: str = "WARMGATE_", **kw: Any) -> Any:
    return typer.Option(_option_name(name), *short, envvar=_env_name(name, prefix), help=help, **kw)


def urls_from_env(value: str) -> list[str]:
    """The URLs in a ``WARMGATE_URL`` value: one a line, blank lines skipped."""
    return [line.strip() for line in value.splitlines() if line.strip()]


def _plan_parameters() -> list[inspect.Parameter]:
    config = Annotated[Path | None, _option("config", "YAML config file.", "-c")]
    parameters = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=config)
    ]
    for flag in PLAN_FLAGS:
        # typer would split WARMGATE_URL on whitespace; with_plan_options reads it by lines.
        envvar = None if flag.name == "url" else _env_name(flag.name)
        option = typer.Option(_option_name(flag.name), envvar=envvar, help=flag.help)
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
        if not plan.get("url"):
            plan["url"] = urls_from_env(os.environ.get(_env_name("url"), ""))
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


def _load(plan: dict[str, Any], *, warn: bool = True) -> tuple[Any, Any]:
    from warmgate.config.loader import load_config, load_for_command

    config_path = plan.pop("config", None)
    load = load_for_command if warn else load_config
    return load(config_path, overrides_from_flags(plan))


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
def run(
    plan: dict[str, Any],
    optional_config_map: Annotated[
        str | None,
        _option(
            "optional_config_map",
            "The --config file comes from this ConfigMap, which may "
            "be missing: then be ready at once, warm nothing, and say to create it.",
        ),
    ] = None,
) -> None:
    """Sidecar mode: wait, prime until warm, serve readiness, keep watching and re-arm."""
    from warmgate.runtime.open_run import open_if_missing
    from warmgate.runtime.primer import become_supervisor

    open_if_missing(plan, optional_config_map)  # returns unless the ConfigMap is missing
    config, secrets = _load(plan)
    become_supervisor(config, secrets, sys.argv[1:])


@app.command()
@reports_errors
@with_plan_options
def prime(
    plan: dict[str, Any],
    report: Annotated[
        Path | None, _option("report", "Also write the warm-up report to this .html or .svg file.")
    ] = None,
    supervised: Annotated[str | None, typer.Option("--supervised", hidden=True)] = None,
) -> None:
    """Init-container mode: prime until warm, write the status, exit 0 (1 if it fails closed)."""
    from warmgate.runtime.primer import Supervised, execute

    config, secrets = _load(plan, warn=not supervised)  # run has warned once already
    primer = Supervised.from_json(supervised) if supervised else None
    status = execute(config, secrets, report=report, supervised=primer)
    if not status.ready:
        raise typer.Exit(EXIT_NOT_READY)


@app.command("report")
@reports_errors
def report_command(
    status_dir: Annotated[Path, _option("status_dir", "Status directory.")],
    output: Annotated[
        Path | None, _option("output", "Write an .html page or .svg chart instead.", "-o")
    ] = None,
) -> None:
    """Show the report of the last warm-up recorded in a status directory."""
    from warmgate.report.files import load_record, write_report
    from warmgate.report.render import render_text
    from warmgate.serve.status import REPORT_FILE

    record = load_record(status_dir / REPORT_FILE)
    if output is None:
        typer.echo(render_text(record), nl=False)
        return
    write_report(record, output, "--output")
    typer.echo(f"wrote {output}")


@app.command()
@reports_errors
@with_plan_options
def validate(plan: dict[str, Any]) -> None:
    """Check the config (and templates) and print the effective plan; exit 2 if it is wrong."""
    from warmgate.config.describe import describe
    from warmgate.traffic.targets import compile_config

    config, secrets = _load(plan)
    compile_config(config, secrets.warn, secrets=secrets)
    typer.echo(describe(config, secrets))


@app.command()
@reports_errors
def serve(
    status_dir: Annotated[Path, _option("status_dir", "Status directory.")],
    port: Annotated[int, _option("port", "Port to serve on.", min=0, max=65535)] = 8099,
    host: Annotated[str, _option("host", "Address to listen on.")] = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
    log_format: Annotated[LogFormat, _option("log_format", "auto, json or human.")] = "auto",
) -> None:
    """Serve /readyz, /status and /metrics from a status directory written by `prime`."""
    from warmgate.serve.server import serve_directory

    serve_directory(status_dir, host, port, log_format)


@app.command()
@reports_errors
def check(
    status_dir: Annotated[Path, _option("status_dir", "Status directory.")],
    quiet: Annotated[bool, _option("quiet", "Print nothing.", "-q")] = False,
) -> None:
    """Exit 0 if the status directory says ready, 1 if not (an exec probe)."""
    from warmgate.serve.status import snapshot

    ready, reason, _ = snapshot(status_dir)  # unreadable or stale: not ready, with why
    if not quiet:
        typer.echo(f"{'ready' if ready else 'not ready'}: {reason}")
    raise typer.Exit(EXIT_OK if ready else EXIT_NOT_READY)


@app.command()
@reports_errors
def demo(  # noqa: PLR0917 - typer maps each parameter to one option
    app_capacity: Annotated[
        int, _option("app_capacity", "Concurrent requests the simulated app copes with once warm.")
    ] = 32,
    app_warm_requests: Annotated[
        int,
        _option("app_warm_requests", "Requests it must serve before its pool is full (0: warm)."),
    ] = 500,
    app_cold_latency: Annotated[
        str, _option("app_cold_latency", "Extra latency when cold, decaying with use (a JIT).")
    ] = "150ms",
    app_compile_delay: Annotated[
        str, _option("app_compile_delay", "Delay of the first hit of each page (JSPs compiling).")
    ] = "300ms",
    concurrency: Annotated[int, _option("concurrency", "Target concurrency of the gate.")] = 16,
    p95: Annotated[str, _option("p95", "p95 limit, or 'auto'.")] = "100ms",
    hold: Annotated[str, _option("hold", "How long the thresholds must keep passing.")] = "3s",
    timeout: Annotated[str, _option("timeout", "Deadline for warming.")] = "2m",
    sql: Annotated[
        bool, typer.Option(envvar=_env_name("sql"), help="Also prime the demo's SQLite database.")
    ] = True,
    report: Annotated[
        Path | None, _option("report", "Also write the report to this .html or .svg file.")
    ] = None,
    log_format: Annotated[LogFormat, _option("log_format", "auto, json or human.")] = "auto",
) -> None:
    """Watch a simulated cold app server warm up and the gate open (nothing to install)."""
    from warmgate.demo.tour import demo_command

    warm, summary = demo_command(
        app_capacity, app_warm_requests, app_cold_latency, app_compile_delay,
        concurrency=concurrency, p95=p95, hold=hold, timeout=timeout, sql=sql, report=report,
        log_format=log_format,
    )  # fmt: skip
    typer.echo(summary)
    if not warm:
        raise typer.Exit(EXIT_NOT_READY)


@app.command()
def schema(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the config reference in Markdown instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the config file (or its reference, with --markdown)."""
    from warmgate.cli.reference import json_schema_text, markdown_reference

    typer.echo(markdown_reference() if markdown else json_schema_text(), nl=False)


# inject, uninject and webhook only map flags onto their modules; their options live beside them.
app.command()(reports_errors(inject))
app.command()(reports_errors(uninject))
app.command()(reports_errors(paths))
app.command()(reports_errors(webhook))


def main() -> None:
    """The console script."""
    signals.install_for(sys.argv[1:2])  # a SIGTERM while importing still ends in a status
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_OK)
