"""Report files: the .html page or .svg chart written for people, and the record read back.

``prime --report FILE`` and ``warmgate report --output FILE`` write a rendered report; the file
name's suffix says which (:func:`report_format`), and ``prime`` checks the path before any
traffic (:func:`check_report_path`), so a wrong one fails at once, not after the warm-up.
``warmgate report`` reads the record a warm-up left in its status directory
(:func:`load_record`). Mistakes are :class:`~warmgate.kernel.errors.ConfigError` sentences
naming the option; a record that cannot be read is a
:class:`~warmgate.kernel.errors.StatusDirError`. This module only reads and writes files: it
logs nothing (``runtime/primer.py`` says in the log what became of a report).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from warmgate.kernel.errors import ConfigError, StatusDirError
from warmgate.kernel.files import atomic_write, read_json
from warmgate.report.record import Record

MAX_REPORT_BYTES = 32 * 1024 * 1024
"""The largest ``report.json`` read (an hour's warm-up writes well under 1 MiB)."""


def report_format(path: Path, option: str = "--report") -> str:
    """``html`` or ``svg`` from the file name, or a ConfigError naming ``option``."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("html", "svg"):
        raise ConfigError(
            f"{option}: {path} must end in .html (a page with the chart) or .svg (the chart)."
        )
    return suffix


def check_report_path(path: Path, option: str = "--report") -> None:
    """Raise a ConfigError naming ``option`` unless a report can be written to ``path``."""
    report_format(path, option)
    directory = path.parent
    if path.is_dir():
        raise ConfigError(
            f"{option}: {path} is a directory; name a file in it, such as report.html."
        )
    if not directory.is_dir():
        raise ConfigError(
            f"{option}: {directory} does not exist; create it or write the report elsewhere."
        )
    try:
        tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-").close()
    except OSError as exc:
        raise ConfigError(
            f"{option}: {directory} is not writable ({exc.strerror or type(exc).__name__}); "
            "write the report to a writable directory."
        ) from None


def write_report(record: Record, path: Path, option: str = "--report") -> None:
    """Render ``record`` as the .html page or .svg chart ``path`` names, and write it atomically.

    Raises a ConfigError naming ``option`` when the file cannot be written.
    """
    from warmgate.report.render import render_html, render_svg

    text = render_html(record) if report_format(path, option) == "html" else render_svg(record)
    try:
        atomic_write(path, text.encode())
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot write {path} ({exc.strerror or type(exc).__name__}); "
            "write the report to a writable directory."
        ) from None


def load_record(path: Path) -> Record:
    """The warm-up record in ``path`` (a status directory's ``report.json``), or a
    StatusDirError saying why there is none."""
    try:
        data = read_json(path, MAX_REPORT_BYTES)
    except FileNotFoundError:
        raise StatusDirError(
            f"{path} does not exist: no warm-up has finished with this --status-dir yet."
        ) from None
    if not isinstance(data, dict):
        raise StatusDirError(f"{path} does not hold a warm-up record; was it written by warmgate?")
    try:
        return Record.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise StatusDirError(f"{path} cannot be read as a warm-up record ({exc}).") from None
