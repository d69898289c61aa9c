"""Request templates: compiled once at start-up, rendered for every request.

A string without ``{{`` or ``{%`` is a constant and never touches Jinja2, so configs without
templates never import it (sidecar memory). Templates run in Jinja2's immutable sandbox with
strict undefined names and these functions:

- ``randint(a, b)``: a random integer, both ends included
- ``choice(items)``: a random element of a list
- ``uuid4()``: a random UUID string
- ``line(path)``: a random line of a text file (read once, blank lines skipped)
- ``random()``: a float in [0, 1)

Bounds, because a template is code that runs at start-up and for every request: a rendering
longer than :data:`MAX_RENDERED_CHARS` is cut off with an error (every render, streamed, so the
excess is never built); the operators and methods that can build a huge value in one step
(``*``, ``+``, ``**``, ``%``, ``str.ljust``/``center``/``zfill``/``replace``/``join``/``format``
and the ``center``/``indent``/``join``/``replace``/``format``/``sum`` filters) refuse a result over
that size before building it; and the first render, at start-up, must finish within
:data:`FIRST_RENDER_SECONDS`, so a template that loops for minutes fails ``validate`` at once.
Files read by ``line()`` must be regular files of at most :data:`MAX_LINE_FILE_BYTES`.
"""

from __future__ import annotations

import contextlib
import random as _random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from warmgate.errors import ConfigError, TemplateError

TEMPLATE_FUNCTIONS = ("randint", "choice", "uuid4", "line", "random")
MAX_RENDERED_CHARS = 1_000_000
"""The most characters one rendering (a URL, a header, a body, a parameter) may produce."""
FIRST_RENDER_SECONDS = 0.5
"""The first render, at start-up, must finish within this long (a usual one takes microseconds)."""
MAX_LINE_FILE_BYTES = 64 * 1024 * 1024
"""The largest file ``line()`` reads (it keeps the file's lines in memory)."""
_MAX_POWER_BITS = 4096
_WATCHED_METHODS = frozenset(
    {"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "format", "format_map"}
)
_WIDE = re.compile(r"\d{7,}")  # a field width or precision of a million or more


class _TooLargeError(Exception):
    """A value would pass :data:`MAX_RENDERED_CHARS`."""


class _TooSlowError(Exception):
    """The first render ran past :data:`FIRST_RENDER_SECONDS`."""


class Template(Protocol):
    """Something that renders to a string, once per request."""

    def render(self) -> str:
        """A freshly rendered value."""
        ...


class Constant:
    """A value with no template markup: rendering returns it as is."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def render(self) -> str:
        """The constant."""
        return self.value


class _Lines:
    """Random lines of files, each file read once."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}

    def __call__(self, path: str) -> str:
        lines = self._files.get(path)
        if lines is None:
            from warmgate.config_file import read_text

            try:
                text = read_text(Path(path), f"line('{path}')", MAX_LINE_FILE_BYTES)
            except ConfigError as exc:
                raise TemplateError(str(exc)) from None
            lines = [stripped for raw in text.splitlines() if (stripped := raw.strip())]
            if not lines:
                raise TemplateError(f"line('{path}') found no non-blank lines in the file.")
            self._files[path] = lines
        return _random.choice(lines)


class Templates:
    """Compiles template strings into renderers sharing one sandboxed environment."""

    def __init__(self) -> None:
        self._render: Callable[[str], Callable[[], str]] | None = None

    def _environment_compiler(self) -> Callable[[str], Callable[[], str]]:
        if self._render is not None:
            return self._render
        import jinja2  # only configs that use templates pay for Jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = _bounded_environment(ImmutableSandboxedEnvironment)(
            undefined=jinja2.StrictUndefined, autoescape=False, finalize=_printable
        )
        # lipsum(n) writes n paragraphs, and nobody warms an app with lorem ipsum.
        env.globals.pop("lipsum", None)
        functions: dict[str, Any] = {
            "randint": _random.randint,
            "choice": _choice,
            "uuid4": lambda: str(uuid.uuid4()),
            "line": _Lines(),
            "random": _random.random,
        }
        env.globals.update(functions)

        def compile_one(source: str) -> Callable[[], str]:
            template = env.from_string(source)
            return lambda: _bounded_join(template.generate())

        self._render = compile_one
        return compile_one

    def compile(self, source: str, where: str) -> Template:
        """Compile ``source`` and render it once, so mistakes surface at start-up.

        ``where`` names the config field in error messages.
        """
        if "{{" not in source and "{%" not in source:
            return Constant(source)
        import jinja2

        try:
            render = self._environment_compiler()(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{where}: the template has a syntax error at line {exc.lineno}: {exc.message}."
            ) from None
        compiled = _Compiled(render, where)
        try:
            with _deadline(FIRST_RENDER_SECONDS):
                render()
        except _TooLargeError as exc:
            raise TemplateError(_too_large(where, exc)) from None
        except _TooSlowError:
            raise TemplateError(
                f"{where}: the template took more than {FIRST_RENDER_SECONDS:g}s to render once; "
                "it renders for every request, so make it do less (smaller loops)."
            ) from None
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"{where}: {exc.message}; the functions are {', '.join(TEMPLATE_FUNCTIONS)}."
            ) from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{where}: the template failed to render: {exc}.") from None
        # The template is the user's code and this is where it first runs: whatever it raises
        # (ZeroDivisionError, OverflowError, ...) is a mistake in the config, not in warmgate.
        except Exception as exc:  # noqa: BLE001 - the boundary where user code runs
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TemplateError(
                f"{where}: the template failed to render ({detail}); fix the expression."
            ) from None
        return compiled


class _Compiled:
    __slots__ = ("_render", "_where")

    def __init__(self, render: Callable[[], str], where: str) -> None:
        self._render = render
        self._where = where

    def render(self) -> str:
        try:
            return self._render()
        except _TooLargeError as exc:
            # Past start-up (a random choice can make one rendering larger than the first).
            raise TemplateError(_too_large(self._where, exc)) from None


def _choice(items: Sequence[Any]) -> Any:
    if not items:
        raise ValueError("choice() needs a non-empty list")
    return _random.choice(items)


def _too_large(where: str, exc: _TooLargeError) -> str:
    return (
        f"{where}: the template would render more than {MAX_RENDERED_CHARS:,} characters "
        f"({exc}); render less."
    )


def _bounded_join(parts: Iterator[str]) -> str:
    """The rendered parts joined, or :class:`_TooLargeError` as soon as they pass the bound."""
    size = 0
    kept = []
    for part in parts:
        size += len(part)
        if size > MAX_RENDERED_CHARS:
            raise _TooLargeError("its output")
        kept.append(part)
    return "".join(kept)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_TooSlowError` in the code running in this block once ``seconds`` have passed.

    A trace function sees every line the template's compiled code runs and every call, so even
    an empty loop is interrupted; it costs time only here, at the one render at start-up.
    """
    end = time.monotonic() + seconds
    previous = sys.gettrace()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > end:
            raise _TooSlowError
        # Line by line only in the template's own code: tracing every line of the library code
        # it calls (and of the size checks here) would make the render itself slow.
        return trace if frame.f_code.co_filename == "<template>" else None

    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)


def _size(value: Any) -> int:
    """About how many characters printing ``value`` takes, with every nested container expanded
    (quotes, brackets and separators included); counting stops just past
    :data:`MAX_RENDERED_CHARS`, so it costs at most that.

    Expanded, not in memory: ``[[0] * 100000] * 100000`` holds one inner list, but prints 10¹⁰
    zeros.
    """
    total = 0
    pending = [(value, False)]
    while pending and total <= MAX_RENDERED_CHARS:
        item, nested = pending.pop()
        if isinstance(item, str | bytes):
            total += len(item) + (4 if nested else 0)  # 'quotes' and ", " inside a container
            continue
        if isinstance(item, dict):
            item = [*item.keys(), *item.values()]
        if not isinstance(item, list | tuple | set | frozenset):
            total += 3 if nested else 1
        elif _SIZED.isdisjoint(map(type, item)):
            total += 4 + 3 * len(item)  # brackets, and each scalar with its separator
        else:
            total += 4
            pending.extend((element, True) for element in item)
    return total


_SIZED = frozenset({str, bytes, list, tuple, set, frozenset, dict})


def _printable(value: Any) -> Any:
    """What ``{{ value }}`` may print: a value whose printed form would pass the bound is
    refused before ``str()`` builds it."""
    _check_size(_size(value), "a value it prints")
    return value


def _check_size(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARS:
        raise _TooLargeError(what)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for items, count in ((left, right), (right, left)):
            if isinstance(count, int) and isinstance(items, str | bytes | list | tuple):
                _check_size(_size(items) * count, "a repetition with *")
    elif operator == "+":
        _check_size(_size(left) + _size(right), "a concatenation with +")
    elif operator == "**":
        integers = isinstance(left, int) and isinstance(right, int) and right > 0
        if integers and left.bit_length() * right > _MAX_POWER_BITS:
            raise _TooLargeError(f"a power with {_MAX_POWER_BITS}+ bits")
    elif operator == "%" and isinstance(left, str) and _WIDE.search(left):
        raise _TooLargeError("a % format with a width of a million or more")


def _check_call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse, before it runs, a str method call that would build a value past the bound."""
    name = getattr(function, "__name__", "")
    if name not in _WATCHED_METHODS:
        return
    owner = getattr(function, "__self__", None)
    values = [*args, *kwargs.values()]
    if name in {"format", "format_map"}:  # the sandbox's wrapper of str.format has no owner
        _check_size(max((v for v in values if isinstance(v, int)), default=0), f"str.{name}")
    if not isinstance(owner, str):
        return
    if name in {"ljust", "rjust", "center", "zfill", "expandtabs"}:
        _check_size(max((v for v in values if isinstance(v, int)), default=0), f"str.{name}")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        _check_size(_replaced_size(owner, args[0], args[1]), "str.replace")
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _check_size(_size(args[0]) + len(owner) * len(args[0]), "str.join")
    elif name in {"format", "format_map"} and _WIDE.search(owner):
        raise _TooLargeError("a format with a width of a million or more")


def _replaced_size(text: str, old: str, new: Any) -> int:
    count = text.count(old)
    return len(text) + count * (_size(new) - len(old))


def _bounded_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters that can multiply a value's size in one step, checked before they run."""

    center, indent = filters["center"], filters["indent"]
    join, replace = filters["join"], filters["replace"]
    fmt, total = filters["format"], filters["sum"]

    def bounded_center(value: Any, width: int = 80) -> Any:
        _check_size(width if isinstance(width, int) else 0, "the center filter")
        return center(value, width)

    def bounded_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
        lines = str(value).count("\n") + 1
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _check_size(_size(value) + lines * pad, "the indent filter")
        return indent(value, width, *args, **kwargs)

    def bounded_join(passed: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        _check_size(_size(items) + len(d) * len(items), "the join filter")
        return join(passed, items, d, attribute)

    def bounded_replace(passed: Any, value: Any, old: str, new: str, count: Any = None) -> Any:
        _check_size(_replaced_size(str(value), str(old), str(new)), "the replace filter")
        return replace(passed, value, old, new, count)

    def bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and _WIDE.search(value):
            raise _TooLargeError("a format with a width of a million or more")
        return fmt(value, *args, **kwargs)

    def bounded_sum(passed: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        items = list(iterable)
        _check_size(_size(items) + _size(start), "the sum filter")
        return total(passed, items, attribute, start)

    for bounded, original in ((bounded_join, join), (bounded_replace, replace),
                              (bounded_sum, total)):  # fmt: skip
        # Jinja2 passes each the same first argument (context, eval context or environment).
        setattr(bounded, "jinja_pass_arg", getattr(original, "jinja_pass_arg", None))  # noqa: B010
    return {"center": bounded_center, "indent": bounded_indent, "join": bounded_join,
            "replace": bounded_replace, "format": bounded_format, "sum": bounded_sum}  # fmt: skip


def _bounded_environment(base: type[Any]) -> type[Any]:
    """``base`` (a sandboxed Jinja2 environment) with the size checks above."""

    class Bounded(base):  # type: ignore[misc]
        intercepted_binops = frozenset({"*", "+", "**", "%"})

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.filters.update(_bounded_filters(self.filters))

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        # Every value the template reads is checked, so that a value grown step by step (a
        # namespace attribute doubled with ~ in a loop) stops as soon as it passes the bound.
        def getattr(self, obj: Any, attribute: str) -> Any:
            value = super().getattr(obj, attribute)
            _check_size(_size(value), "a value it builds")
            return value

        def getitem(self, obj: Any, argument: Any) -> Any:
            value = super().getitem(obj, argument)
            _check_size(_size(value), "a value it builds")
            return value

        def wrap_str_format(self, value: Any) -> Any:
            owner = getattr(value, "__self__", None)
            if isinstance(owner, str) and _WIDE.search(owner):
                raise _TooLargeError("a format with a width of a million or more")
            return super().wrap_str_format(value)

        def call(self, context: Any, function: Any, /, *args: Any, **kwargs: Any) -> Any:
            _check_call(function, args, kwargs)
            return super().call(context, function, *args, **kwargs)

    return Bounded
