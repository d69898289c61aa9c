"""``warmgate doctor``: its options, the reading of a container's warmgate command line with the
CLI's own parser, and the report. :mod:`warmgate.cli.main` registers it.

The work is done by :mod:`warmgate.kube.doctor` (reading and loading) and
:mod:`warmgate.kube.rules` (the decision); docs/doctor.md lists the findings.
"""

import functools
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
import typer.main
from typer._click import ClickException  # typer's own click, which parses its commands

from warmgate.cli.options import env_name, option, urls_from_env
from warmgate.kernel.errors import EXIT_NOT_READY, ConfigError


class Output(StrEnum):
    """How doctor writes its findings."""

    TEXT = "text"
    JSON = "json"


def read_args(
    app: typer.Typer, command: str, args: Sequence[str], environ: Mapping[str, str]
) -> dict[str, Any]:
    """The parameters ``warmgate COMMAND ARGS`` gets in a container whose environment is
    ``environ``: parsed by the very options of ``app``'s ``run``, ``prime`` or ``serve``, each
    reading its ``WARMGATE_*`` variable from ``environ`` (the flags win), never from doctor's
    own."""
    cli_command = getattr(typer.main.get_command(app), "commands", {})[command]
    given: list[str] = []
    for param in cli_command.params:
        envvar = getattr(param, "envvar", None)
        is_flag = getattr(param, "is_flag", False)
        if param.param_type_name != "option" or not isinstance(envvar, str) or is_flag:
            continue
        if envvar in environ:
            given += [param.opts[0], environ[envvar]]
    try:
        # No --help: in a container's args it would print run's help and end doctor at once.
        context = cli_command.make_context(
            f"warmgate {command}", [*given, *args], resilient_parsing=False, help_option_names=[]
        )
    except ClickException as exc:
        raise ConfigError(f"warmgate {command}: {exc.format_message()}") from None
    params = dict(context.params)
    for name in params:
        source = context.get_parameter_source(name)
        if source is not None and source.name == "ENVIRONMENT":
            params[name] = None  # doctor's own environment is not the container's
    if "url" in params and not params["url"]:
        params["url"] = urls_from_env(environ.get(env_name("url"), ""))
    return params


def doctor_command(app: typer.Typer) -> Callable[..., None]:
    """The ``doctor`` command of ``app``, reading warmgate command lines with ``app``'s own."""

    def reader(command: str, args: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
        return read_args(app, command, args, environ)

    @functools.wraps(doctor)
    def command(**kwargs: Any) -> None:
        doctor(reader, **kwargs)

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        list(inspect.signature(doctor).parameters.values())[1:]
    )
    return command


def doctor(
    reader: Callable[[str, Sequence[str], Mapping[str, str]], dict[str, Any]],
    files: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE",
            help="Manifests to check: files, directories, or - for standard input (the output "
            "of kubectl kustomize or helm template).",
        ),
    ],
    output: Annotated[
        Output, option("output", "text (default) or json.", "-o", prefix="WARMGATE_DOCTOR_")
    ] = Output.TEXT,
    webhook_config_map: Annotated[
        str,
        option(
            "webhook_config_map",
            "The webhook's --config-map: the ConfigMap of pods opted in without one.",
            prefix="WARMGATE_DOCTOR_",
        ),
    ] = "warmgate",
) -> None:
    """Find what is wrong with a warmgate set-up before a rollout does; exit 1 with findings."""
    from warmgate.kube.doctor import doctor as examine
    from warmgate.kube.rules import counts, failing

    examination = examine(files, reader, webhook_config_map)
    findings = examination.findings
    tally = counts(findings)
    summary = {
        "objects": examination.objects,
        "workloads": examination.workloads,
        **{f"{severity.value}s": number for severity, number in tally.items()},
    }
    if output is Output.JSON:
        document = {
            "ok": not failing(findings),
            "summary": summary,
            "findings": [finding.as_dict() for finding in findings],
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        for finding in findings:
            where = f" (namespace {finding.namespace})" if finding.namespace else ""
            typer.echo(f"{finding.severity.value} {finding.id} {finding.object}{where}")
            typer.echo(f"  at {finding.path}")
            typer.echo(f"  {finding.message}")
            typer.echo(f"  fix: {finding.fix}")
            typer.echo("")
        typer.echo(_summary_line(examination.objects, examination.workloads, summary))
    if failing(findings):
        raise typer.Exit(EXIT_NOT_READY)


def _summary_line(objects: int, workloads: int, summary: Mapping[str, int]) -> str:
    def plural(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    seen = f"{plural(workloads, 'workload')} with warmgate in {plural(objects, 'object')}"
    found = [
        plural(summary[key + "s"], key)
        for key in ("error", "warning", "info")
        if summary[key + "s"]
    ]
    if not summary["errors"] and not summary["warnings"]:
        return f"doctor: {seen}: no problems found" + (f" ({', '.join(found)})" if found else "")
    return f"doctor: {seen}: {', '.join(found)}"
