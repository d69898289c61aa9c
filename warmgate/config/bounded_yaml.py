"""Reading YAML: bounded, so that no file can hang, exhaust or crash warmgate.

Theory of operation: a config, or a stream of Kubernetes manifests for ``inject`` and
``uninject``, is text that may be hostile or simply wrong (a device, a pipe, a 2 GB file, a
"billion laughs" of YAML aliases, nesting thousands deep, a number of 100,000 digits). Every
bound is checked before the expensive step it protects, by this one reader for both, with the
figures of :data:`CONFIG` or :data:`MANIFESTS` (:class:`Bounds`):

1. the path must name a regular file (opened without blocking, so a FIFO cannot hang the read),
   of at most the byte bound, read with that cap whatever ``stat`` claimed; standard input is
   read with the same cap (:func:`~warmgate.kernel.files.read_text`,
   :func:`~warmgate.kernel.files.read_stdin`, given the bound's figures);
2. the YAML events are scanned once, without building anything (:func:`check_shape`), to bound
   the nesting depth, the number of nodes once every alias is expanded (and how many the
   aliases add), and the length of a number (at most :data:`MAX_INT_BITS`); and to refuse an
   alias that refers to a node it is inside;
3. only then is the document built, refusing a key written twice in one mapping (a config).

The scan costs one pass over the text's events, whatever its aliases would expand to, so a
refusal comes at once. Each refusal is a :class:`ConfigError` with one sentence saying what to
change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from warmgate.kernel.errors import ConfigError
from warmgate.kernel.files import shown_size

MAX_CONFIG_BYTES = 256 * 1024
"""A config file may hold at most 256 KiB; long lists of values belong in files read by line()."""
MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused (a config needs about six)."""
MAX_INT_BITS = 64
"""Integers fit in 64 bits: a longer one is a mistake (and one of 4300+ digits cannot even be
printed in an error message)."""
MAX_NODES = 50_000
"""Nodes in the document once every alias is expanded: a 256 KiB file holds about that many."""
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""A stream ``inject`` or ``uninject`` reads holds at most 16 MiB (``kustomize build`` of a whole
platform, CRDs included, is a few MiB)."""
MAX_MANIFEST_DEPTH = 128
"""Manifests nest deeper than a config (a CRD's schema); still far from Python's recursion limit
along the way a workload is read, changed and written."""
MAX_MANIFEST_INT_BITS = 1024
"""Kubernetes reads a whole number past 64 bits as a float, and past a float's range (2**1024,
309 digits) as text: a longer one is refused, to be quoted."""


@dataclass(frozen=True)
class Bounds:
    """What a YAML text may cost: bytes, nesting, nodes in all and nodes its aliases add."""

    max_bytes: int
    max_depth: int
    max_nodes: int | None
    """``None``: bounded by the size alone (every node is written in the text)."""
    max_alias_nodes: int
    max_int_bits: int
    """A whole number written with more bits than this is refused."""
    noun: str
    """What the text is, for the sentences: "config", "stream"."""
    advice: str
    """How to fix a text over ``max_bytes``."""


CONFIG = Bounds(
    MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, MAX_NODES, MAX_INT_BITS, "config",
    "the most a config may hold; move long lists of values into a file read with line()",
)  # fmt: skip
MANIFESTS = Bounds(
    MAX_MANIFEST_BYTES, MAX_MANIFEST_DEPTH, None, MAX_NODES, MAX_MANIFEST_INT_BITS, "stream",
    "the most inject and uninject read at once; split the stream (one application at a time)",
)  # fmt: skip
_INT_TAG = "tag:yaml.org,2002:int"
_INTEGER = re.compile(
    r"[-+]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*(?::[0-9_]+)*)"
)
"""What YAML 1.1 (PyYAML) or Go (kubectl) may read as an integer: decimal, 0x, 0o, 0b, leading-0
octal, with underscores, and YAML 1.1's base 60 (``1:30:00``)."""
_PREFIXES = {"x": 16, "o": 8, "b": 2}

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """Safe loading (libyaml when present) that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(self, node)
        return super().construct_mapping(node, deep)


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


def parse(text: str, source: str) -> Any:
    """The one YAML document in ``text``, within the bounds; ``source`` names it in errors."""
    try:
        check_shape(text, source, CONFIG)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    except (ValueError, OverflowError) as exc:
        raise unbuildable(exc, source) from None


def yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    """The sentence for a YAML syntax or construction error, naming the line and column."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
    return ConfigError(f"{source} is not valid YAML{where}: {problem}.")


def unbuildable(exc: ValueError | OverflowError, source: str) -> ConfigError:
    """The sentence for a value PyYAML cannot build: it builds ints and dates with ``int()`` and
    ``datetime()``, which raise these for dates such as 2001-02-30."""
    reason = str(exc).partition(":")[0]
    return ConfigError(f"{source} has a value YAML cannot build ({reason}); quote it.")


def check_shape(text: str, source: str, bounds: Bounds) -> None:
    """Refuse a text over ``bounds`` (its size, nesting, alias expansion, long numbers) and a
    self-referring alias, before anything is built; YAML syntax errors are ``yaml.YAMLError``."""
    if len(text) > bounds.max_bytes:  # a character is at least a byte
        raise ConfigError(
            f"{source} is larger than {shown_size(bounds.max_bytes)}, {bounds.advice}."
        )
    shape = _Shape(source, bounds)
    for event in yaml.parse(text, Loader=_Loader):
        shape.feed(event)


def _beyond_int_bits(text: str, bits: int) -> bool:
    """Whether ``text`` reads as an integer (see :data:`_INTEGER`) of more than ``bits`` bits;
    no digit string longer than that is converted."""
    if not _INTEGER.fullmatch(text):
        return False
    plain = text.replace("_", "").lstrip("+-")
    value = 0
    for part in plain.split(":"):  # base 60 in YAML 1.1; most numbers are one part
        base, digits = 10, part
        if len(part) > 2 and part[0] == "0" and part[1].lower() in _PREFIXES:
            base, digits = _PREFIXES[part[1].lower()], part[2:]
        digits = digits.lstrip("0") or "0"
        if len(digits) > bits:  # more digits than any number of that many bits has, in any base
            return True
        value = value * 60 + int(digits, base)
        if value.bit_length() > bits:
            return True
    return False


class _Shape:
    """Depth and expanded size of a YAML stream, tallied one parser event at a time."""

    def __init__(self, source: str, bounds: Bounds) -> None:
        self.source = source
        self.bounds = bounds
        self.open_nodes: list[list[Any]] = []  # [expanded size so far, anchor] per open collection
        self.sizes: dict[str, int] = {}  # expanded size of each complete anchored node
        self.expanded = 0
        self.written = 0

    def feed(self, event: yaml.Event) -> None:
        """Count ``event``; a ConfigError once a bound is passed."""
        if isinstance(event, yaml.DocumentStartEvent):
            self.sizes.clear()  # an alias refers to an anchor of its own document only
        elif isinstance(event, yaml.CollectionStartEvent):
            depth = self.bounds.max_depth
            if len(self.open_nodes) >= depth:
                raise ConfigError(
                    f"{self.source} nests lists and mappings more than {depth} deep "
                    f"({_where(event)}); flatten it."
                )
            self.written += 1
            self._count(1)
            self.open_nodes.append([1, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = self.open_nodes.pop()
            if anchor is not None:
                self.sizes[anchor] = size
            if self.open_nodes:
                self.open_nodes[-1][0] += size
        elif isinstance(event, yaml.ScalarEvent):
            self._scalar(event)
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

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        plain = event.implicit[0] and not event.style  # None, or "" from libyaml
        bits = self.bounds.max_int_bits
        if (plain or event.tag == _INT_TAG) and _beyond_int_bits(event.value, bits):
            raise ConfigError(
                f"{self.source} has a number longer than {bits} bits ({_where(event)}); quote it "
                "if it is text, or write a smaller one."
            )
        if event.anchor is not None:
            self.sizes[event.anchor] = 1
        self.written += 1
        self._add(1)

    def _add(self, size: int) -> None:
        if self.open_nodes:
            self.open_nodes[-1][0] += size
        self._count(size)

    def _count(self, size: int) -> None:
        self.expanded += size
        bounds, noun = self.bounds, self.bounds.noun
        if bounds.max_nodes is not None and self.expanded > bounds.max_nodes:
            raise ConfigError(
                f"{self.source} expands to more than {bounds.max_nodes} values once its aliases "
                f"are expanded; write the {noun} without repeating aliases of large nodes."
            )
        if self.expanded - self.written > bounds.max_alias_nodes:
            raise ConfigError(
                f"{self.source}: its aliases add more than {bounds.max_alias_nodes} values once "
                f"expanded; write the {noun} without repeating aliases of large nodes."
            )


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return "at the start" if mark is None else f"line {mark.line + 1}"
