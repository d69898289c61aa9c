"""Access-log lines in, counted requests out: the parsing half of ``warmgate paths``.

Theory of operation: a log is fed as chunks of whole lines (bytes); each chunk becomes a count of
``(method, target, status)`` triples plus the number of lines that were not requests at all.
Counting happens per chunk, so the per-line work stays in C:

- **NCSA** (common and combined, as nginx, Apache httpd and Tomcat's ``AccessLogValve`` write
  them): one precompiled bytes pattern finds ``] "METHOD TARGET ..." STATUS `` in every line of
  the chunk at once (``findall``), and ``collections.Counter`` counts the triples. Only the
  distinct triples of a chunk are seen by Python code. The pattern keeps the target up to its
  query string: the query never leaves this module.
- **JSON lines** (nginx ``log_format ... escape=json``, app frameworks, log shippers): one
  ``json.loads`` per line, fields looked up by name (:class:`JsonFields`); a ``request`` field
  holding a whole request line (``GET /x HTTP/1.1``) works too. Slower than NCSA, per line.

A line that is not a request in the chosen format (a blank one too) is *bad*: counted, never
fatal, and never echoed (a log line can hold a token). Which requests are kept, and how targets
become URL templates, is :mod:`warmgate.paths.pathstats`'s business. Pure functions of bytes; no
I/O.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from warmgate.kernel.errors import ConfigError

Request = tuple[bytes, bytes, bytes]
"""``(method, target, status)`` as the log wrote them; the target has no query string."""

NCSA = re.compile(rb'\] "([A-Z]{1,20}) ([^ "?\n]++)[^"\n]*+" ([0-9]{3})(?=\s|\Z)')
"""The request and status of an NCSA line: after the ``[time]`` field, the quoted request line
(method, target, protocol) and the status. The target stops at ``?``: queries are dropped here."""


class LogFormat(Enum):
    """The formats ``warmgate paths`` reads."""

    AUTO = "auto"
    NCSA = "ncsa"
    JSON = "json"


def detect(first_line: bytes) -> LogFormat:
    """The format of a log, from its first non-blank line: JSON lines start with ``{``."""
    return LogFormat.JSON if first_line.lstrip().startswith(b"{") else LogFormat.NCSA


@dataclass(frozen=True)
class Parsed:
    """What one chunk of lines held."""

    requests: Counter[Request]
    lines: int
    bad: int


def parse_ncsa(chunk: bytes) -> Parsed:
    """Count the requests in ``chunk``, whole NCSA lines separated by ``\\n``."""
    lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") or not chunk else 1)
    found = NCSA.findall(chunk)
    # A hostile line can hold the pattern twice; it still counts as one line, not as -1 bad.
    return Parsed(Counter(found), lines, max(0, lines - len(found)))


@dataclass(frozen=True)
class JsonFields:
    """The names of the JSON fields that hold each part of a request, tried in order.

    A dotted name (``http.request.method``) is looked up as one key first, then as a path
    through nested objects. ``request`` is a whole request line, used when no path field is
    present.
    """

    path: tuple[str, ...] = ("request_uri", "uri", "path", "url.path", "url")
    method: tuple[str, ...] = ("method", "request_method", "http.request.method")
    status: tuple[str, ...] = ("status", "status_code", "http.response.status_code")
    request: tuple[str, ...] = ("request",)

    def with_overrides(self, specs: list[str]) -> JsonFields:
        """These fields, those named by ``KEY=FIELD`` specs (``--json-field path=uri``) replaced."""
        given: dict[str, list[str]] = {}
        for spec in specs:
            key, sep, name = spec.partition("=")
            key = key.strip()
            if not sep or not name.strip() or key not in {"path", "method", "status", "request"}:
                raise ConfigError(
                    f"--json-field {spec!r}: write KEY=FIELD with KEY one of path, method, "
                    "status or request, e.g. --json-field path=request_uri."
                )
            given.setdefault(key, []).append(name.strip())
        return replace(self, **{key: tuple(names) for key, names in given.items()})


def _lookup(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
        node: Any = obj
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            if "." in name:
                return node
    return None


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str) and value:
        return value.encode("utf-8", "surrogateescape")
    return None


def request_of(obj: Any, fields: JsonFields) -> Request | None:
    """The request one decoded JSON line describes, or ``None`` if it is not one."""
    if not isinstance(obj, dict):
        return None
    status = _as_bytes(_lookup(obj, fields.status))
    target = _as_bytes(_lookup(obj, fields.path))
    method = _as_bytes(_lookup(obj, fields.method))
    if target is None or method is None:
        line = _as_bytes(_lookup(obj, fields.request))
        parts = line.split(b" ") if line else []
        if len(parts) < 2:  # METHOD TARGET [PROTOCOL]
            return None
        method, target = method or parts[0], target or parts[1]
    if status is None or len(status) != 3 or not status.isdigit():
        return None
    target = target.partition(b"?")[0]
    if b"\n" in target:  # JSON can hold one; the paths are joined by newlines downstream
        return None
    return method.upper(), target, status


def parse_json(chunk: bytes, fields: JsonFields) -> Parsed:
    """Count the requests in ``chunk``, whole JSON lines separated by ``\\n``."""
    found: Counter[Request] = Counter()
    lines = bad = 0
    pieces = chunk.split(b"\n")
    if chunk.endswith(b"\n") or not chunk:
        pieces.pop()
    for line in pieces:
        lines += 1
        try:
            request = request_of(json.loads(line), fields)
        except (ValueError, RecursionError):
            request = None
        if request is None:
            bad += 1
        else:
            found[request] += 1
    return Parsed(found, lines, bad)


MAX_LINE_BYTES = 64 * 1024
"""A line still without its end after this many bytes is bad whatever it holds (a web server
logs no request that long), and the rest of it is skipped without being held in memory."""


def whole_lines(blocks: Iterable[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Re-cut ``blocks`` (reads of any size) into chunks of whole lines, in bounded memory.

    Each chunk ends with ``\\n`` except, perhaps, the last. A line longer than ``max_line`` is
    replaced by an empty line, so it is still counted, as a bad line.
    """
    carry = b""
    skipping = False
    for block in blocks:
        start = 0
        if skipping:
            start = block.find(b"\n") + 1
            if not start:
                continue
            skipping = False
        data = carry + block[start:]
        end = data.rfind(b"\n") + 1
        carry = data[end:]
        if len(carry) > max_line:
            carry, skipping = b"", True
            yield data[:end] + b"\n"
        elif end:
            yield data[:end]
    if skipping:
        return
    if carry:
        yield carry


class TruncatedError(ValueError):
    """A gzip stream ends before its end, or holds bytes that are not gzip."""


GZIP_MAGIC = b"\x1f\x8b"


def gunzip(blocks: Iterable[bytes], out_bytes: int) -> Iterator[bytes]:
    """Decompress a gzip stream (several members too) read as ``blocks``, as it arrives.

    Every piece yielded is at most ``out_bytes`` long, so a small block that inflates a
    thousandfold costs no more memory than any other. Whatever decompressed before a
    truncation or corruption has been yielded when :class:`TruncatedError` is raised.
    """
    member, fed = zlib.decompressobj(wbits=31), False
    for block in blocks:
        data = block
        while data:
            if not fed and not data.strip(b"\0"):
                break  # zero padding after the last member, as tape-era tools write
            fed = True
            try:
                piece = member.decompress(data, out_bytes)
            except zlib.error as exc:
                raise TruncatedError(f"the gzip data is corrupt ({exc})") from None
            if piece:
                yield piece
            data = member.unconsumed_tail
            if member.eof:  # the next member, if any
                data = member.unused_data
                member, fed = zlib.decompressobj(wbits=31), False
    if fed and not member.eof:
        if piece := member.flush():
            yield piece
        if not member.eof:
            raise TruncatedError("the gzip stream ends early")
