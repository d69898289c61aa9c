"""Counted requests in, a ranked and weighted URL set out: the deciding half of ``warmgate paths``.

Theory of operation: :class:`PathCounter` is fed the requests of one chunk of log at a time
(:class:`warmgate.paths.accesslog.Parsed`) and keeps a table of URL templates with their counts.

1. **Which requests count**: GET only (warm-up traffic never writes), with a status the policy
   accepts (2xx and 304 by default: a 304 is a page a browser already had, and it is hot; a
   redirect or an error says nothing about the page users get).
2. **What is kept of a target**: the path. The query string was dropped by the parser, and path
   parameters (``;jsessionid=...``) are dropped here: both carry session ids and tokens, and a
   secret in a log must not land in a config. A path holding something token-like (a UUID, a
   long run of letters mixed with digits, percent-escapes not cutting it) is left out whole,
   and so is one holding an e-mail address (``@`` or ``%40``: personal data, like a token), one
   that is not plain printable ASCII, or one that holds ``{``/``}`` (they would read as
   template markup).
3. **Ids become templates** (:class:`IdMode`): a path segment of decimal digits (perhaps before
   an extension, ``/4711.html``) is an id slot, so ``/order/12345`` and ``/order/7`` count
   together as ``/order/{id}``. ``sample`` (the
   default) writes up to ``sample_size`` real ids seen, chosen at random per request
   (``{{choice([7,12345])}}``); several slots are sampled together, so a customer's invoice
   number is never paired with another customer. ``range`` writes ``{{randint(LOW,HIGH)}}``
   with the range seen (it may invent ids that do not exist). ``keep`` counts paths as they are.
4. **Bounded memory**: after each chunk the table holds at most ``max_templates`` templates
   and ``max_bytes`` of templates and sampled paths; past either, the rarest templates are
   evicted until both are at half their cap (and counted in :class:`Tally`). Between two
   prunings it grows by at most one chunk's distinct paths. A hostile log of unique or huge
   paths costs bounded memory; the counts of the rarest templates are then lower bounds, the
   ranking of the frequent ones holds.

Samples are a bottom-k sketch over the CRC-32 of each path (within one template, distinct paths
are distinct ids): uniform over the distinct ids seen, the same for the same log every time, and
independent of how the log was cut into chunks. Pure; no I/O.
"""

from __future__ import annotations

import heapq
import json
import re
import zlib
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter

from warmgate.kernel.errors import ConfigError
from warmgate.paths.accesslog import Parsed

ID_SLOT = re.compile(rb"/([1-9][0-9]{0,17}|0)(?=(?:\.[A-Za-z][A-Za-z0-9]{0,4})?(?:/|\Z))")
"""A path segment that is a decimal id, alone or before an extension (``/4711``,
``/4711.html``); without leading zeros: ``/007`` is a name, not a number."""
LONG_RUN = re.compile(rb"[A-Za-z0-9_-]{20,}")
"""20 or more letters, digits, ``-`` and ``_``: token-like when it mixes letters and digits (a
session id, an API key, a reset token, a JWT part) or is a UUID."""
ESCAPED_RUN = re.compile(rb"(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){20,}")
"""A run of token characters through percent-escapes: a base64 token's ``+``, ``/`` and ``=``
are written ``%2B``, ``%2F`` and ``%3D`` in a path, and must not cut it into short runs."""
EMAIL = re.compile(
    rb"(?<=[A-Za-z0-9._%+!$&'*=^`|~-])(?:@|%40)"  # a local part's last character, then the @
    rb"(?![0-9]+(?:\.[0-9]+)?x[._/-])"  # not an image's scale, as in logo@2x.png
    rb"(?>(?:[A-Za-z0-9-]++\.)+)[A-Za-z]{2,63}(?![A-Za-z0-9-])"  # labels, then the top level
)
"""An e-mail address in a path, its ``@`` written as is or as ``%40`` (``/users/ann@example.com``,
``/unsubscribe/ann%40example.com``): personal data, left out like a token. Matched from each
``@`` onward without backtracking (atomic and possessive), so a long path costs linear time."""
ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
PERCENT = re.compile(rb"%")
UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DIGIT = re.compile(rb"[0-9]")
LETTER = re.compile(rb"[A-Za-z]")
NOT_PLAIN = re.compile(rb"[^!#-\[\]-z|~\n]")
"""Anything but printable ASCII, ``"``, ``\\``, ``{`` and ``}`` (logs write odd bytes as
``\\xHH``; braces would read as template markup)."""
PATH_PARAMETER = re.compile(rb";")
NOT_ROOTED = re.compile(rb"\n[^/]")
"""The start of a target that is not a path (absolute-form); the first target is checked apart."""
ID_SLOTS = re.compile(rb"/(?:[1-9][0-9]{0,17}|0)(?=(?:\.[A-Za-z][A-Za-z0-9]{0,4})?(?:[/\n]|\Z))")
PATH_PARAMETERS = re.compile(rb";[^/]*")
ABSOLUTE_FORM = re.compile(rb"[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")
SLOT = b"\x00"


class IdMode(Enum):
    """How id segments are written (see the module docstring)."""

    SAMPLE = "sample"
    RANGE = "range"
    KEEP = "keep"


def statuses_from(specs: list[str]) -> frozenset[bytes]:
    """The accepted statuses of specs like ``2xx``, ``304`` or ``200,204``."""
    accepted: set[bytes] = set()
    for spec in ",".join(specs).split(","):
        text = spec.strip().lower()
        if re.fullmatch(r"[1-5]xx", text):
            accepted.update(f"{text[0]}{n:02d}".encode() for n in range(100))
        elif re.fullmatch(r"[1-5][0-9][0-9]", text):
            accepted.add(text.encode())
        else:
            raise ConfigError(
                f"--status {spec.strip()!r}: write a status (304) or a class (2xx), "
                "comma-separated or repeated."
            )
    return frozenset(accepted)


@dataclass(frozen=True)
class Policy:
    """What ``warmgate paths`` keeps and how it writes ids."""

    ids: IdMode = IdMode.SAMPLE
    statuses: frozenset[bytes] = statuses_from(["2xx", "304"])
    exclude: tuple[re.Pattern[str], ...] = ()
    max_templates: int = 50_000
    sample_size: int = 20
    max_bytes: int = 64 * 1024 * 1024
    """Bytes of templates and sampled paths held at most (a path can be 64 KiB long)."""


@dataclass
class Tally:
    """What happened to every line read (the summary on stderr)."""

    lines: int = 0
    bad: int = 0
    kept: int = 0
    other_method: int = 0
    other_status: int = 0
    unusable: int = 0
    token_like: int = 0
    personal: int = 0
    """Requests whose path holds an e-mail address."""
    excluded: int = 0
    evicted_requests: int = 0
    evicted_templates: int = 0


class _Ids:
    """The ids seen in one template's slots: their range, and a bottom-k sample of paths."""

    __slots__ = ("bound", "heap", "high", "low", "sample")

    def __init__(self) -> None:
        self.low: list[int] = []
        self.high: list[int] = []
        # The CRC-32s of the sampled paths, negated (a max-heap), and the paths by CRC-32; a
        # path joins the sample only if its CRC-32 is below the bound (the largest, once full).
        self.heap: list[int] = []
        self.sample: dict[int, bytes] = {}
        self.bound = 1 << 32


@dataclass(frozen=True)
class UrlLine:
    """One line of a URL set: a URL template and its weight (the requests it stands for)."""

    url: str
    weight: int


def path_of(target: bytes) -> bytes | None:
    """The path of a request target without path parameters (not yet checked for plainness)."""
    if not target.startswith(b"/"):
        found = ABSOLUTE_FORM.match(target)  # a proxy's GET http://host/path
        if found is None:
            return None
        target = target[found.end() :] or b"/"
    if b";" in target:
        target = PATH_PARAMETERS.sub(b"", target)
    return target


def _line_at(blob: bytes, offset: int) -> bytes:
    """The newline-separated line of ``blob`` that holds ``offset``."""
    end = blob.find(b"\n", offset)
    return blob[blob.rfind(b"\n", 0, offset) + 1 : None if end < 0 else end]


def token_like(path: bytes) -> bool:
    """Whether ``path`` holds something that looks like a secret (see :data:`LONG_RUN`)."""
    for run in LONG_RUN.finditer(path):
        text = run.group()
        if UUID.fullmatch(text) or (DIGIT.search(text) and LETTER.search(text)):
            return True
    if b"%" in path:
        for run in ESCAPED_RUN.finditer(path):
            text = ESCAPE.sub(b"", run.group())  # an escape's hex digits are not the token's
            if len(text) >= 20 and DIGIT.search(text) and LETTER.search(text):
                return True
    return False


def _suspects(blob: bytes) -> set[bytes]:
    """The lines of ``blob`` that may hold a token: a long run, or a percent-escape."""
    found = {_line_at(blob, run.start()) for run in LONG_RUN.finditer(blob)}
    found.update(_line_at(blob, escape.start()) for escape in PERCENT.finditer(blob))
    return found


def _ids_bytes(ids: _Ids) -> int:
    """The bytes :attr:`PathCounter._held` counts for one template's ids (8 per range bound)."""
    return sum(map(len, ids.sample.values())) + 16 * len(ids.low)


class PathCounter:
    """Counts URL templates over a stream of parsed chunks, in bounded memory."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.tally = Tally()
        # Counts of every template, and the ids of those with id slots (most have none).
        self._counts: dict[bytes, int] = {}
        self._ids: dict[bytes, _Ids] = {}
        self._held = 0  # bytes of the templates and sampled paths held (see Policy.max_bytes)

    def add(self, parsed: Parsed) -> None:
        """Count one chunk's requests."""
        tally, accepted = self.tally, self.policy.statuses
        tally.lines += parsed.lines
        tally.bad += parsed.bad
        targets: dict[bytes, int] = {}
        for (method, target, status), n in parsed.requests.items():
            if method != b"GET":
                tally.other_method += n
            elif status not in accepted:
                tally.other_status += n
            else:
                targets[target] = targets.get(target, 0) + n
        paths = self._usable(targets)
        tally.kept += sum(paths.values())
        self._count(paths)
        if len(self._counts) > self.policy.max_templates or self._held > self.policy.max_bytes:
            self._prune()

    def _usable(self, targets: dict[bytes, int]) -> dict[bytes, int]:
        """The paths of ``targets`` that may be written, with their counts.

        This and :meth:`_count` run once per distinct path of a chunk, the hot path: checks
        run once over all the chunk's paths joined by newlines, and only the paths they flag
        are looked at one by one.
        """
        tally, paths = self.tally, targets
        if not paths:
            return paths
        blob = b"\n".join(paths)
        unclean = {_line_at(blob, found.start()) for found in PATH_PARAMETER.finditer(blob)}
        if not blob.startswith(b"/"):
            unclean.add(_line_at(blob, 0))
        unclean.update(_line_at(blob, found.start() + 1) for found in NOT_ROOTED.finditer(blob))
        if unclean:
            for target in unclean:
                n = paths.pop(target)
                path = path_of(target)
                if path is None:
                    tally.unusable += n
                else:  # never unclean again: it starts with / and has no ;
                    paths[path] = paths.get(path, 0) + n
            blob = b"\n".join(paths)
        for found in NOT_PLAIN.finditer(blob):
            path = _line_at(blob, found.start())
            tally.unusable += paths.pop(path, 0)
        self._leave_out_private(blob, paths)
        if self.policy.exclude:
            for path in [p for p in paths if self._excluded(p)]:
                tally.excluded += paths.pop(path)
        return paths

    def _leave_out_private(self, blob: bytes, paths: dict[bytes, int]) -> None:
        """Take the paths holding a token or an e-mail address out of ``paths`` (``blob`` is
        their lines joined), counting them."""
        tally = self.tally
        for path in _suspects(blob):
            if path in paths and token_like(path):
                tally.token_like += paths.pop(path)
        if b"@" in blob or b"%40" in blob:
            for path in {_line_at(blob, found.start()) for found in EMAIL.finditer(blob)}:
                tally.personal += paths.pop(path, 0)

    def _excluded(self, path: bytes) -> bool:
        text = path.decode("ascii")
        return any(pattern.search(text) for pattern in self.policy.exclude)

    def _count(self, paths: dict[bytes, int]) -> None:
        counts = self._counts
        if not paths:
            return
        if self.policy.ids is IdMode.KEEP:
            self._count_paths(paths)
            return
        # One substitution over all paths gives every path's template key, in order.
        keys = ID_SLOTS.sub(SLOT, b"\n".join(paths)).split(b"\n")
        if self.policy.ids is IdMode.RANGE:
            self._count_ranges(paths, keys)
            return
        # Sampling is inlined: this loop runs once per distinct path of the chunk.
        table, size, crc32 = self._ids, self.policy.sample_size, zlib.crc32
        held = 0
        for (path, n), key in zip(paths.items(), keys, strict=True):
            count = counts.get(key)
            if count is None:
                counts[key] = n
                held += len(key)
            else:
                counts[key] = count + n
            if SLOT not in key:
                continue
            ids = table.get(key)
            if ids is None:
                ids = table[key] = _Ids()
            # Distinct paths of one template are distinct id tuples: the sketch hashes the path.
            digest = crc32(path)
            if digest >= ids.bound or digest in ids.sample:
                continue
            ids.sample[digest] = path
            held += len(path)
            heapq.heappush(ids.heap, -digest)
            if len(ids.sample) > size:
                held -= len(ids.sample.pop(-heapq.heappop(ids.heap)))
            if len(ids.sample) == size:
                ids.bound = -ids.heap[0]
        self._held += held

    def _count_paths(self, paths: dict[bytes, int]) -> None:
        counts, held = self._counts, 0
        for path, n in paths.items():
            count = counts.get(path)
            if count is None:
                counts[path] = n
                held += len(path)
            else:
                counts[path] = count + n
        self._held += held

    def _count_ranges(self, paths: dict[bytes, int], keys: list[bytes]) -> None:
        counts, table = self._counts, self._ids
        held = 0
        for (path, n), key in zip(paths.items(), keys, strict=True):
            count = counts.get(key)
            if count is None:
                counts[key] = n
                held += len(key)
            else:
                counts[key] = count + n
            if SLOT not in key:
                continue
            values = [int(text) for text in ID_SLOT.findall(path)]
            ids = table.get(key)
            if ids is None:
                ids = table[key] = _Ids()
                ids.low, ids.high = values, list(values)
                held += _ids_bytes(ids)
                continue
            low, high = ids.low, ids.high
            for slot, value in enumerate(values):
                if value < low[slot]:
                    low[slot] = value
                elif value > high[slot]:
                    high[slot] = value
        self._held += held

    def _prune(self) -> None:
        """Evict the rarest templates until both the count and the bytes are at half their cap."""
        counts, tally = self._counts, self.tally
        templates, held = self.policy.max_templates // 2, self.policy.max_bytes // 2
        for key, count in sorted(counts.items(), key=itemgetter(1)):
            if len(counts) <= templates and self._held <= held:
                break
            del counts[key]
            ids = self._ids.pop(key, None)
            self._held -= len(key) + (_ids_bytes(ids) if ids else 0)
            tally.evicted_requests += count
            tally.evicted_templates += 1

    @property
    def templates(self) -> int:
        """How many distinct templates the table holds."""
        return len(self._counts)

    @property
    def held_bytes(self) -> int:
        """The bytes of templates and sampled paths the table holds."""
        return self._held

    def ranked(self, *, top: int | None = None, min_count: int = 1) -> list[UrlLine]:
        """The URL set: templates seen at least ``min_count`` times, most frequent first."""
        lines = [
            UrlLine(self._render(key), count)
            for key, count in self._counts.items()
            if count >= min_count
        ]
        lines.sort(key=lambda line: (-line.weight, line.url))
        return lines if top is None else lines[:top]

    def _render(self, key: bytes) -> str:
        ids = self._ids.get(key)
        if ids is None:
            return key.decode("ascii")
        literals = [part.decode("ascii") for part in key.split(SLOT)]
        if self.policy.ids is IdMode.RANGE:
            slots = [
                str(low) if low == high else f"{{{{randint({low},{high})}}}}"
                for low, high in zip(ids.low, ids.high, strict=True)
            ]
            return literals[0] + "".join(
                f"/{slot}{literal}" for slot, literal in zip(slots, literals[1:], strict=True)
            )
        # Each sampled path, from its first id to its last: "12" or "12/invoice/7".
        tuples = sorted(
            (ID_SLOT.findall(path) for path in ids.sample.values()),
            key=lambda values: [int(value) for value in values],
        )
        spans = [
            values[0].decode()
            + "".join(
                f"{literal}/{value.decode()}"
                for literal, value in zip(literals[1:-1], values[1:], strict=True)
            )
            for values in tuples
        ]
        if len(spans) == 1:
            middle = spans[0]
        elif len(literals) == 2:
            middle = f"{{{{choice([{','.join(spans)}])}}}}"
        else:
            middle = f"{{{{choice([{','.join(json.dumps(span) for span in spans)}])}}}}"
        return f"{literals[0]}/{middle}{literals[-1]}"
