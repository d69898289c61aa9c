"""The command line: ``run``, ``prime``, ``serve``, ``check``, ``validate``, ``report``, ``demo``,
``schema``, ``inject``, ``uninject``, ``paths``, ``webhook`` and ``doctor``.

This is the only module that turns errors into exit codes (see :mod:`warmgate.kernel.errors`).
Every flag also reads a ``WARMGATE_<NAME>`` environment variable (``inject``'s read
``WARMGATE_INJECT_<NAME>``, and so on: :mod:`warmgate.cli.options`), and flags override the config
file: each config flag maps one-to-one onto a config field
(:data:`~warmgate.config.flags.CONFIG_FLAGS`). The commands import what does their work only when
they run, so ``check`` (an exec probe) stays quick.
"""

import functools
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from warmgate import __version__
from warmgate.cli.doctor import doctor_command
from warmgate.cli.inject import inject, uninject
from warmgate.cli.options import F, env_name, option, with_config_flags
from warmgate.cli.paths import paths
from warmgate.cli.webhook import webhook
from warmgate.config.flags import load_from_flags
from warmgate.kernel.errors import EXIT_INTERRUPTED, EXIT_NOT_READY, EXIT_OK, WarmgateError
from warmgate.runtime import signals

LogFormat = Literal["auto", "json", "human"]

app = typer.Typer(
    name="warmgate",
    help="Warm a slow-starting app before it takes traffic, and say when it is measurably ready.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
@with_config_flags
def run(
    flags: dict[str, Any],
    optional_config_map: Annotated[
        str | None,
        option(
            "optional_config_map",
            "The --config file comes from this ConfigMap, which may "
            "be missing: then be ready at once, warm nothing, and say to create it.",
        ),
    ] = None,
) -> None:
    """Sidecar mode: wait, prime until warm, serve readiness, keep watching and re-arm."""
    from warmgate.runtime.launch import become_supervisor, open_if_missing

    open_if_missing(flags, optional_config_map)  # returns unless the ConfigMap is missing
    config, secrets = load_from_flags(flags)
    become_supervisor(config, secrets, sys.argv[1:])


@app.command()
@reports_errors
@with_config_flags
def prime(
    flags: dict[str, Any],
    report: Annotated[
        Path | None, option("report", "Also write the warm-up report to this .html or .svg file.")
    ] = None,
    supervised: Annotated[str | None, typer.Option("--supervised", hidden=True)] = None,
) -> None:
    """Init-container mode: prime until warm, write the status, exit 0 (1 if it fails closed)."""
    from warmgate.runtime.primer import execute, supervised_option

    config, secrets = load_from_flags(flags, warn=not supervised)  # run has warned once already
    primer = supervised_option(supervised) if supervised else None
    status = execute(config, secrets, report=report, supervised=primer)
    if not status.ready:
        raise typer.Exit(EXIT_NOT_READY)


@app.command("report")
@reports_errors
def report_command(
    status_dir: Annotated[Path, option("status_dir", "Status directory.")],
    output: Annotated[
        Path | None, option("output", "Write an .html page or .svg chart instead.", "-o")
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
@with_config_flags
def validate(flags: dict[str, Any]) -> None:
    """Check the config (and templates) and print the effective plan; exit 2 if it is wrong."""
    from warmgate.config.describe import describe
    from warmgate.traffic.targets import compile_config

    config, secrets = load_from_flags(flags)
    compiled = compile_config(config, secrets.warn, secrets=secrets)
    typer.echo(describe(config, secrets))
    methods = [(item.target.name, item.grpc) for item in compiled.targets if item.grpc]
    if methods:
        import asyncio

        from warmgate.traffic.grpc.driver import describe_method

        async def resolve_all() -> list[str]:
            return [await describe_method(n, plan, config.traffic) for n, plan in methods]

        typer.echo("grpc methods:")
        for (name, _), line in zip(methods, asyncio.run(resolve_all()), strict=True):
            typer.echo(secrets.redact(f"  - {name}: {line}"))


@app.command()
@reports_errors
def serve(
    status_dir: Annotated[Path, option("status_dir", "Status directory.")],
    port: Annotated[int, option("port", "Port to serve on.", min=0, max=65535)] = 8099,
    host: Annotated[str, option("host", "Address to listen on.")] = "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP
    log_format: Annotated[LogFormat, option("log_format", "auto, json or human.")] = "auto",
) -> None:
    """Serve /readyz, /status and /metrics from a status directory written by `prime`."""
    from warmgate.serve.server import serve_directory

    serve_directory(status_dir, host, port, log_format)


@app.command()
@reports_errors
def check(
    status_dir: Annotated[Path, option("status_dir", "Status directory.")],
    quiet: Annotated[bool, option("quiet", "Print nothing.", "-q")] = False,
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
        int, option("app_capacity", "Concurrent requests the simulated app copes with once warm.")
    ] = 32,
    app_warm_requests: Annotated[
        int,
        option("app_warm_requests", "Requests it must serve before its pool is full (0: warm)."),
    ] = 500,
    app_cold_latency: Annotated[
        str, option("app_cold_latency", "Extra latency when cold, decaying with use (a JIT).")
    ] = "150ms",
    app_compile_delay: Annotated[
        str, option("app_compile_delay", "Delay of the first hit of each page (JSPs compiling).")
    ] = "300ms",
    concurrency: Annotated[int, option("concurrency", "Target concurrency of the gate.")] = 16,
    p95: Annotated[str, option("p95", "p95 limit, or 'auto'.")] = "100ms",
    hold: Annotated[str, option("hold", "How long the thresholds must keep passing.")] = "3s",
    window: Annotated[
        str, option("window", "Window the thresholds judge, e.g. 5s, or 'auto'.")
    ] = "5s",
    timeout: Annotated[str, option("timeout", "Deadline for warming.")] = "2m",
    sql: Annotated[
        bool, typer.Option(envvar=env_name("sql"), help="Also prime the demo's SQLite database.")
    ] = True,
    report: Annotated[
        Path | None, option("report", "Also write the report to this .html or .svg file.")
    ] = None,
    log_format: Annotated[LogFormat, option("log_format", "auto, json or human.")] = "auto",
) -> None:
    """Watch a simulated cold app server warm up and the gate open (nothing to install)."""
    from warmgate.demo.tour import demo_command

    warm, summary = demo_command(
        app_capacity, app_warm_requests, app_cold_latency, app_compile_delay,
        concurrency=concurrency, p95=p95, hold=hold, window=window, timeout=timeout, sql=sql,
        report=report, log_format=log_format,
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
app.command("doctor")(reports_errors(doctor_command(app)))


def main() -> None:
    """The console script."""
    signals.install_for(sys.argv[1:2])  # a SIGTERM while importing still ends in a status
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(EXIT_OK)
