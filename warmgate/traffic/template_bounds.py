"""Bounds on what a request template may build: size before it is built, time at start-up.

Theory of operation: a template is the user's code, run at start-up and for every request, in
Jinja2's immutable sandbox. The sandbox stops it from touching the system, not from building a
400 MB string or looping for minutes, so three checks are added:

1. Size, before the value exists. The operators and methods that can build a huge value in one
   step (``*``, ``+``, ``**``, ``%``, ``str.ljust``/``center``/``zfill``/``replace``/``join``/
   ``format`` and the ``center``/``indent``/``join``/``replace``/``format``/``sum`` filters)
   estimate the size of their result first, and every value the template reads or prints is
   measured as printing would expand it (:func:`size`, which stops counting past the bound).
   Past :data:`MAX_RENDERED_CHARS`, :class:`TooLargeError`.
2. Output, as it streams: a rendering is joined part by part and stops past the same bound
   (:func:`bounded_join`), at every render.
3. Time, at the first render: a trace function interrupts the template's own code past
   :data:`FIRST_RENDER_SECONDS` (:func:`deadline`), so even an empty loop ends.
4. Time, at every later render (:func:`within`): a timer signal interrupts a render that runs
   past :data:`RENDER_SECONDS`. Tracing would triple the cost of every render (about 70 µs
   more); the timer costs two system calls. It matters because a render runs on the event loop:
   a template slow only on some values (a random branch, a long captured value looped over
   twice) would otherwise hold the loop, and with it the deadline and SIGTERM, for hours. The
   timer is the process's ``SIGALRM``; it works where signals do, on the main thread, which is
   where the loop of ``prime`` and of ``run``'s primer runs (elsewhere renders are not timed).
"""

from __future__ import annotations

import contextlib
import gc
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

MAX_RENDERED_CHARS = 1_000_000
"""The most characters one rendering (a URL, a header, a body, a parameter) may produce."""
FIRST_RENDER_SECONDS = 0.5
"""The first render, at start-up, must finish within this long (a usual one takes microseconds)."""
RENDER_SECONDS = 0.25
"""Every later render (one per request and template) must finish within this long."""

_MAX_POWER_BITS = 4096
_WATCHED_METHODS = frozenset(
    {"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "format", "format_map"}
)
_WIDE = re.compile(r"\d{7,}")  # a field width or precision of a million or more


class TooLargeError(Exception):
    """A value would pass :data:`MAX_RENDERED_CHARS`."""


class TooSlowError(Exception):
    """The first render ran past :data:`FIRST_RENDER_SECONDS`."""


def bounded_join(parts: Iterator[str]) -> str:
    """The rendered parts joined, or :class:`TooLargeError` as soon as they pass the bound."""
    total = 0
    kept = []
    for part in parts:
        total += len(part)
        if total > MAX_RENDERED_CHARS:
            raise TooLargeError("its output")
        kept.append(part)
    return "".join(kept)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`TooSlowError` in the code running in this block once ``seconds`` have passed.

    A trace function sees every line the template's compiled code runs and every call, so even
    an empty loop is interrupted; it costs time only here, at the one render at start-up.
    """
    end = time.monotonic() + seconds
    previous = sys.gettrace()
    # A collection would run foreign code under the trace (gc callbacks, finalizers), where a
    # TooSlowError is only printed as "ignored", and CPython then drops the trace function:
    # the template would run on unbounded. Cyclic garbage can wait the half second.
    collecting = gc.isenabled()
    gc.disable()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > end:
            raise TooSlowError
        # Line by line only in the template's own code: tracing every line of the library code
        # it calls (and of the size checks here) would make the render itself slow.
        return trace if frame.f_code.co_filename == "<template>" else None

    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)
        if collecting:
            gc.enable()


def within(seconds: float, render: Callable[[], str]) -> str:
    """``render()``, or :class:`TooSlowError` once it has run ``seconds`` (main thread only).

    The timer is cancelled before this returns, and a ``SIGALRM`` that arrived just before that
    raises here, not in the caller's code after it. Whoever used ``SIGALRM`` before (a test
    runner's timeout) gets its handler back, and its timer, less the time spent here.
    """
    if threading.current_thread() is not threading.main_thread():
        return render()  # signals reach only the main thread
    previous = signal.signal(signal.SIGALRM, _too_slow)
    delay, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        return render()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _settle()
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if delay:
            left = max(delay - (time.monotonic() - started), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def _too_slow(_signum: int, _frame: FrameType | None) -> None:
    raise TooSlowError


def _settle() -> None:
    """A Python call: entering it runs any signal handler still pending (CPython checks at
    every function entry), so a late ``SIGALRM`` raises inside :func:`within`."""


def size(value: Any) -> int:
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


def printable(value: Any) -> Any:
    """What ``{{ value }}`` may print: a value whose printed form would pass the bound is
    refused before ``str()`` builds it."""
    if isinstance(value, int | float) or value is None:  # the usual case, once per request
        return value
    _check_size(size(value), "a value it prints")
    return value


def _check_size(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARS:
        raise TooLargeError(what)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for items, count in ((left, right), (right, left)):
            if isinstance(count, int) and isinstance(items, str | bytes | list | tuple):
                _check_size(size(items) * count, "a repetition with *")
    elif operator == "+":
        _check_size(size(left) + size(right), "a concatenation with +")
    elif operator == "**":
        integers = isinstance(left, int) and isinstance(right, int) and right > 0
        if integers and left.bit_length() * right > _MAX_POWER_BITS:
            raise TooLargeError(f"a power with {_MAX_POWER_BITS}+ bits")
    elif operator == "%" and isinstance(left, str) and _WIDE.search(left):
        raise TooLargeError("a % format with a width of a million or more")


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
        _check_size(size(args[0]) + len(owner) * len(args[0]), "str.join")
    elif name in {"format", "format_map"} and _WIDE.search(owner):
        raise TooLargeError("a format with a width of a million or more")


def _replaced_size(text: str, old: str, new: Any) -> int:
    count = text.count(old)
    return len(text) + count * (size(new) - len(old))


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
        _check_size(size(value) + lines * pad, "the indent filter")
        return indent(value, width, *args, **kwargs)

    def bounded_join(passed: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        _check_size(size(items) + len(d) * len(items), "the join filter")
        return join(passed, items, d, attribute)

    def bounded_replace(passed: Any, value: Any, old: str, new: str, count: Any = None) -> Any:
        _check_size(_replaced_size(str(value), str(old), str(new)), "the replace filter")
        return replace(passed, value, old, new, count)

    def bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and _WIDE.search(value):
            raise TooLargeError("a format with a width of a million or more")
        return fmt(value, *args, **kwargs)

    def bounded_sum(passed: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        items = list(iterable)
        _check_size(size(items) + size(start), "the sum filter")
        return total(passed, items, attribute, start)

    for bounded, original in ((bounded_join, join), (bounded_replace, replace),
                              (bounded_sum, total)):  # fmt: skip
        # Jinja2 passes each the same first argument (context, eval context or environment).
        setattr(bounded, "jinja_pass_arg", getattr(original, "jinja_pass_arg", None))  # noqa: B010
    return {"center": bounded_center, "indent": bounded_indent, "join": bounded_join,
            "replace": bounded_replace, "format": bounded_format, "sum": bounded_sum}  # fmt: skip


def bounded_environment(base: type[Any]) -> type[Any]:
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
            _check_size(size(value), "a value it builds")
            return value

        def getitem(self, obj: Any, argument: Any) -> Any:
            value = super().getitem(obj, argument)
            _check_size(size(value), "a value it builds")
            return value

        def wrap_str_format(self, value: Any) -> Any:
            owner = getattr(value, "__self__", None)
            if isinstance(owner, str) and _WIDE.search(owner):
                raise TooLargeError("a format with a width of a million or more")
            return super().wrap_str_format(value)

        def call(self, context: Any, function: Any, /, *args: Any, **kwargs: Any) -> Any:
            _check_call(function, args, kwargs)
            return super().call(context, function, *args, **kwargs)

    return Bounded
