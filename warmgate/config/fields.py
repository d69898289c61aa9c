"""The shared parts of the configuration models: the base model, field types and validators.

Every model of the config derives from :class:`StrictModel`: frozen, refusing unknown keys,
infinity and NaN. The field types read what people write (:data:`Duration`: ``500ms``, ``10s``;
:data:`LatencyOrAuto`) and the validators here are shared by several models: URLs
(:func:`checked_http_url`, :func:`http_endpoint`), header names and values
(:func:`header_values`), positive durations. Each raises ``ValueError`` with a sentence saying
how to fix the input, which pydantic reports under the field's name.

The lowest module of the config models: it imports only pydantic and ``kernel/``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from warmgate.kernel.redaction import mask_url
from warmgate.kernel.units import parse_duration

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h)\s*)+$"
MAX_RATE = 1e6
"""Requests per second: no one process sends more, so a larger value is a typo."""
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header value may hold: a CR or LF would end the header (tab is allowed)."""


class StrictModel(BaseModel):
    """The base of every config model: frozen, unknown keys refused, no infinity or NaN."""

    # Infinity and NaN are never what anyone means (weight: .inf would starve every other target).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _duration(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a validation error
            f"'{value}' is not a duration; write a number and a unit, such as '10s'"
        )
    if isinstance(value, int | float):
        raise ValueError(f"'{value}' has no unit; write '{value}ms' or '{value}s'")  # noqa: TRY004
    if isinstance(value, str):
        return parse_duration(value)
    return value


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["500ms", "10s"]}),
]
"""Seconds, written with a unit in the config: ``500ms``, ``10s``, ``5m``, ``1h``."""


def _latency_or_auto(value: object) -> object:
    if isinstance(value, str) and value.strip() == "auto":
        return "auto"
    return _duration(value)


def positive(seconds: float, example: str) -> float:
    """``seconds``, or a ValueError unless it is longer than 0 (``example`` shows a fix)."""
    if seconds <= 0:
        raise ValueError(f"must be longer than 0s; write a duration such as '{example}'")
    return seconds


def http_endpoint(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of an http(s) URL, with the scheme's default port.

    Raises ``ValueError`` with a sentence saying how to fix the URL.
    """
    shown = mask_url(url)
    _refuse_userinfo(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(
            f"'{shown}' is not a valid URL ({str(exc)[0].lower()}{str(exc)[1:]}); write "
            "http://host:port/path, with an IPv6 host in brackets, such as http://[::1]:8080/"
        ) from None
    host_port = parts.netloc.rpartition("@")[2]
    port_text = host_port.rpartition("]")[2] if host_port.startswith("[") else host_port
    port_text = port_text.partition(":")[2]
    if port_text and not (re.fullmatch(r"[0-9]{1,5}", port_text) and 1 <= int(port_text) <= 65535):
        raise ValueError(
            f"'{shown}' has port '{port_text}'; write a port from 1 to 65535, or none for the "
            "scheme's default"
        )
    if not parts.hostname:
        raise ValueError(f"'{shown}' has no host; write it as http://host:port/path")
    tls = parts.scheme.lower() == "https"
    return parts.hostname, int(port_text) if port_text else (443 if tls else 80), tls


def _refuse_userinfo(url: str) -> None:
    """Refuse ``user:password@`` in an http(s) URL, even with an unencoded ``/`` in the password.

    ``http://bob:pa/ss@host/`` parses as host ``bob`` with the password in the path, so the
    authority alone cannot tell; what follows ``user:`` up to the first ``/`` being a port
    number is what tells ``http://host:8080/path@x`` (a path with an ``@``) apart.
    """
    rest = url.partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo = re.match(r"[^:/?#@[\s]*:([^@\s]*)@", rest)
    if "@" in authority or (
        userinfo and not re.fullmatch(r"[0-9]+", re.split(r"[/?#]", userinfo[1])[0])
    ):
        raise ValueError(
            f"'{mask_url(url)}' carries a user or password, which would show wherever the URL "
            "does; remove it and send the credentials in a header, such as "
            "headers: {Authorization: 'Basic ${APP_BASIC_AUTH}'}"
        )


def header_values(headers: dict[str, str], what: str) -> dict[str, str]:
    """``headers`` unchanged, or a ValueError naming a header that could never be sent."""
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a header name; use letters, digits and dashes, such as "
                "X-Request-Id"
            )
        if CONTROL_CHARACTERS.search(value):
            raise ValueError(
                f"the value of {what} {name} contains a line break or control character, which "
                "would end the header; remove it"
            )
    return headers


def checked_http_url(url: str) -> str:
    """``url`` stripped, or a ValueError unless it is http(s) with a valid host and port.

    A host or port that is itself a template is checked once rendered, when targets compile.
    """
    url = url.strip()
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise ValueError(f"'{mask_url(url)}' must start with http:// or https://")
    if CONTROL_CHARACTERS.search(url) or "\t" in url:
        raise ValueError(
            f"'{mask_url(url)}' contains a control character (a line break or tab); remove it"
        )
    _refuse_userinfo(url)
    authority = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if "{{" not in authority and "{%" not in authority:
        http_endpoint(url)
    return url


LatencyOrAuto = Annotated[
    float | Literal["auto"],
    BeforeValidator(_latency_or_auto),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"const": "auto"},
            ]
        }
    ),
]
