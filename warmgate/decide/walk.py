"""The pure engine of journeys: JSON paths, captures, and one virtual user's progress.

Theory of operation: a :class:`Walk` is one virtual user going through a journey's steps. It
says which step the next request is for (:meth:`Walk.upcoming`), and is told how each ended:
:meth:`Walk.succeeded` with the values captured, or :meth:`Walk.failed` with the reason. After a
failure the rest of the iteration is not sent: the judged steps left each become a failure with
the first one's reason (:meth:`Walk.skipped`), the unjudged ones vanish. After the last step
the walk starts again: a new iteration number, no variables, no failure. The I/O side keeps one
cookie jar per iteration number, so the jar goes with the iteration.

:func:`extract` finds a captured value in an :class:`Answer` (status, headers, cookies, body),
or raises :class:`CaptureError` with a phrase such as ``no `$.token` in the response (status
200)``. JSON paths are a documented subset of RFC 9535: ``$`` followed by ``.name``,
``['name']`` (or double quotes) and ``[index]`` (negative counts from the end). A capture wants
one value, and names and indexes reach any one value; wildcards, slices and filters select
many, so they are refused when the config loads rather than half supported.

Regular expressions run on RE2 (:func:`compile_regex`), whose matching time grows linearly with
the answer's size whatever the pattern: no backtracking, so ``^(a+)+$`` or ``.*csrf="(.+)"`` on
a 1 MiB answer that does not match ends in milliseconds, where Python's ``re`` would run for
minutes holding the interpreter. What RE2 cannot do in linear time (backreferences, lookarounds,
atomic groups, possessive quantifiers) is refused when the config loads, with the fix, and so is
a pattern whose compiled program passes :data:`MAX_PROGRAM_SIZE`: linear time is still
proportional to the program's size in RE2's slowest mode. RE2 releases the interpreter while it
matches, so the driver can run a match on another thread under a time budget.

No I/O, no clock: plain data in, plain data out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from warmgate.kernel.redaction import Secrets, shorten

_SEGMENT = re.compile(
    r"\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)"
    r"|\[\s*(?:'(?P<single>(?:[^'\\]|\\.)*)'|\"(?P<double>(?:[^\"\\]|\\.)*)\"|(?P<index>-?[0-9]+))\s*\]"
)
_SHOWN = 60
"""The most of a capture's expression a reason shows."""
MAX_PROGRAM_SIZE = 5000
"""The largest RE2 program a capture's regex may compile to (a usual one takes 10 to 200
instructions; ``\\p{L}`` alone takes 1,200). Matching costs up to about 5 ns per byte and
instruction in RE2's slowest mode, so this keeps any one match of 1 MiB under half a minute
even then (it takes milliseconds in the usual one)."""
_UNSUPPORTED = (
    # (what RE2's error names, what it is, how to do without it)
    (re.compile(r"escape sequence: \\[1-9]|operator: \(\?P$"), "a backreference",
     "capture the first occurrence with a group and compare values in a later step's template"),
    (re.compile(r"operator: \(\?<?[=!]"), "a lookahead or lookbehind",
     "match what must come before or after outside the group, such as token=([^;]+); "
     "instead of token=(.+?)(?=;)"),
    (re.compile(r"operator: \(\?>"), "an atomic group", "write (?:...) instead"),
    (re.compile(r"repetition operator: \S*[*+?}]\+$"), "a possessive quantifier",
     "drop the + after the quantifier"),
    (re.compile(r"operator: \(\?\("), "a conditional group", "write the alternatives with |"),
    (re.compile(r"escape sequence: \\Z"), "\\Z", "write \\z for the end of the text"),
    (re.compile(r"operator: \(\?[a-zA-Z]*x"), "the verbose flag (?x)",
     "remove it and the spaces"),
    (re.compile(r"operator: \(\?#"), "a comment group (?#...)", "remove it"),
)  # fmt: skip


class JsonPathError(ValueError):
    """A JSON path outside the supported subset."""


class RegexError(ValueError):
    """A regular expression the capture engine (RE2) does not take; the message says why."""


class RegexMatch(Protocol):
    """What :func:`extract` reads of a match."""

    def group(self, index: int) -> str | None:
        """The text of group ``index`` (0: the whole match); ``None`` if it took no part."""
        ...


class Regex(Protocol):
    """A compiled capture regex (an RE2 pattern)."""

    @property
    def groups(self) -> int:
        """How many capturing groups it has."""
        ...

    def search(self, text: str) -> RegexMatch | None:
        """The first match anywhere in ``text``."""
        ...


def compile_regex(expression: str) -> Regex:
    """``expression`` compiled by RE2, or :class:`RegexError` with a sentence saying what to
    change: the construct RE2 does not support and how to do without it, or the size."""
    import re2  # only a config with a regex capture pays for it (about 3 MiB)

    options = re2.Options()
    options.log_errors = False  # the error goes into the sentence, not to stderr
    try:
        compiled = re2.compile(expression, options)
    except re2.error as exc:
        error = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        for construct, name, fix in _UNSUPPORTED:
            if construct.search(error):
                raise RegexError(
                    f"'{expression}' uses {name}, which the linear-time engine of captures "
                    f"(RE2) does not support; {fix}"
                ) from None
        raise RegexError(
            f"'{expression}' is not a regular expression captures accept ({error}); captures "
            "use RE2's syntax, close to Python's"
        ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise RegexError(
            f"'{expression}' compiles to {compiled.programsize} RE2 instructions, more than "
            f"{MAX_PROGRAM_SIZE}; simplify it (fewer or smaller repetitions and Unicode classes)"
        )
    result: Regex = compiled
    return result


class CaptureError(Exception):
    """A capture found no value; the message is a phrase for the step's reason."""


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """The segments of ``path``: names and list indexes. Raises :class:`JsonPathError`."""
    text = path.strip()
    if not text.startswith("$"):
        raise JsonPathError(f"'{path}' must start with $, such as $.token")
    segments: list[str | int] = []
    position = 1
    while position < len(text):
        match = _SEGMENT.match(text, position)
        if match is None:
            # Where, not what follows: a tail cut from the path could hold part of a secret.
            at = position + len(path) - len(path.lstrip()) + 1
            raise JsonPathError(
                f"'{path}' is not supported from character {at} on; write names and list "
                "indexes only, such as $.data.items[0].id or $['a key']"
            )
        if match["name"] is not None:
            segments.append(match["name"])
        elif match["index"] is not None:
            segments.append(int(match["index"]))
        else:
            quoted = match["single"] if match["single"] is not None else match["double"]
            segments.append(re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    return tuple(segments)


_MISSING = object()


def resolve(document: object, segments: Sequence[str | int]) -> object:
    """The value at ``segments`` in ``document``, or a sentinel that is not any JSON value."""
    current = document
    for segment in segments:
        if isinstance(segment, int) and isinstance(current, list):
            if not -len(current) <= segment < len(current):
                return _MISSING
            current = current[segment]
        elif isinstance(segment, str) and isinstance(current, dict) and segment in current:
            current = current[segment]
        else:
            return _MISSING
    return current


@dataclass(frozen=True, slots=True)
class Extract:
    """One capture as the engine sees it: ``kind`` is json, header, cookie or regex."""

    kind: str
    expression: str
    segments: tuple[str | int, ...] = ()
    pattern: Regex | None = None
    shown: str = ""
    """The expression as a reason shows it: redacted, then shortened."""

    @classmethod
    def of(cls, kind: str, expression: str, *, secrets: Secrets | None = None) -> Extract:
        """Parse the expression once (a JSON path, a regular expression); ``secrets`` are
        redacted from it where it is shown."""
        shown = shorten(expression, _SHOWN, secrets)
        if kind == "json":
            return cls(kind, expression, segments=parse_json_path(expression), shown=shown)
        if kind == "regex":
            return cls(kind, expression, pattern=compile_regex(expression), shown=shown)
        return cls(kind, expression, shown=shown)

    @property
    def needs_body(self) -> bool:
        """Whether the answer's body must be read and kept for this capture."""
        return self.kind in ("json", "regex")


@dataclass(frozen=True, slots=True)
class Answer:
    """What a capture may look at. Header names are matched case-insensitively."""

    status: int
    headers: Sequence[tuple[str, str]] = ()
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None


def extract(rule: Extract, answer: Answer) -> str:
    """The captured value, or :class:`CaptureError` saying what was missing."""
    where = f"(status {answer.status})"
    shown = rule.shown or shorten(rule.expression, _SHOWN)
    if rule.kind == "header":
        wanted = rule.expression.lower()
        for name, header in answer.headers:
            if name.lower() == wanted:
                return header
        raise CaptureError(f"no header `{shown}` in the response {where}")
    if rule.kind == "cookie":
        cookie = answer.cookies.get(rule.expression)
        if cookie is None:
            raise CaptureError(f"no cookie `{shown}` in the iteration's cookie jar {where}")
        return cookie
    body = answer.body or ""
    if rule.kind == "regex":
        assert rule.pattern is not None  # noqa: S101 - Extract.of sets it for regex
        found = rule.pattern.search(body)
        if found is None:
            raise CaptureError(f"the regex `{shown}` matched nothing in the response {where}")
        group = found.group(1 if rule.pattern.groups else 0)
        if group is None:
            raise CaptureError(
                f"the regex `{shown}` matched, but its group took no part in the match {where}"
            )
        return group
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise CaptureError(f"no `{shown}` in the response: it is not JSON {where}") from None
    value = resolve(document, rule.segments)
    if value is _MISSING or value is None:
        raise CaptureError(f"no `{shown}` in the response {where}")
    if isinstance(value, dict | list):
        kind = "an object" if isinstance(value, dict) else "a list"
        raise CaptureError(f"`{shown}` is {kind}, not one value {where}")
    if isinstance(value, str):
        return value
    return json.dumps(value)


def too_slow(rule: Extract, answer: Answer, budget: float) -> CaptureError:
    """The failure of a capture that did not finish within ``budget`` seconds."""
    shown = rule.shown or shorten(rule.expression, _SHOWN)
    size = len(answer.body or "")
    return CaptureError(
        f"the regex `{shown}` did not finish within {budget:g}s on the response ({size:,} "
        f"characters, status {answer.status}); simplify it"
    )


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an iteration failed: the outcome of the failing step and a reason naming it."""

    outcome: str
    detail: str


class Walk:
    """One virtual user's progress through a journey (see the module docstring)."""

    __slots__ = ("_failure", "_judged", "_names", "_position", "iteration", "variables")

    def __init__(self, names: Sequence[str], judged: Sequence[bool]) -> None:
        if not names or len(names) != len(judged) or not any(judged):
            raise ValueError("give at least one step, with one judged flag each, one judged")
        self._names = tuple(names)
        self._judged = tuple(judged)
        self._position = 0
        self._failure: Failure | None = None
        self.iteration = 0
        self.variables: dict[str, str] = {}

    @property
    def failure(self) -> Failure | None:
        """Why the current iteration failed, or ``None`` while it goes well."""
        return self._failure

    def upcoming(self) -> int:
        """The index of the step the next request is for.

        In a failed iteration the unjudged steps left are passed over; past the last step a
        new iteration starts.
        """
        if self._failure is not None:
            while self._position < len(self._names) and not self._judged[self._position]:
                self._position += 1
        if self._position >= len(self._names):
            self._restart()
        return self._position

    def judged(self) -> bool:
        """Whether the upcoming step counts toward the gate."""
        return self._judged[self.upcoming()]

    def succeeded(self, captured: Mapping[str, str]) -> None:
        """The upcoming step answered as expected; ``captured`` are its values."""
        self.upcoming()
        self.variables.update(captured)
        self._advance()

    def failed(self, outcome: str, detail: str) -> Failure:
        """The upcoming step failed: the rest of this iteration fails with this reason."""
        index = self.upcoming()
        self._failure = Failure(outcome, f"step '{self._names[index]}': {detail}")
        self._advance()
        return self._failure

    def skipped(self) -> Failure:
        """The upcoming step of a failed iteration was not sent; the failure it counts as."""
        if self._failure is None:
            raise ValueError("only a failed iteration skips steps")
        failure = self._failure
        self.upcoming()
        self._advance()
        return failure

    def _advance(self) -> None:
        self._position += 1

    def _restart(self) -> None:
        self._position = 0
        self._failure = None
        self.variables = {}
        self.iteration += 1
