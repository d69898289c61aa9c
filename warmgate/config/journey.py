"""Journeys: a target made of ordered HTTP steps that each virtual user runs, then starts again.

A virtual user is one worker of the load (one concurrency slot). It runs the steps in order,
one request per step; the values its captures extract from an answer (a token, a CSRF field)
are template variables of the later steps; at the end of the steps it starts again with no
variables and an empty cookie jar. So a journey can carry a session for one iteration, while no
session passes from one virtual user to another or from one iteration to the next.

Each judged step is one sample for the gate, under the target's name; a step marked
``judged: false`` (a login) is sent but not counted. A step that fails (an unexpected status, a
timeout, a capture that finds nothing) ends the iteration: each judged step left in it counts as
a failure carrying the first failure's reason, so the reason reaches the gate, the logs and the
report. Read-only by default: a step whose method is not GET or HEAD is refused unless the
journey lists that method in ``allow_methods``.

This module holds the configuration models only, and imports pydantic, the config models below
it, ``kernel/`` and the pure ``decide/``: the pure engine (captures, JSON paths, one virtual
user's progress) is :mod:`warmgate.decide.walk` and the I/O :mod:`warmgate.traffic.web.journey`.
A journey in words is :func:`warmgate.config.describe.describe_journey`; its secrets are read by
:func:`warmgate.config.loader.journey_secret_values`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from warmgate.config.fields import StrictModel
from warmgate.config.http_target import HttpTarget
from warmgate.decide.walk import JsonPathError, RegexError, compile_regex, parse_json_path

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
"""Methods a step may use without ``allow_methods``."""
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_RESERVED = frozenset({"randint", "choice", "uuid4", "line", "random", "range", "dict", "loop"})


class Capture(StrictModel):
    """Where a step's answer holds a value for later steps: exactly one of the four."""

    json_path: str | None = Field(
        None,
        alias="json",
        description=(
            "A JSON path into the body, such as $.token or $.user['id'] or $.items[0].id: "
            "names and list indexes only."
        ),
    )
    header: str | None = Field(None, description="A response header's name, such as Location.")
    cookie: str | None = Field(
        None, description="A cookie's name; its value in the iteration's cookie jar."
    )
    regex: str | None = Field(
        None,
        description=(
            "A regular expression (RE2 syntax: no backreferences or lookarounds, matched in "
            "linear time) searched in the body; the value is its first group, or the whole "
            'match without one. Example: name="csrf" value="([^"]+)"'
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Capture:
        given = [value for value in (self.json_path, self.header, self.cookie, self.regex) if value]
        if len(given) != 1:
            raise ValueError(
                "a capture takes exactly one of json, header, cookie or regex, such as "
                "{json: '$.token'}"
            )
        return self

    @field_validator("json_path")
    @classmethod
    def _json_path(cls, path: str | None) -> str | None:
        if path is not None:
            try:
                parse_json_path(path)
            except JsonPathError as exc:
                raise ValueError(str(exc)) from None
        return path

    @field_validator("regex")
    @classmethod
    def _regex(cls, regex: str | None) -> str | None:
        if regex is not None:
            try:
                compiled = compile_regex(regex)
            except RegexError as exc:
                raise ValueError(str(exc)) from None
            if compiled.groups > 1:
                raise ValueError(
                    f"'{regex}' has {compiled.groups} groups; keep one, the value, and make the "
                    "others non-capturing with (?:...)"
                )
        return regex

    def rule(self) -> tuple[str, str]:
        """``(kind, expression)``: ``("json", "$.token")``, ``("header", "Location")``."""
        if self.json_path:
            return "json", self.json_path
        if self.header:
            return "header", self.header
        if self.cookie:
            return "cookie", self.cookie
        return "regex", self.regex or ""

    def describe(self) -> str:
        """``$.token``, ``header Location``, ``cookie JSESSIONID``, ``regex '...'``."""
        if self.json_path:
            return self.json_path
        if self.header:
            return f"header {self.header}"
        if self.cookie:
            return f"cookie {self.cookie}"
        return f"regex '{self.regex}'"


class JourneySecret(StrictModel):
    """A secret for the steps' templates, read at start-up and redacted everywhere."""

    env: str | None = Field(None, description="An environment variable holding the value.")
    file: Path | None = Field(
        None, description="A file holding the value (a mounted Secret); one trailing newline goes."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> JourneySecret:
        if (self.env is None) == (self.file is None):
            raise ValueError(
                "a secret takes exactly one of env or file, such as {env: APP_PASSWORD} or "
                "{file: /var/run/secrets/app/password}"
            )
        return self


class JourneyStep(StrictModel):
    """One request of a journey."""

    name: str = Field(
        description="Name used in reasons and logs.", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
    )
    http: HttpTarget = Field(
        description="The request, as for a plain target; its templates may use captured values."
    )
    capture: dict[str, Capture] = Field(
        default_factory=dict,
        description=(
            "Values to extract from the answer, by variable name: {token: {json: $.token}}."
        ),
    )
    judged: bool = Field(True, description="Whether this step's answers count toward the gate.")

    @field_validator("capture")
    @classmethod
    def _names(cls, capture: dict[str, Capture]) -> dict[str, Capture]:
        for name in capture:
            _check_variable(name)
        return capture

    @model_validator(mode="after")
    def _plain_url(self) -> JourneyStep:
        if self.http.urls_file is not None:
            raise ValueError(
                f"step '{self.name}' has http.urls_file; a step sends one URL template, so "
                "write http.url"
            )
        if self.http.confirm_read_only:
            raise ValueError(
                f"step '{self.name}' sets http.confirm_read_only; in a journey, list the method "
                "in journey.allow_methods instead"
            )
        return self


class Journey(StrictModel):
    """Ordered HTTP steps that each virtual user runs in turn, then starts again."""

    steps: list[JourneyStep] = Field(description="The steps, in order.", min_length=1)
    allow_methods: list[str] = Field(
        default_factory=list,
        description=(
            "Methods other than GET and HEAD that steps may use, such as [POST] for a login. "
            "Such steps can change state: validate lists them."
        ),
    )
    secrets: dict[str, JourneySecret] = Field(
        default_factory=dict,
        description=(
            "Template variables read from the environment or a file at start-up, redacted on "
            "every surface: {password: {env: APP_PASSWORD}}."
        ),
    )

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        for method in methods:
            if not re.fullmatch(r"[A-Za-z]+", method):
                raise ValueError(f"'{method}' is not an HTTP method; write POST, say")
        return [method.upper() for method in methods]

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, secrets: dict[str, JourneySecret]) -> dict[str, JourneySecret]:
        for name in secrets:
            _check_variable(name)
        return secrets

    @model_validator(mode="after")
    def _steps(self) -> Journey:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"two steps are named '{step.name}'; give each its own name")
            seen.add(step.name)
            method = step.http.method
            if method not in READ_ONLY_METHODS and method not in self.allow_methods:
                raise ValueError(
                    f"step '{step.name}' uses {method}, which can change data, and warm-up "
                    f"traffic is read-only by default; use GET, or list it in "
                    f"journey.allow_methods: [{method}] if the journey needs it (a login)"
                )
            clash = set(step.capture) & set(self.secrets)
            if clash:
                raise ValueError(
                    f"step '{step.name}' captures '{sorted(clash)[0]}', which is also a secret's "
                    "name; rename one"
                )
        if not any(step.judged for step in self.steps):
            raise ValueError(
                "every step is judged: false, so the gate would see nothing; judge at least one"
            )
        return self

    def changing_steps(self) -> list[JourneyStep]:
        """The steps whose method can change state."""
        return [step for step in self.steps if step.http.method not in READ_ONLY_METHODS]


def _check_variable(name: str) -> None:
    if not _VARIABLE.fullmatch(name) or name in _RESERVED:
        raise ValueError(
            f"'{name}' cannot be a template variable; use letters, digits and _ (not starting "
            f"with a digit), and none of {', '.join(sorted(_RESERVED))}"
        )
