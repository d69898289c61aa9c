"""Reading a config file: bounded, so that no file can hang, exhaust or crash warmgate.

Theory of operation: a config is small, trusted-looking text that may still be hostile or simply
wrong (a device, a pipe, a 2 GB file, a "billion laughs" of YAML aliases, nesting thousands
deep). Every bound is checked before the expensive step it protects:

1. the path must name a regular file (opened without blocking, so a FIFO cannot hang the read),
   of at most :data:`MAX_CONFIG_BYTES`, read with that cap whatever ``stat`` claimed;
2. the YAML events are scanned once, without building anything, to bound the nesting depth
   (:data:`MAX_DEPTH`) and the number of nodes once every alias is expanded
   (:data:`MAX_NODES`), and to refuse an alias that refers to a node it is inside;
3. only then is the document built, refusing a key written twice in one mapping.

Each refusal is a :class:`ConfigError` with one sentence saying what to change.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from warmgate.errors import ConfigError

MAX_CONFIG_BYTES = 256 * 1024
"""A config file may hold at most 256 KiB; long lists of values belong in files read by line()."""
MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused (a config needs about six)."""
MAX_INT_BITS = 64
"""Integers fit in 64 bits: a longer one is a mistake (and one of 4300+ digits cannot even be
printed in an error message)."""
MAX_NODES = 50_000
"""Nodes in the document once every alias is expanded: a 256 KiB file holds about that many."""

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """Safe loading (libyaml when present) that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(self, node)
        return super().construct_mapping(node, deep)


def _bounded_int(loader: Any, node: yaml.ScalarNode) -> int:
    value = int(yaml.SafeLoader.construct_yaml_int(loader, node))
    if value.bit_length() > MAX_INT_BITS:
        raise yaml.constructor.ConstructorError(
            problem=f"the number is beyond {MAX_INT_BITS} bits; no setting needs one that large",
            problem_mark=node.start_mark,
        )
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)


def _refuse_duplicate_keys(loader: Any, node: yaml.MappingNode) -> None:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        # A merge key (<<) may repeat what it merges: the mapping's own value wins, by design.
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        key = loader.construct_object(key_node)
        first = seen.setdefault(key, key_node)
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                problem=f"the key '{key}' is written twice in one mapping (first at line "
                f"{first.start_mark.line + 1}); keep one",
                problem_mark=key_node.start_mark,
            )


def read_text(path: Path, flag: str = "--config", limit: int = MAX_CONFIG_BYTES) -> str:
    """The text of the regular file at ``path``, at most ``limit`` bytes; ``flag`` names it."""
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
        advice = (
            "the most a config may hold; move long lists of values into a file read with line()"
            if limit == MAX_CONFIG_BYTES
            else "the most warmgate reads; keep a sample of it"
        )
        raise ConfigError(f"{flag}: {path} is larger than {limit // 1024} KiB, {advice}.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{flag}: {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8."
        ) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def parse(text: str, source: str) -> Any:
    """The one YAML document in ``text``, within the bounds; ``source`` names it in errors."""
    try:
        _check_shape(text, source)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}.") from None
    except (ValueError, OverflowError) as exc:
        # PyYAML builds ints and dates with int() and datetime(), which raise these for
        # numbers over 4300 digits or dates such as 2001-02-30.
        reason = str(exc).partition(":")[0]
        raise ConfigError(f"{source} has a value YAML cannot build ({reason}); quote it.") from None


def _check_shape(text: str, source: str) -> None:
    """Refuse deep nesting, alias bombs and self-referring aliases before building anything."""
    shape = _Shape(source)
    for event in yaml.parse(text, Loader=_Loader):
        shape.feed(event)


class _Shape:
    """Depth and expanded size of a YAML document, tallied one parser event at a time."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.open_nodes: list[list[Any]] = []  # [expanded size so far, anchor] per open collection
        self.sizes: dict[str, int] = {}  # expanded size of each complete anchored node
        self.expanded = 0

    def feed(self, event: yaml.Event) -> None:
        """Count ``event``; a ConfigError once a bound is passed."""
        if isinstance(event, yaml.CollectionStartEvent):
            if len(self.open_nodes) >= MAX_DEPTH:
                raise ConfigError(
                    f"{self.source} nests lists and mappings more than {MAX_DEPTH} deep "
                    f"({_where(event)}); flatten it."
                )
            self._count(1)
            self.open_nodes.append([1, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = self.open_nodes.pop()
            if anchor is not None:
                self.sizes[anchor] = size
            if self.open_nodes:
                self.open_nodes[-1][0] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                self.sizes[event.anchor] = 1
            self._add(1)
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor in self.open_nodes):
                raise ConfigError(
                    f"{self.source}: the alias *{event.anchor} ({_where(event)}) refers to a "
                    "node it is inside; a config cannot contain itself."
                )
            size = self.sizes.get(event.anchor or "")
            if size is None:
                raise ConfigError(
                    f"{self.source}: the alias *{event.anchor} ({_where(event)}) names no anchor "
                    f"written before it; write &{event.anchor} on the node it stands for."
                )
            self._add(size)

    def _add(self, size: int) -> None:
        if self.open_nodes:
            self.open_nodes[-1][0] += size
        self._count(size)

    def _count(self, size: int) -> None:
        self.expanded += size
        if self.expanded > MAX_NODES:
            raise ConfigError(
                f"{self.source} expands to more than {MAX_NODES} values once its aliases are "
                "expanded; write the config without repeating aliases of large nodes."
            )


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return "at the start" if mark is None else f"line {mark.line + 1}"
