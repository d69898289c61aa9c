"""Files: written atomically, read with bounds. Standard library only, like all of ``kernel/``.

Theory of operation:

- :func:`atomic_write` replaces a file so that a reader sees the old or the new one, never a
  mix: a temporary file in the same directory, fsynced, then renamed over the old one (as
  prometheus_client's ``write_to_textfile`` does). The status directory, reports and URL sets
  are written this way.
- :func:`read_text` and :func:`read_stdin` read text that may be hostile or simply wrong (a
  device, a named pipe with no writer, a 2 GB file): a path must name a regular file, opened
  without blocking, read with a cap whatever ``stat`` claimed, and decoded as UTF-8. Each
  refusal is a :class:`ConfigError` naming the flag or field and saying what to change.
- :func:`read_json` reads a JSON file warmgate wrote (``status.json``, ``report.json``) with a
  cap on its bytes and on its nesting; a refusal is a :class:`StatusDirError`.

File I/O blocks: callers on an event loop run these functions in a thread.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from warmgate.kernel.errors import ConfigError, StatusDirError

MAX_JSON_DEPTH = 32
"""The deepest nesting read from the status directory (warmgate writes 5 levels at most)."""
TOO_LARGE = "the most warmgate reads; keep a sample of it"
"""What :func:`read_text` says of a file over its cap, unless the caller knows better."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    A path that is not a regular file (``/dev/null``, ``/dev/stdout``, a named pipe) is written
    through, never replaced: replacing it would put a file where a device was.
    """
    try:
        special = not stat.S_ISREG(path.stat().st_mode) and not path.is_dir()
    except FileNotFoundError:
        special = False
    if special:
        with path.open("wb") as handle:
            handle.write(data)
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_text(path: Path, flag: str, limit: int, advice: str = TOO_LARGE) -> str:
    """The text of the regular file at ``path``, at most ``limit`` bytes; ``flag`` names it,
    ``advice`` says how to fix a larger one."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{flag}: {path} does not exist; check the path.") from None
    except OSError as exc:
        raise ConfigError(f"{flag}: {path} cannot be read ({exc.strerror}).") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(
            f"{flag}: {path} is {_kind(mode)}, not a regular file; give the path of a file."
        )
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"{flag}: {path} cannot be read ({exc.strerror}).") from None
    if len(data) > limit:
        raise ConfigError(f"{flag}: {path} is larger than {shown_size(limit)}, {advice}.")
    return _decoded(data, f"{flag}: {path}")


def read_stdin(what: str, limit: int, advice: str) -> str:
    """Standard input as text, at most ``limit`` bytes; ``what`` names it, ``advice`` says how
    to fix a larger one."""
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {shown_size(limit)}, {advice}.")
    return _decoded(data, what)


def _decoded(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8."
        ) from None


def shown_size(limit: int) -> str:
    """A read cap in words: ``limit`` bytes in MiB when whole, else KiB."""
    mib = 1024 * 1024
    return f"{limit // mib} MiB" if limit % mib == 0 else f"{limit // 1024} KiB"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def read_json(path: Path, limit: int) -> Any:
    """The JSON value in ``path``, read with bounds: at most ``limit`` bytes and
    :data:`MAX_JSON_DEPTH` levels of nesting.

    Raises :class:`FileNotFoundError` when there is no file, and :class:`StatusDirError` with a
    sentence when it cannot be read, is too large, is not JSON or is nested too deep.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StatusDirError(f"{path} cannot be read ({exc.strerror}).") from None
    if len(data) > limit:
        raise StatusDirError(
            f"{path} is larger than {limit // 1024} KiB; was it written by warmgate?"
        )
    deep = f"{path} is nested deeper than {MAX_JSON_DEPTH} levels; was it written by warmgate?"
    try:
        value = json.loads(data)
    except RecursionError:  # deeper than the parser goes
        raise StatusDirError(deep) from None
    except ValueError:
        raise StatusDirError(f"{path} is not valid JSON; was it written by warmgate?") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise StatusDirError(deep)
    return value


def json_depth(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (0 for a scalar), without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest
