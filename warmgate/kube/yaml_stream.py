"""YAML streams for ``warmgate inject``: parse, locate each document, dump, read a source.

Injecting rewrites only the documents it changes; the others must come out as the very text
they were. :func:`document_spans` says where each document, and the node inside it, sits in the
text, so unchanged documents (comments and quoting included) can be copied through verbatim.

Whatever warmgate writes is read by Go (kubectl, the API server), which types plain scalars by
its own rules (:func:`go_scalar`), not PyYAML's YAML 1.1 ones. So documents are read with Go's
rules, and every string is written so that both Go and YAML 1.1 read it back as that string.

A stream is read with the config loader's bounds (:mod:`warmgate.config.bounded_yaml`, with the
figures of :data:`~warmgate.config.bounded_yaml.MANIFESTS`): its size, checked as it is read
(:func:`warmgate.kernel.files.read_text`); then its nesting, the values its aliases add, and the
length of its numbers, checked over the parser's events before anything is built. An alias
bomb, a document nested a thousand deep or a number of 100,000 digits is refused at once with one
sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from warmgate.config.bounded_yaml import MANIFESTS, check_shape, unbuildable, yaml_error
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.files import read_stdin, read_text

STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"

_GO_WORDS: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"),
                    (_BOOL, True)),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"),
                    (_BOOL, False)),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), (_NULL, None)),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), (_FLOAT, math.nan)),
    **{f"{sign}{word}": (_FLOAT, -math.inf if sign == "-" else math.inf)
       for sign in ("", "+", "-") for word in (".inf", ".Inf", ".INF")},
    "<<": (_MERGE, "<<"),
}  # fmt: skip
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_PREFIXES = {"b": 2, "o": 8, "x": 16}
_INT64 = 1 << 63


def go_scalar(text: str) -> tuple[str, Any]:
    """The tag and value Go's YAML reader gives the plain (unquoted) scalar ``text``.

    This is the resolver of the YAML library behind ``kubectl`` and the API server
    (``sigs.k8s.io/yaml``, a fork of go-yaml v2): YAML 1.1's words for booleans (``y``, ``on``,
    ``no``...), ``strconv.ParseInt(s, 0, 64)`` for integers once ``_`` is removed (so ``0o755``,
    ``0x1F``, ``012``, ``1_000``), and floats by go-yaml's pattern (``1e3``, ``08``, ``.5``).
    Timestamps stay strings, as go-yaml returns them into ``interface{}``. Every YAML 1.2 core
    schema number, boolean and null is among these.
    """
    if text in _GO_WORDS:
        return _GO_WORDS[text]
    first = text[:1]
    if first == "." and _DOT_FLOAT.match(text):
        return _go_float(text, text)
    if first not in tuple("+-0123456789"):
        return STR, text
    plain = text.replace("_", "")
    number = _go_int(plain)
    if number is not None:
        return _INT, number
    if _GO_FLOAT.match(plain):
        return _go_float(text, plain)
    return STR, text


def _go_int(plain: str) -> int | None:
    """``strconv.ParseInt(plain, 0, 64)``, else ``ParseUint``; None when both refuse it."""
    sign, rest = (plain[0], plain[1:]) if plain[:1] in ("+", "-") else ("", plain)
    base, digits = 10, rest
    if rest.startswith("0"):
        prefixed = len(rest) >= 3 and rest[1].lower() in _PREFIXES
        base, digits = (_PREFIXES[rest[1].lower()], rest[2:]) if prefixed else (8, rest[1:])
    if not rest or not all(c in _DIGITS[base] for c in digits):
        return None
    value = int(digits or "0", base) * (-1 if sign == "-" else 1)
    fits = -_INT64 <= value < _INT64 or (not sign and value < 2 * _INT64)
    return value if fits else None


def _go_float(text: str, plain: str) -> tuple[str, Any]:
    value = float(plain)
    # strconv.ParseFloat refuses what overflows, and go-yaml then keeps the text as a string.
    return (STR, text) if math.isinf(value) else (_FLOAT, value)


class _Loader(yaml.SafeLoader):
    """Safe loading that types plain scalars as Kubernetes does (see :func:`go_scalar`).

    PyYAML alone follows YAML 1.1, and would read ``0o755`` or ``1e3`` as strings where
    kubectl reads numbers: a workload rewritten from that reading would change meaning.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return go_scalar(value)[0]
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


def _construct_go(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    tag, value = go_scalar(text)
    if tag != node.tag:  # an explicit tag on a value Go would type otherwise
        return yaml.SafeLoader.yaml_constructors[node.tag](loader, node)
    return value


for _tag in (_BOOL, _INT, _FLOAT, _NULL):
    _Loader.add_constructor(_tag, _construct_go)


class _Dumper(yaml.SafeDumper):
    """Block style, keys in their order, no anchors, multi-line strings as ``|`` blocks.

    A string is written plain only when both YAML 1.1 (PyYAML) and Go (kubectl) read it back
    as that string; otherwise it is quoted. So ``"1e3"``, ``"0o755"``, ``"y"`` and a commit
    SHA like ``"1234e56"`` stay strings for every reader.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        if kind is yaml.ScalarNode and implicit[0] and tag == STR:
            return go_scalar(value)[0]
        return tag


_OTHER_BREAKS = ("\r", "\x85", "\u2028", "\u2029")
"""Line breaks besides \\n that YAML 1.1 readers normalise inside plain, quoted or block text."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    if any(char in value for char in _OTHER_BREAKS):
        style = '"'  # only escapes keep them: a reader folds them anywhere else
    retyped = dumper.resolve(yaml.ScalarNode, value, (True, False)) != STR  # type: ignore[no-untyped-call]
    if style is None and retyped:
        style = '"'  # as kubectl writes them: "8099", "true", "1234e56"
    return dumper.represent_scalar(STR, value, style=style)


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
    """The documents in a YAML stream, within the bounds; a ConfigError naming the line if it
    is not YAML, or saying which bound it passes."""
    try:
        check_shape(text, source, MANIFESTS)
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    except (ValueError, OverflowError) as exc:
        raise unbuildable(exc, source) from None


def read_source(source: str) -> str:
    """The text of a file path, or of standard input for ``-``, at most
    :data:`~warmgate.config.bounded_yaml.MAX_MANIFEST_BYTES`."""
    if source == "-":
        return read_stdin("standard input", MANIFESTS.max_bytes, MANIFESTS.advice)
    path = Path(source)
    if path.is_dir():
        raise ConfigError(
            f"{source} is a directory; pass one file, or pipe 'kustomize build {source}' into "
            "'warmgate inject -'."
        )
    if not path.exists():
        raise ConfigError(f"{source} does not exist; check the path, or pass - for stdin.")
    if not path.is_file():  # a pipe or a device: opening it could wait for ever
        raise ConfigError(
            f"{source} is not a regular file; pipe what it gives into 'warmgate inject -' (or "
            "uninject -) instead."
        )
    return read_text(path, "FILE", MANIFESTS.max_bytes, MANIFESTS.advice)
