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

Theory of operation: loading is one pass over the lines, so 100,000 lines load in a fraction of
a second (see ``docs/benchmarks.md``). Plain URLs stay the strings they are; only lines with
template markup are compiled (once per distinct template, sharing the one sandbox and bounds of
``templating.py``). The weights become one cumulative ``array`` of doubles, and a pick is a
binary search over it. Every line must name the same scheme, host and port as the first: the
wait and re-arm probes of a target check one address. A bad line is a :class:`ConfigError`
naming the file and the line number.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from array import array
from pathlib import Path

from warmgate.errors import ConfigError, TemplateError
from warmgate.secrets import redact_url
from warmgate.templating import Template, Templates, Variables

MAX_URLS_FILE_BYTES = 64 * 1024 * 1024
"""The largest URL-set file read (its URLs are kept in memory)."""
_ORIGIN = re.compile(r"(?i)(https?://[^/?#\s]*)")
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?")
_SPLIT = re.compile(r"(.*\S)\s+(\S+)")
_NUMBERISH = re.compile(r"[-+]?[0-9.][0-9.eE+-]*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


class UrlSet:
    """URL templates with weights; :meth:`render` picks one by weight and renders it."""

    __slots__ = ("_cumulative", "_entries", "_total", "first")

    def __init__(self, entries: list[str | Template], weights: list[float]) -> None:
        if not entries or len(entries) != len(weights):
            raise ValueError("give one weight per URL, and at least one URL")
        self._entries = entries
        cumulative = array("d")
        total = 0.0
        for weight in weights:
            total += weight
            cumulative.append(total)
        self._cumulative = cumulative
        self._total = total
        first = entries[0]
        self.first = first if isinstance(first, str) else first.render()
        """The first line's URL, rendered: its host and port are the target's."""

    def __len__(self) -> int:
        return len(self._entries)

    def render(self, variables: Variables | None = None) -> str:
        """A URL picked by weight, rendered."""
        index = bisect.bisect_right(self._cumulative, random.random() * self._total)
        entry = self._entries[min(index, len(self._entries) - 1)]
        return entry if isinstance(entry, str) else entry.render()


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

    Raises :class:`ConfigError` naming the line for a bad one.
    """
    from warmgate.config_file import read_text

    text = read_text(path, where, MAX_URLS_FILE_BYTES)
    entries: list[str | Template] = []
    weights: list[float] = []
    compiled: dict[str, Template] = {}
    origin = ""
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            parsed = parse_line(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: {path} line {number}: {exc}.") from None
        if parsed is None:
            continue
        url, weight = parsed
        at = f"{where}: {path} line {number}"
        found = _ORIGIN.match(url)
        if found is None:
            fix = (
                "write a full URL such as http://app:8080/path (warmgate paths --base-url "
                "writes them)"
                if url.startswith("/")
                else "write a URL starting with http:// or https://"
            )
            raise ConfigError(f"{at}: '{redact_url(url)[:200]}' is not a URL; {fix}.")
        if _CONTROL.search(url):
            raise ConfigError(f"{at}: the URL contains a control character; remove it.")
        if not origin:
            origin = _first_origin(url, at)
        elif found.group(1).lower() != origin:
            raise ConfigError(
                f"{at}: '{redact_url(found.group(1))}' is not the host of line 1 "
                f"('{redact_url(origin)}'); every URL of a set goes to one host (the probes "
                "check one), so make one target per host."
            )
        if "{{" in url or "{%" in url:
            template = compiled.get(url)
            if template is None:
                try:
                    template = templates.compile(url, at)
                except TemplateError as exc:
                    raise ConfigError(str(exc)) from None
                compiled[url] = template
            entries.append(template)
        else:
            entries.append(url)
        weights.append(weight)
    if not entries:
        raise ConfigError(
            f"{where}: {path} holds no URL; write one `URL [WEIGHT]` a line, such as "
            "http://app:8080/catalog 10."
        )
    return UrlSet(entries, weights)


def _first_origin(url: str, at: str) -> str:
    """The scheme, host and port of the first URL, lowercased; checked as the url field is."""
    from warmgate.config import _http_url

    found = _ORIGIN.match(url)
    origin = found.group(1) if found else url
    if "{{" in origin or "{%" in origin:
        raise ConfigError(
            f"{at}: the host is a template; write the host and port as they are, and templates "
            "in the path only."
        )
    try:
        _http_url(url)
    except ValueError as exc:
        raise ConfigError(f"{at}: {exc}.") from None
    return origin.lower()
