"""typer options, built one way for every command.

An option's flag comes from its parameter's name (``min_count`` -> ``--min-count``), and it also
reads the environment variable of the same name under its command's prefix
(:func:`env_name`): ``WARMGATE_`` for the gate's commands, ``WARMGATE_INJECT_``,
``WARMGATE_PATHS_`` and ``WARMGATE_WEBHOOK_`` for ``inject``, ``paths`` and ``webhook``, so that
``WARMGATE_PORT`` set for ``run`` changes nothing the others do.

:func:`with_config_flags` gives a command ``--config`` and one option per flag of
:data:`~warmgate.config.flags.CONFIG_FLAGS`; the command receives their values as ``flags``.
``WARMGATE_URL`` holds one URL, or several on separate lines: a URL template may contain spaces
(``{{ randint(1, 1000) }}``), so it is never split on whitespace.
"""

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from warmgate.config.flags import CONFIG_FLAGS

F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "WARMGATE_"
"""The prefix of the environment variables of ``run``, ``prime``, ``validate`` and the rest."""


def option_name(name: str) -> str:
    """The flag of a parameter: ``min_count`` -> ``--min-count``."""
    return "--" + name.replace("_", "-")


def env_name(name: str, prefix: str = PREFIX) -> str:
    """The environment variable of a parameter: ``min_count`` -> ``WARMGATE_MIN_COUNT``."""
    return prefix + name.upper()


def option(name: str, help: str, *short: str, prefix: str = PREFIX, **kw: Any) -> Any:
    """The typer option of parameter ``name``: its flag, any ``short`` ones, its variable."""
    return typer.Option(option_name(name), *short, envvar=env_name(name, prefix), help=help, **kw)


def urls_from_env(value: str) -> list[str]:
    """The URLs in a ``WARMGATE_URL`` value: one a line, blank lines skipped."""
    return [line.strip() for line in value.splitlines() if line.strip()]


def _config_parameters() -> list[inspect.Parameter]:
    config = Annotated[Path | None, option("config", "YAML config file.", "-c")]
    parameters = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=config)
    ]
    for flag in CONFIG_FLAGS:
        # typer would split WARMGATE_URL on whitespace; with_config_flags reads it by lines.
        envvar = None if flag.name == "url" else env_name(flag.name)
        typer_option = typer.Option(option_name(flag.name), envvar=envvar, help=flag.help)
        annotation = Annotated[flag.kind | None, typer_option]  # type: ignore[name-defined]
        parameters.append(
            inspect.Parameter(
                flag.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
            )
        )
    return parameters


def with_config_flags(command: F) -> F:
    """Give ``command`` ``--config`` and every config flag; it receives them as ``flags: dict``
    of flag values (``None`` for a flag not given)."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "flags"]
    config_parameters = _config_parameters()
    names = {p.name for p in config_parameters}

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        if not flags.get("url"):
            flags["url"] = urls_from_env(os.environ.get(env_name("url"), ""))
        return command(flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + config_parameters)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
