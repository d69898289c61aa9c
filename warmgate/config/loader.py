"""Loading the configuration: a pipeline from YAML, environment and flags to one frozen model.

read YAML -> expand ``${VAR}`` from the environment -> lay the command-line overrides on top ->
validate. Every mistake becomes a :class:`ConfigError` whose message names the field and says
how to fix it; unknown keys get a did-you-mean. The secrets met on the way (secret-looking
``${VAR}`` values, passwords in URLs, a journey's secrets, read here from the environment or
their files by :func:`journey_secret_values`) come back with the config, to be redacted
everywhere. Reading goes through the bounded readers of :mod:`warmgate.kernel.files` and
:mod:`warmgate.config.bounded_yaml`; this module opens no connection.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TextIO, Union

from pydantic import BaseModel, ValidationError

from warmgate.config.advice import config_warnings
from warmgate.config.journey import Journey
from warmgate.config.model import Config
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.files import read_text
from warmgate.kernel.redaction import SECRET_NAME, Secrets, shorten, sql_url_secrets, url_passwords

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""A ``${VAR}`` or ``${VAR:-default}`` reference, expanded in every string of a config file."""


MAX_EXPANSION_CHARS = 1024 * 1024
"""Characters that ``${VAR}`` references may add to a config in all, so none can exhaust memory."""
MAX_SECRET_BYTES = 64 * 1024
"""The largest journey secret file read."""


def expand_env(data: Any, environ: Mapping[str, str], secrets: set[str], path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``data``.

    Values of variables whose names look secret (PASSWORD, TOKEN, KEY, ...) go into ``secrets``.
    """
    return _expand(data, environ, secrets, path, [MAX_EXPANSION_CHARS])


def _expand(
    data: Any, environ: Mapping[str, str], secrets: set[str], path: str, budget: list[int]
) -> Any:
    if isinstance(data, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = environ.get(name)
            if value is None:
                if default is None:
                    raise ConfigError(
                        f"{path or 'the config'} uses ${{{name}}}, which is not set in the "
                        f"environment; export {name} or write ${{{name}:-default}}."
                    )
                value = default
            budget[0] -= len(value)
            if budget[0] < 0:
                raise ConfigError(
                    f"{path or 'the config'}: the ${{VAR}} references add more than "
                    f"{MAX_EXPANSION_CHARS // 1024} KiB to the config; put long values in a file "
                    "read with line()."
                )
            if SECRET_NAME.search(name):
                secrets.add(value)
            return value

        return ENV_REFERENCE.sub(substitute, data)
    if isinstance(data, Mapping):
        return {
            key: _expand(value, environ, secrets, _join(path, str(key)), budget)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            _expand(value, environ, secrets, f"{path}[{index}]", budget)
            for index, value in enumerate(data)
        ]
    return data


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base``; a mapping merges, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML config file, or a ConfigError saying what is wrong with it.

    Reading is bounded in size, nesting and alias expansion (see ``bounded_yaml.py``).
    """
    from warmgate.config import bounded_yaml  # only configs from a file need a YAML parser

    text = read_text(path, "--config", bounded_yaml.MAX_CONFIG_BYTES, bounded_yaml.CONFIG.advice)
    return parse_yaml(text, f"--config: {path}")


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The mapping in a config's YAML text (a file's, or a ConfigMap's key), within the same
    bounds as a file; ``source`` names it in errors (``--config: warmgate.yaml``)."""
    from warmgate.config import bounded_yaml

    if len(text.encode(errors="replace")) > bounded_yaml.MAX_CONFIG_BYTES:
        size = bounded_yaml.MAX_CONFIG_BYTES // 1024
        raise ConfigError(f"{source} is larger than {size} KiB, {bounded_yaml.CONFIG.advice}.")
    data = bounded_yaml.parse(text, source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must hold a mapping with a 'targets' list, not a {type(data).__name__}."
        )
    return data


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, Secrets]:
    """Build the config from an optional YAML file and command-line overrides."""
    raw: dict[str, Any] = read_yaml(path) if path is not None else {}
    return config_from_mapping(raw, overrides, environ)


def config_from_mapping(
    raw: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, Secrets]:
    """:func:`load_config` after the file is read: ``${VAR}``, the overrides, the model."""
    secret_values: set[str] = set()
    raw = expand_env(raw, os.environ if environ is None else environ, secret_values)
    raw = merge(raw, overrides or {})
    secrets = Secrets(secret_values)
    if "targets" not in raw:
        raise ConfigError(
            "no targets: give at least one --url, or a config file (--config) with a "
            "'targets' list."
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(secrets.redact(format_validation_error(exc, secrets))) from None
    for target in config.targets:
        if target.http is not None and target.http.url is not None:
            secrets.values.update(url_passwords(target.http.url))
        if target.journey is not None:
            environment = os.environ if environ is None else environ
            secrets.values.update(journey_secret_values(target.journey, environment).values())
        if target.sql is not None:
            secrets.values.update(sql_url_secrets(target.sql.url))
    return config, secrets


def journey_secret_values(journey: Journey, environ: Mapping[str, str]) -> dict[str, str]:
    """The journey's secrets by name, read from ``environ`` or their files.

    Raises :class:`ConfigError` naming the secret when one is missing or empty.
    """
    values = {}
    for name, secret in journey.secrets.items():
        where = f"journey secret '{name}'"
        if secret.env is not None:
            value = environ.get(secret.env)
            if value is None:
                raise ConfigError(
                    f"{where} reads ${secret.env}, which is not set in the environment; export "
                    "it (from a Kubernetes Secret, say) or read it from a file with file:."
                )
        else:
            assert secret.file is not None  # noqa: S101 - the model holds one of the two
            value = read_text(secret.file, where, MAX_SECRET_BYTES)
            value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            raise ConfigError(f"{where} is empty; give it a value.")
        values[name] = value
    return values


def load_for_command(
    path: Path | None, overrides: Mapping[str, Any], stream: TextIO | None = None
) -> tuple[Config, Secrets]:
    """:func:`load_config`, then a ``warmgate: warning:`` line on stderr per
    :func:`~warmgate.config.advice.config_warnings`."""
    config, secrets = load_config(path, overrides)
    for warning in config_warnings(config):
        print(f"warmgate: warning: {secrets.redact(warning)}.", file=stream or sys.stderr)
    return config, secrets


def format_validation_error(exc: ValidationError, secrets: Secrets | None = None) -> str:
    """One sentence per problem, each naming the field: ``gate.p95: '200' has no unit; ...``.

    A value it quotes is shortened after ``secrets`` are redacted from it.
    """
    lines = []
    for error in exc.errors(include_url=False):
        location = _location(error["loc"])
        if error["type"] == "extra_forbidden":
            key = str(error["loc"][-1])
            location = _location(error["loc"][:-1])
            known = _known_fields(error["loc"][:-1])
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}."
            lines.append(f"{location}: unknown key '{key}'; {hint}")
            continue
        message = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "finite_number":
            message = (
                f"'{_shown(error.get('input'), secrets)}' is not a finite number; write a number "
                "such as 10"
            )
        elif error["type"] == "literal_error":
            message = (
                f"'{_shown(error.get('input'), secrets)}' is not allowed; "
                f"{message[0].lower()}{message[1:]}"
            )
        # A check across sections (the model's own validator) names its fields itself.
        line = f"{location}: {message}." if error["loc"] else f"{message}."
        lines.append(line.replace("..", "."))
    problems = "\n".join(f"  - {line}" for line in lines)
    count = len(lines)
    return f"the configuration has {count} problem{'s' if count != 1 else ''}:\n{problems}"


def _shown(value: Any, secrets: Secrets | None) -> str:
    """``value`` as text, redacted, then at most 80 characters of it."""
    return shorten(str(value), 80, secrets)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("function-") or part in {"float", "constrained-float"}:
            continue
        else:
            text = _join(text, part)
    return text or "the config"


def _known_fields(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model found at ``loc`` (for did-you-mean)."""
    model: type[BaseModel] = Config
    key_next = False  # the part after a map field is one of its keys (a capture's name)
    for part in loc:
        if isinstance(part, int) or key_next:
            key_next = False
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if field is None or found is None:
            return []
        key_next = _is_map(field.annotation)
        model = found
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _is_map(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_map(arg) for arg in typing.get_args(annotation))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, dict, Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
