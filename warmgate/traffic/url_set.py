"""URL sets: a target's URLs read from a file, one picked by weight for every request.

The format (``warmgate paths`` writes it): one URL template a line, optionally followed by
whitespace and a positive weight (default 1); ``#`` starts a comment line; blank lines are
skipped::

    # mined from access.log
    http://app:8080/catalog 120
    http://app:8080/order/{{ randint(1, 99999) }} 40
    http://app:8080/help

A URL template may itself hold spaces (``{{ randint(1, 9) }}``), so the weight is the last
word of a line only when it reads as a number.

Theory of operation: loading is one streaming pass over the lines, so 100,000 lines load in a
fraction of a second and the file is never held whole (see ``docs/benchmarks.md``). Plain URLs
are joined into one string with an array of where each starts and ends; only lines with
template markup are compiled (once per distinct template, sharing the one sandbox and bounds of
``templating.py``). The weights become one cumulative ``array`` of doubles, and a pick is a
binary search over it. Every line must name the same scheme, host and port as the first: the
wait and re-arm probes of a target check one address. A bad line is a :class:`ConfigError`
naming the file and the line number.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import re
import stat
from array import array
from collections.abc import Iterator
from pathlib import Path

from warmgate.kernel.errors import ConfigError, TemplateError
from warmgate.kernel.redaction import Secrets, mask_url
from warmgate.traffic.templating import Template, Templates, Variables

MAX_URLS_FILE_BYTES = 64 * 1024 * 1024
"""The largest URL-set file read (its URLs are kept in memory)."""
_ORIGIN = re.compile(r"(?i)(https?://[^/?#\s]*)")
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?")
_CHUNK = 4096
"""Plain URLs joined into one string at a time while loading."""
_SPLIT = re.compile(r"(.*\S)\s+(\S+)")
_NUMBERISH = re.compile(r"[-+]?[0-9.][0-9.eE+-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


class UrlSet:
    """URL templates with weights; :meth:`render` picks one by weight and renders it.

    Plain URLs are kept as one string (``text``) with the start and end of each, so a set of
    100,000 costs about its file's size plus 24 bytes a line, not an object per line.
    """

    __slots__ = ("_cumulative", "_ends", "_starts", "_templates", "_text", "_total", "first")

    def __init__(
        self,
        text: str,
        starts: array[int],
        ends: array[int],
        cumulative: array[float],
        templates: list[Template],
    ) -> None:
        if not starts or not len(starts) == len(ends) == len(cumulative):
            raise ValueError("give one start, end and cumulative weight per URL, at least one")
        self._text = text
        self._starts = starts
        self._ends = ends
        self._cumulative = cumulative
        self._total = cumulative[-1]
        self._templates = templates
        self.first = self._entry(0).render() if starts[0] < 0 else text[starts[0] : ends[0]]
        """The first line's URL, rendered: its host and port are the target's."""

    def __len__(self) -> int:
        return len(self._starts)

    sensitive = False
    """Lines are read from a file, not expanded from the environment: each line's own template
    knows whether it uses a secret, and says nothing rendered when it does."""

    @property
    def shown(self) -> str:
        """The first line's URL, as errors about the set show it."""
        return self.first

    def _entry(self, index: int) -> Template:
        return self._templates[-self._starts[index] - 1]

    def render(self, variables: Variables | None = None) -> str:
        """A URL picked by weight, rendered."""
        index = bisect.bisect_right(self._cumulative, random.random() * self._total)
        index = min(index, len(self._starts) - 1)
        start = self._starts[index]
        if start < 0:
            return self._entry(index).render()
        return self._text[start : self._ends[index]]


def parse_line(line: str) -> tuple[str, float] | None:
    """``(url, weight)`` of one line, ``None`` for a blank or comment line.

    Raises ``ValueError`` with a phrase saying what is wrong with the weight.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    split = _SPLIT.fullmatch(text)
    if split is None:
        return text, 1.0
    url, last = split.groups()
    if _NUMBER.fullmatch(last):
        weight = float(last)
        if weight > 0 and math.isfinite(weight):
            return url, weight
    elif not _NUMBERISH.fullmatch(last):
        return text, 1.0  # a template with spaces, such as {{ randint(1, 9) }}
    raise ValueError(f"weight {last} must be a number above 0, such as 1 or 2.5")


def load_url_set(path: Path, templates: Templates, where: str) -> UrlSet:
    """Read and compile the URL set at ``path``; ``where`` names the config field.

    The file is read line by line, never whole. Raises :class:`ConfigError` naming the line
    for a bad one.
    """
    plain: list[str] = []  # joined into chunks as they fill, so no line stays an object
    chunks: list[str] = []
    starts, ends, cumulative = array("q"), array("q"), array("d")
    compiled: dict[str, int] = {}
    entries: list[Template] = []
    offset, total, origin = 0, 0.0, ""
    for number, line in _lines(path, where):
        try:
            parsed = parse_line(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: {path} line {number}: {exc}.") from None
        if parsed is None:
            continue
        url, weight = parsed
        at = f"{where}: {path} line {number}"
        host = _host(url, at, templates.secrets)
        if not origin:
            origin = _first_origin(url, host, at)
        elif host.lower() != origin:
            raise ConfigError(
                f"{at}: '{mask_url(host)}' is not the host of line 1 "
                f"('{mask_url(origin)}'); every URL of a set goes to one host (the probes "
                "check one), so make one target per host."
            )
        if "{{" in url or "{%" in url:
            slot = compiled.get(url)
            if slot is None:
                try:
                    entries.append(templates.compile(url, at))
                except TemplateError as exc:
                    raise ConfigError(str(exc)) from None
                slot = compiled[url] = len(entries)
            starts.append(-slot)
            ends.append(0)
        else:
            plain.append(url)
            if len(plain) == _CHUNK:
                chunks.append("\n".join(plain) + "\n")
                plain.clear()
            starts.append(offset)
            ends.append(offset + len(url))
            offset += len(url) + 1
        total += weight
        cumulative.append(total)
    if not starts:
        raise ConfigError(
            f"{where}: {path} holds no URL; write one `URL [WEIGHT]` a line, such as "
            "http://app:8080/catalog 10."
        )
    text = "".join([*chunks, "\n".join(plain)])
    return UrlSet(text, starts, ends, cumulative, entries)


def _lines(path: Path, where: str) -> Iterator[tuple[int, str]]:
    """``(number, line)`` of a regular UTF-8 file of at most :data:`MAX_URLS_FILE_BYTES`."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path} does not exist; check the path.") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {path} cannot be read ({exc.strerror}).") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_URLS_FILE_BYTES:
        os.close(fd)
        raise ConfigError(
            f"{where}: {path} is not a regular file of at most "
            f"{MAX_URLS_FILE_BYTES // 2**20} MiB; give the path of a URL-set file."
        )
    number = 0
    with os.fdopen(fd, encoding="utf-8", errors="strict", newline=None) as file:
        try:
            for number, line in enumerate(file, start=1):
                yield number, line
        except UnicodeDecodeError:
            raise ConfigError(
                f"{where}: {path} is not UTF-8 text (after line {number}); save it as UTF-8."
            ) from None
        except OSError as exc:
            raise ConfigError(f"{where}: {path} cannot be read ({exc.strerror}).") from None


def _host(url: str, at: str, secrets: Secrets) -> str:
    """The ``scheme://host:port`` of a line's URL, or a ConfigError saying what is wrong."""
    found = _ORIGIN.match(url)
    if found is None:
        fix = (
            "write a full URL such as http://app:8080/path (warmgate paths --base-url writes them)"
            if url.startswith("/")
            else "write a URL starting with http:// or https://"
        )
        raise ConfigError(f"{at}: '{secrets.shorten(mask_url(url), 200)}' is not a URL; {fix}.")
    if _CONTROL.search(url):
        raise ConfigError(f"{at}: the URL contains a control character; remove it.")
    return found.group(1)


def _first_origin(url: str, origin: str, at: str) -> str:
    """The first URL's ``scheme://host:port``, lowercased; checked as the url field is."""
    from warmgate.config.fields import checked_http_url

    if "{{" in origin or "{%" in origin:
        raise ConfigError(
            f"{at}: the host is a template; write the host and port as they are, and templates "
            "in the path only."
        )
    try:
        checked_http_url(url)
    except ValueError as exc:
        raise ConfigError(f"{at}: {exc}.") from None
    return origin.lower()
