"""Request templates: compiled once at start-up, rendered for every request.

A string without ``{{`` or ``{%`` is a constant and never touches Jinja2, so configs without
templates never import it (sidecar memory). Templates run in Jinja2's immutable sandbox with
strict undefined names and these functions:

- ``randint(a, b)``: a random integer, both ends included
- ``choice(items)``: a random element of a list
- ``uuid4()``: a random UUID string
- ``line(path)``: a random line of a text file (read once, blank lines skipped)
- ``random()``: a float in [0, 1)

A rendering is bounded in size (every render) and time (the first, at start-up): see
``template_bounds.py``. A template that is only a call of ``randint`` with two whole numbers,
or of ``uuid4()`` or ``random()``, with plain text around it (``/item/{{ randint(1, 500) }}``),
the usual parameter of a warm-up request, is read at start-up and rendered by a plain call of
the same function (:class:`_Call`): the same values Jinja2 would render from the same random
state, without the sandbox and the per-render timer, which cost a closed loop of SQL queries
a fifth of its client CPU (docs/benchmarks.md, "SQL: the driver against pgbench and
mysqlslap"). Its time and size are bounded by construction.

Files read by ``line()`` must be regular files of at most :data:`MAX_LINE_FILE_BYTES`.
``Templates(files=False)`` compiles without ``line()``, for templates from sources trusted less
than the config file (pod annotations, :mod:`warmgate.kube.pod_config`).

A template that uses a secret — it names a secret variable (a journey's secrets, what its steps
capture), or its text holds a known secret (a ``${VAR}`` expanded into it) — is *sensitive*: what
it renders may be the secret transformed (``| upper``, ``| reverse``, ``| b64encode``...), which
no redaction can recognise. So nothing it renders, and no message of an error raised while it
renders, is ever shown: its errors name the field, the kind of error and the template's own text
(:func:`hidden_render`, also for checks of the rendered value, such as a URL's host and port).
"""

from __future__ import annotations

import functools
import random as _random
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from warmgate.kernel.errors import ConfigError, TemplateError
from warmgate.kernel.files import read_text
from warmgate.kernel.redaction import Secrets
from warmgate.traffic.template_bounds import (
    FIRST_RENDER_SECONDS,
    MAX_RENDERED_CHARS,
    RENDER_SECONDS,
    TooLargeError,
    TooSlowError,
    bounded_environment,
    bounded_join,
    deadline,
    printable,
    within,
)

TEMPLATE_FUNCTIONS = ("randint", "choice", "uuid4", "line", "random")
FUNCTIONS_WITHOUT_FILES = tuple(name for name in TEMPLATE_FUNCTIONS if name != "line")
MAX_LINE_FILE_BYTES = 64 * 1024 * 1024
"""The largest file ``line()`` reads (it keeps the file's lines in memory)."""
SHOWN_SOURCE_CHARS = 200
"""The most of a template's own text an error about a sensitive template shows."""
_UNDEFINED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")
_PLAIN = r"[^{}\r\n]*"
"""Text around a call that Jinja2 copies as it is (no markup, no line break to trim)."""
_WHOLE = r"-?(?:0|[1-9][0-9]{0,17})"
"""An integer literal Jinja2 reads as the same number Python does."""
_CALL = re.compile(
    rf"(?P<before>{_PLAIN})\{{\{{\s*(?:randint\(\s*(?P<low>{_WHOLE})\s*,\s*(?P<high>{_WHOLE})\s*\)"
    rf"|(?P<nullary>uuid4|random)\(\s*\))\s*\}}\}}(?P<after>{_PLAIN})"
)
"""A template that is one call of a function with literal arguments, in plain text."""
_MAX_CALL_SOURCE = 10_000
"""The longest template read as a plain call (its text is copied into every rendering)."""


Variables = Mapping[str, str]
"""Values a template may name besides the functions: a journey's captures and secrets."""
_Render = Callable[[Variables | None], str]


class Template(Protocol):
    """Something that renders to a string, once per request."""

    @property
    def sensitive(self) -> bool:
        """Whether it uses a secret, so that nothing it renders may be shown."""
        ...

    @property
    def shown(self) -> str:
        """The template's own text as an error may show it (redacted, shortened)."""
        ...

    def render(self, variables: Variables | None = None) -> str:
        """A freshly rendered value; ``variables`` are the names it may use besides functions."""
        ...


class Constant:
    """A value with no template markup: rendering returns it as is."""

    __slots__ = ("value",)
    sensitive = False
    """A constant is shown as written; a known secret in it is redacted like any text."""

    def __init__(self, value: str) -> None:
        self.value = value

    @property
    def shown(self) -> str:
        """The value itself."""
        return self.value

    def render(self, variables: Variables | None = None) -> str:
        """The constant."""
        return self.value


class _Call:
    """A template that is one call of ``randint``, ``uuid4`` or ``random`` with literal
    arguments, in plain text: rendered by calling the function Jinja2 would call."""

    __slots__ = ("_after", "_before", "_call", "shown")
    sensitive = False
    """It names no variable, and a template whose text holds a secret is never one."""

    def __init__(self, before: str, call: Callable[[], object], after: str, shown: str) -> None:
        self._before = before
        self._call = call
        self._after = after
        self.shown = shown

    @classmethod
    def read(cls, source: str, functions: Collection[str]) -> _Call | None:
        """``source`` as a plain call, or ``None`` when it is anything else (Jinja2 renders it)."""
        found = _CALL.fullmatch(source) if len(source) <= _MAX_CALL_SOURCE else None
        if found is None:
            return None
        call: Callable[[], object]
        if found["nullary"] is not None:
            name = found["nullary"]
            call = _random.random if name == "random" else _uuid4
        else:
            name, low, high = "randint", int(found["low"]), int(found["high"])
            if low > high:
                return None  # Jinja2 reports the error at the first render
            call = functools.partial(_random.randint, low, high)
        if name not in functions:
            return None
        return cls(found["before"], call, found["after"], source)

    def render(self, variables: Variables | None = None) -> str:
        """The text around the call, and a fresh value of the call."""
        return f"{self._before}{self._call()}{self._after}"


def _uuid4() -> str:
    return str(uuid.uuid4())


class _Lines:
    """Random lines of files, each file read once."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}

    def __call__(self, path: str) -> str:
        lines = self._files.get(path)
        if lines is None:
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
    """Compiles template strings into renderers sharing one sandboxed environment.

    ``secrets`` are the values known as secrets: a template whose text holds one is sensitive.
    """

    def __init__(self, *, files: bool = True, secrets: Secrets | None = None) -> None:
        self._render: Callable[[str], _Render] | None = None
        self.functions = TEMPLATE_FUNCTIONS if files else FUNCTIONS_WITHOUT_FILES
        self.secrets = secrets or Secrets()

    def _environment_compiler(self) -> Callable[[str], _Render]:
        if self._render is not None:
            return self._render
        import jinja2  # only configs that use templates pay for Jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = bounded_environment(ImmutableSandboxedEnvironment)(
            undefined=jinja2.StrictUndefined, autoescape=False, finalize=printable
        )
        # lipsum(n) writes n paragraphs, and nobody warms an app with lorem ipsum.
        env.globals.pop("lipsum", None)
        functions: dict[str, Any] = {
            "randint": _random.randint,
            "choice": _choice,
            "uuid4": _uuid4,
            "line": _Lines(),
            "random": _random.random,
        }
        env.globals.update({name: functions[name] for name in self.functions})

        def compile_one(source: str) -> _Render:
            template = env.from_string(source)
            return lambda variables: bounded_join(template.generate(variables or {}))

        self._render = compile_one
        return compile_one

    def compile(
        self,
        source: str,
        where: str,
        variables: Variables | None = None,
        private: Collection[str] = (),
    ) -> Template:
        """Compile ``source`` and render it once, so mistakes surface at start-up.

        ``where`` names the config field in error messages. ``variables`` are examples of the
        names it will be rendered with (the first render uses them); those in ``private`` hold
        secrets (a journey's secrets and captures), and a template naming one is sensitive.
        """
        if "{{" not in source and "{%" not in source:
            return Constant(source)
        if variables is None and not self.secrets.holds(source):
            call = _Call.read(source, self.functions)
            if call is not None:
                return call
        import jinja2

        try:
            render = self._environment_compiler()(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{where}: the template has a syntax error at line {exc.lineno}: {exc.message}."
            ) from None
        sensitive = self.secrets.holds(source) or bool(
            private and referenced_names(source) & set(private)
        )
        shown = self.secrets.shorten(source, SHOWN_SOURCE_CHARS)
        compiled = _Compiled(render, where, shown, sensitive)
        try:
            self._first_render(render, source, where, variables)
        except _FirstRenderError as exc:
            if exc.kind is None or not sensitive:
                raise TemplateError(str(exc)) from None
            failure = f"the template failed to render ({exc.kind})"
            raise TemplateError(hidden_render(where, compiled, failure)) from None
        return compiled

    def _first_render(
        self, render: _Render, source: str, where: str, variables: Variables | None
    ) -> None:
        """Render once, within the bounds; a :class:`_FirstRenderError` saying what failed."""
        import jinja2

        try:
            with deadline(FIRST_RENDER_SECONDS):
                render(variables)
        except TooLargeError as exc:
            raise _FirstRenderError(_too_large(where, exc)) from None
        except TooSlowError:
            raise _FirstRenderError(
                f"{where}: the template took more than {FIRST_RENDER_SECONDS:g}s to render once; "
                "it renders for every request, so make it do less (smaller loops)."
            ) from None
        except TemplateError as exc:  # line(): about a file the template names
            raise _FirstRenderError(f"{where}: {exc}") from None
        except jinja2.UndefinedError as exc:
            known = f"the functions are {', '.join(self.functions)}"
            if variables is not None:
                listed = ", ".join(sorted(variables)) or "none"
                known += f", and the variables here (captured by earlier steps, secrets): {listed}"
            # "'x' is undefined" names a name of the template; other messages may hold a value
            # ("'dict object' has no attribute '<value>'").
            undefined = _UNDEFINED_NAME.fullmatch(exc.message or "")
            named = undefined is not None and undefined[1] in referenced_names(source)
            kind = None if named else "UndefinedError"
            raise _FirstRenderError(f"{where}: {exc.message}; {known}.", kind) from None
        except jinja2.TemplateError as exc:
            raise _FirstRenderError(
                f"{where}: the template failed to render: {exc}.", type(exc).__name__
            ) from None
        # The template is the user's code and this is where it first runs: whatever it raises
        # (ZeroDivisionError, OverflowError, ...) is a mistake in the config, not in warmgate.
        except Exception as exc:  # noqa: BLE001 - the boundary where user code runs
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _FirstRenderError(
                f"{where}: the template failed to render ({detail}); fix the expression.",
                type(exc).__name__,
            ) from None


class _FirstRenderError(Exception):
    """The first render failed; ``kind`` is the error's type when the message may show what
    the template rendered, ``None`` when it shows nothing rendered."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class _Compiled:
    __slots__ = ("_render", "sensitive", "shown", "where")

    def __init__(self, render: _Render, where: str, shown: str, sensitive: bool) -> None:
        self._render = render
        self.where = where
        self.shown = shown
        self.sensitive = sensitive

    def render(self, variables: Variables | None = None) -> str:
        """Render for a request; a sensitive template's errors say nothing it rendered."""
        try:
            return within(RENDER_SECONDS, lambda: self._render(variables))
        except TooLargeError as exc:
            # Past start-up (a random choice can make one rendering larger than the first).
            raise TemplateError(_too_large(self.where, exc)) from None
        except TooSlowError:
            raise TemplateError(
                f"{self.where}: the template took more than {RENDER_SECONDS:g}s to render; "
                "it renders for every request, so make it do less (smaller loops, shorter "
                "values looped over)."
            ) from None
        except Exception as exc:
            if not self.sensitive:
                raise
            # A later render failed where the first did not (a branch taken at random).
            failure = f"the template failed to render ({type(exc).__name__})"
            raise TemplateError(hidden_render(self.where, self, failure)) from None


def hidden_render(where: str, template: Template, failure: str) -> str:
    """The error of a sensitive ``template`` in the field ``where``: ``failure`` says what
    went wrong without anything rendered, and the template's own text stands in for it."""
    return (
        f"{where}: {failure}; what it renders is not shown, because the template uses a "
        f"secret: '{template.shown}'."
    )


def _choice(items: Sequence[Any]) -> Any:
    if not items:
        raise ValueError("choice() needs a non-empty list")
    return _random.choice(items)


def _too_large(where: str, exc: TooLargeError) -> str:
    return (
        f"{where}: the template would render more than {MAX_RENDERED_CHARS:,} characters "
        f"({exc}); render less."
    )


def referenced_names(source: str) -> frozenset[str]:
    """The global names a template refers to anywhere, run or not (a branch never taken counts).

    A :class:`TemplateError` when it does not parse.
    """
    if "{{" not in source and "{%" not in source:
        return frozenset()
    import jinja2
    from jinja2 import meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        # Finding the names runs Jinja2's code generator, which folds constant expressions: the
        # bounded environment refuses to fold what would be too large ('a' * 10**9).
        tree = bounded_environment(ImmutableSandboxedEnvironment)().parse(source)
        names = meta.find_undeclared_variables(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"the template has a syntax error at line {exc.lineno}: {exc.message}."
        ) from None
    return frozenset(names)
