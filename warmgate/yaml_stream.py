"""YAML streams for ``warmgate inject``: parse, locate each document, dump, read a source.

Injecting rewrites only the documents it changes; the others must come out as the very text
they were. :func:`document_spans` says where each document, and the node inside it, sits in the
text, so unchanged documents (comments and quoting included) can be copied through verbatim.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from warmgate.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """Safe loading, plus the plain scalar ``=`` that PyYAML cannot otherwise construct."""


def _construct_value(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:value", _construct_value)


class _Dumper(yaml.SafeDumper):
    """Block style, keys in their order, no anchors, multi-line strings as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(obj: Any) -> str:
    """``obj`` as block-style YAML with its keys in their original order."""
    text = yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
        width=1 << 16,
    )  # fmt: skip
    return str(text)


@dataclass(frozen=True)
class Span:
    """Offsets of one document: its whole text, and the node inside it."""

    start: int
    content_start: int
    content_end: int
    end: int


def document_spans(text: str) -> Iterator[Span]:
    """Where each document, and the node inside it, sits in ``text``."""
    start = 0
    content_start = content_end = -1
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            content_start = -1
        elif isinstance(event, yaml.DocumentEndEvent):
            yield Span(start, content_start, content_end, _index(event.end_mark))
            start = _index(event.end_mark)
        elif not isinstance(event, yaml.StreamStartEvent | yaml.StreamEndEvent):
            if content_start < 0:
                content_start = _index(event.start_mark)
            content_end = _index(event.end_mark)


def _index(mark: Any) -> int:
    """A parser mark's offset in the text (the pure-Python parser always sets marks)."""
    return int(mark.index)


def parse(text: str, source: str = "the input") -> list[Any]:
    """The documents in a YAML stream; a ConfigError naming the line if it is not YAML."""
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "unreadable"
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}.") from None


def read_source(source: str) -> str:
    """The text of a file path, or of standard input for ``-``."""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{source} does not exist; check the path, or pass - for stdin."
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{source} is a directory; pass one file, or pipe 'kustomize build {source}' into "
            "'warmgate inject -'."
        ) from None
    except UnicodeDecodeError:
        what = "standard input" if source == "-" else source
        raise ConfigError(f"{what} is not text (UTF-8), so it is not YAML.") from None
    except OSError as exc:
        raise ConfigError(f"{source} cannot be read ({exc.strerror}).") from None
