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
``template_bounds.py``. Files read by ``line()`` must be regular files of at most
:data:`MAX_LINE_FILE_BYTES`. ``Templates(files=False)`` compiles without ``line()``, for templates
from sources trusted less than the config file (pod annotations, :mod:`warmgate.pod_config`).
"""

from __future__ import annotations

import random as _random
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from warmgate.errors import ConfigError, TemplateError
from warmgate.template_bounds import (
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


Variables = Mapping[str, str]
"""Values a template may name besides the functions: a journey's captures and secrets."""
_Render = Callable[[Variables | None], str]


class Template(Protocol):
    """Something that renders to a string, once per request."""

    def render(self, variables: Variables | None = None) -> str:
        """A freshly rendered value; ``variables`` are the names it may use besides functions."""
        ...


class Constant:
    """A value with no template markup: rendering returns it as is."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def render(self, variables: Variables | None = None) -> str:
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

    def __init__(self, *, files: bool = True) -> None:
        self._render: Callable[[str], _Render] | None = None
        self.functions = TEMPLATE_FUNCTIONS if files else FUNCTIONS_WITHOUT_FILES

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
            "uuid4": lambda: str(uuid.uuid4()),
            "line": _Lines(),
            "random": _random.random,
        }
        env.globals.update({name: functions[name] for name in self.functions})

        def compile_one(source: str) -> _Render:
            template = env.from_string(source)
            return lambda variables: bounded_join(template.generate(variables or {}))

        self._render = compile_one
        return compile_one

    def compile(self, source: str, where: str, variables: Variables | None = None) -> Template:
        """Compile ``source`` and render it once, so mistakes surface at start-up.

        ``where`` names the config field in error messages. ``variables`` are examples of the
        names it will be rendered with (the first render uses them).
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
            with deadline(FIRST_RENDER_SECONDS):
                render(variables)
        except TooLargeError as exc:
            raise TemplateError(_too_large(where, exc)) from None
        except TooSlowError:
            raise TemplateError(
                f"{where}: the template took more than {FIRST_RENDER_SECONDS:g}s to render once; "
                "it renders for every request, so make it do less (smaller loops)."
            ) from None
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        except jinja2.UndefinedError as exc:
            known = f"the functions are {', '.join(self.functions)}"
            if variables is not None:
                names = ", ".join(sorted(variables)) or "none"
                known += f", and the variables here (captured by earlier steps, secrets): {names}"
            raise TemplateError(f"{where}: {exc.message}; {known}.") from None
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

    def __init__(self, render: _Render, where: str) -> None:
        self._render = render
        self._where = where

    def render(self, variables: Variables | None = None) -> str:
        try:
            return within(RENDER_SECONDS, lambda: self._render(variables))
        except TooLargeError as exc:
            # Past start-up (a random choice can make one rendering larger than the first).
            raise TemplateError(_too_large(self._where, exc)) from None
        except TooSlowError:
            raise TemplateError(
                f"{self._where}: the template took more than {RENDER_SECONDS:g}s to render; "
                "it renders for every request, so make it do less (smaller loops, shorter "
                "values looped over)."
            ) from None


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
