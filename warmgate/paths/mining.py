"""``warmgate paths``: mine access logs for the paths users hit and make a weighted URL set.

:func:`mine` reads each log once, as a stream (plain or gzip'd, by its first bytes; ``-`` or no
log is standard input), cut into chunks of whole lines
(:func:`warmgate.paths.accesslog.whole_lines`) that the pure modules count:
:mod:`warmgate.paths.accesslog` parses, :mod:`warmgate.paths.pathstats` decides what is kept and
how ids are written. What it found (:class:`Mined`) is the URL set and a summary of what every
line became; :mod:`warmgate.cli.paths` prints the summary on standard error and the URL set on
standard output, or has :func:`write_url_set` write it to ``-o FILE`` (atomically).

Errors are :class:`~warmgate.kernel.errors.ConfigError` sentences; :mod:`warmgate.cli.main` turns
them into exit 2. Nothing here prints: a line for people while reading (standard input is a
terminal) goes to the ``notice`` the caller gives.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from warmgate.kernel.errors import ConfigError
from warmgate.kernel.files import atomic_write
from warmgate.paths.accesslog import (
    GZIP_MAGIC,
    JsonFields,
    LogFormat,
    TruncatedError,
    detect,
    gunzip,
    parse_json,
    parse_ncsa,
    whole_lines,
)
from warmgate.paths.pathstats import IdMode, PathCounter, Policy, Tally, UrlLine, statuses_from

READ_BYTES = 4 * 1024 * 1024
"""Bytes read at a time: large enough that the per-chunk work is paid rarely, small enough
that memory stays flat."""


@dataclass(frozen=True)
class MineOptions:
    """The options of ``warmgate paths`` besides its inputs and output."""

    top: int | None = None
    min_count: int = 1
    exclude: list[str] = field(default_factory=list)
    base_url: str | None = None
    log_format: str = "auto"
    json_field: list[str] = field(default_factory=list)
    ids: str = "sample"
    sample_size: int = 20
    status: list[str] = field(default_factory=lambda: ["2xx", "304"])
    max_templates: int = 50_000


@dataclass
class Reading:
    """What was read: bytes, time, and what went wrong with whole inputs."""

    bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Mined:
    """What mining found, and where its URL set goes."""

    summary: str
    """What every line read became, for standard error."""
    text: str | None
    """The URL-set file; ``None`` when no request was kept."""
    output: Path | None
    """The file to write the URL set to; ``None`` for standard output."""

    def url_set(self) -> str:
        """The URL-set file, or a ConfigError when no request was kept to write."""
        if self.text is None:
            raise ConfigError(
                "found no successful GET request to write: is the input an access log (NCSA "
                "common/combined or JSON lines)? For JSON lines, name the fields with --json-field."
            )
        return self.text


def mine(
    sources: list[str], output: Path | None, options: MineOptions, notice: Callable[[str], None]
) -> Mined:
    """Mine ``sources`` (``-`` is standard input) for the URL set to go to ``output`` (``None``
    or ``-``: standard output). ``notice`` receives a line for people while reading."""
    policy = Policy(
        ids=IdMode(options.ids),
        statuses=statuses_from(options.status),
        exclude=tuple(_regex(pattern) for pattern in options.exclude),
        max_templates=options.max_templates,
        sample_size=options.sample_size,
    )
    prefix = _base(options.base_url)
    if output is not None and str(output) == "-":
        output = None
    fields = JsonFields().with_overrides(options.json_field)
    for source in sources:  # a missing log fails before a long read of the others, not after
        if source != "-" and not Path(source).is_file() and not Path(source).is_fifo():
            what = "is not a file" if Path(source).exists() else "does not exist"
            raise ConfigError(f"cannot read the log {source}: it {what}.")
    counter = PathCounter(policy)
    reading = Reading()
    for source in sources:
        _mine(source, LogFormat(options.log_format), fields, counter, reading, notice=notice)
    lines = counter.ranked(top=options.top, min_count=options.min_count)
    report = summary(counter.tally, reading, len(lines), counter.templates, output)
    if not prefix and lines:
        report += "\n  the lines are paths: give --base-url for full URLs (a urls_file needs them)"
    kept = counter.tally.kept > 0
    text = url_set(lines, prefix, counter.tally, sources, policy) if kept else None
    return Mined(report, text, output)


def write_url_set(output: Path, text: str) -> None:
    """Write the URL set to ``output`` atomically, or a ConfigError naming ``--output``."""
    try:
        atomic_write(output, text.encode())
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write it ({exc.strerror}).") from None


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--exclude {pattern!r}: not a regular expression ({exc}).") from None


def _base(base_url: str | None) -> str:
    if base_url is None:
        return ""
    if not re.match(r"https?://[^/\s]+", base_url):
        raise ConfigError(
            f"--base-url {base_url!r}: write the scheme and host, e.g. http://127.0.0.1:8080."
        )
    return base_url.rstrip("/")


@contextmanager
def _opened(source: str, notice: Callable[[str], None]) -> Iterator[IO[bytes]]:
    if source == "-":
        if sys.stdin.isatty():
            notice("warmgate paths: reading an access log from the terminal (Ctrl-D ends)")
        yield sys.stdin.buffer
        return
    try:
        handle = Path(source).open("rb")  # noqa: SIM115 - closed below, after the caller's reads
    except OSError as exc:
        raise ConfigError(f"cannot read the log {source}: {exc.strerror}.") from None
    with handle:
        yield handle


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    while block := stream.read(READ_BYTES):
        yield block


def _counted(blocks: Iterator[bytes], reading: Reading) -> Iterator[bytes]:
    for block in blocks:
        reading.bytes += len(block)
        yield block


def _mine(
    source: str,
    log_format: LogFormat,
    fields: JsonFields,
    counter: PathCounter,
    reading: Reading,
    *,
    notice: Callable[[str], None],
) -> None:
    name = "standard input" if source == "-" else source
    started, before = time.perf_counter(), reading.bytes
    with _opened(source, notice) as raw:
        blocks = _blocks(raw)
        if raw.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined] # buffered readers
            blocks = gunzip(blocks, READ_BYTES)
        chosen = log_format
        try:
            for chunk in whole_lines(_counted(blocks, reading)):
                if chosen is LogFormat.AUTO and chunk.strip():
                    chosen = detect(chunk[:4096])
                if chosen is LogFormat.JSON:
                    counter.add(parse_json(chunk, fields))
                else:
                    counter.add(parse_ncsa(chunk))
        except (TruncatedError, OSError) as exc:
            # A truncated or corrupt gzip stream: keep what was read, say where it stopped.
            read = reading.bytes - before
            reading.notes.append(f"{name}: stopped reading after {read:,} bytes of log ({exc})")
    reading.seconds += time.perf_counter() - started


def summary(
    tally: Tally, reading: Reading, written: int, templates: int, output: Path | None
) -> str:
    """What every line read became, for standard error."""
    rate = reading.bytes / reading.seconds / 1e6 if reading.seconds > 0 else 0.0
    left_out = [
        (tally.bad, "bad lines (not a request in the log's format)"),
        (tally.other_method, "not GET"),
        (tally.other_status, "with another status"),
        (tally.unusable, "with a path that is not plain printable ASCII"),
        (tally.token_like, "with a token-like path segment"),
        (tally.personal, "with an e-mail address in the path"),
        (tally.excluded, "excluded by --exclude"),
    ]
    parts = [
        f"warmgate paths: read {tally.lines:,} lines ({reading.bytes / 1e6:,.1f} MB) in "
        f"{reading.seconds:.1f}s ({rate:,.0f} MB/s); kept {tally.kept:,} requests",
        *(f"  left out {n:,} {what}" for n, what in left_out if n),
    ]
    if tally.evicted_templates:
        parts.append(
            f"  the template table was full: {tally.evicted_templates:,} rare templates "
            f"({tally.evicted_requests:,} requests) were dropped; counts of rare templates "
            "are lower bounds (raise --max-templates, or leave paths out with --exclude)"
        )
    parts.extend(f"  {note}" for note in reading.notes)
    where = "standard output" if output is None else str(output)
    parts.append(f"  wrote {written:,} of {templates:,} templates to {where}")
    return "\n".join(parts)


def url_set(
    lines: list[UrlLine], prefix: str, tally: Tally, sources: list[str], policy: Policy
) -> str:
    """The URL-set file: ``URL WEIGHT`` lines, most frequent first, under a comment header."""
    names = ", ".join("standard input" if s == "-" else Path(s).name for s in sources[:3])
    more = f" and {len(sources) - 3} more" if len(sources) > 3 else ""
    header = [
        f"# URL set written by warmgate paths from {names}{more}: {len(lines):,} templates, "
        f"{sum(line.weight for line in lines):,} of {tally.kept:,} requests kept.",
        "# One URL template a line, then its weight: the number of requests it stands for.",
        f"# Ids: {policy.ids.value}. Query strings and path parameters are never copied.",
    ]
    body = [f"{prefix}{line.url} {line.weight}" for line in lines]
    return "\n".join(header + body) + "\n"
