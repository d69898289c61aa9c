"""The command-line options of ``warmgate paths``; :mod:`warmgate.cli.main` registers the command.

Each option also reads ``WARMGATE_PATHS_<NAME>`` (:mod:`warmgate.cli.options`): ``WARMGATE_PORT``
set for ``run`` must not change what ``paths`` writes. The work is done by
:mod:`warmgate.paths.mining` (imported only when the command runs, so the sidecar never pays for
it); this module prints what it found.
"""

import functools
from pathlib import Path
from typing import Annotated, Literal

import typer

from warmgate.cli.options import option

_option = functools.partial(option, prefix="WARMGATE_PATHS_")


def paths(
    logs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="LOG...", help="Access logs, plain or gzip'd; - or none: standard input."
        ),
    ] = None,
    *,
    output: Annotated[
        Path | None,
        _option("output", "Write the URL set here (default or -: standard output).", "-o"),
    ] = None,
    top: Annotated[
        int | None, _option("top", "Write only the N most frequent templates.", min=1)
    ] = None,
    min_count: Annotated[
        int, _option("min_count", "Leave out templates seen fewer times.", min=1)
    ] = 1,
    exclude: Annotated[
        list[str] | None,
        _option("exclude", "Leave out paths matching this regular expression (repeatable)."),
    ] = None,
    base_url: Annotated[
        str | None, _option("base_url", "Prefix every path, e.g. http://127.0.0.1:8080.")
    ] = None,
    log_format: Annotated[
        Literal["auto", "ncsa", "json"],
        _option("format", "auto, ncsa or json."),
    ] = "auto",
    json_field: Annotated[
        list[str] | None,
        _option("json_field", "JSON lines: KEY=FIELD, KEY one of path, method, status, request."),
    ] = None,
    ids: Annotated[
        Literal["sample", "range", "keep"],
        _option("ids", "Id segments: sample (real ids seen), range (randint) or keep (as seen)."),
    ] = "sample",
    sample_size: Annotated[
        int, _option("sample_size", "Real ids kept per template with --ids sample.", min=1)
    ] = 20,
    status: Annotated[
        list[str] | None, _option("status", "Statuses that count, e.g. 2xx,304 (the default).")
    ] = None,
    max_templates: Annotated[
        int, _option("max_templates", "Distinct templates held in memory at most.", min=2)
    ] = 50_000,
) -> None:
    """Write the URL set users hit, mined from access logs (NCSA or JSON lines)."""
    from warmgate.paths.mining import MineOptions, mine, write_url_set

    mined = mine(
        logs or ["-"],
        output,
        MineOptions(
            top=top, min_count=min_count, exclude=exclude or [], base_url=base_url,
            log_format=log_format, json_field=json_field or [], ids=ids,
            sample_size=sample_size, status=status or ["2xx", "304"],
            max_templates=max_templates,
        ),
        notice=lambda line: typer.echo(line, err=True),
    )  # fmt: skip
    typer.echo(mined.summary, err=True)
    text = mined.url_set()  # a ConfigError (exit 2) when no request was kept
    if mined.output is None:
        typer.echo(text, nl=False)
    else:
        write_url_set(mined.output, text)
