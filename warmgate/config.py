"""The configuration model: one frozen pydantic model, built once from YAML, env and flags.

Loading is a pipeline: read YAML -> expand ``${VAR}`` from the environment -> lay the command
line overrides on top -> validate. Every mistake becomes a :class:`ConfigError` whose message
names the field and says how to fix it; unknown keys get a did-you-mean.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from warmgate import __version__
from warmgate.errors import ConfigError
from warmgate.units import format_duration, parse_duration

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h)\s*)+$"
_SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpTarget(_Model):
    """One HTTP request to repeat. ``url``, header values and ``body`` are templates."""

    url: str = Field(description="URL template, rendered for every request.")
    method: str = Field("GET", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Header templates.")
    body: str | None = Field(None, description="Request body template.")
    expect_status: list[int | str] = Field(
        default_factory=lambda: list[int | str](["2xx"]),
        description="Statuses that count as success: numbers or classes such as '2xx'.",
    )
    timeout: Duration = Field(5.0, description="Per-request timeout; a timeout is a failure.")
    confirm_read_only: bool = Field(
        False,
        description="Allow a method other than GET/HEAD/OPTIONS: the endpoint only reads.",
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        if not re.match(r"^https?://", url.strip(), re.IGNORECASE):
            raise ValueError(f"'{redact_url(url)}' must start with http:// or https://")
        return url.strip()

    @field_validator("method")
    @classmethod
    def _upper_method(cls, method: str) -> str:
        if not re.fullmatch(r"[A-Za-z]+", method):
            raise ValueError(f"'{method}' is not an HTTP method; write GET, HEAD or OPTIONS")
        return method.upper()

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, statuses: list[int | str]) -> list[int | str]:
        if not statuses:
            raise ValueError("list at least one status, such as [200] or ['2xx']")
        for status in statuses:
            valid = (isinstance(status, int) and 100 <= status <= 599) or (
                isinstance(status, str) and re.fullmatch(r"[1-5]xx", status)
            )
            if not valid:
                raise ValueError(f"'{status}' is not a status; write a number such as 200 or '2xx'")
        return statuses

    @model_validator(mode="after")
    def _read_only(self) -> HttpTarget:
        if self.method not in _SAFE_METHODS and not self.confirm_read_only:
            raise ValueError(
                f"method {self.method} may change data and warm-up traffic must never write; "
                "use GET, or set confirm_read_only: true if this endpoint only reads"
            )
        return self

    def accepts(self, status: int) -> bool:
        """Whether ``status`` counts as success."""
        for expected in self.expect_status:
            if isinstance(expected, int):
                if status == expected:
                    return True
            elif status // 100 == int(expected[0]):
                return True
        return False


_SQL_SCHEMES = ("postgresql", "postgresql+psycopg", "sqlite", "sqlite+aiosqlite")


def _sql_param(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class SqlRows(_Model):
    """How many rows a successful query returns, both ends included."""

    min: int = Field(0, ge=0, description="Fewest rows; fewer is a failure.")
    max: int | None = Field(None, ge=0, description="Most rows; more is a failure. Unset: any.")

    @model_validator(mode="after")
    def _ordered(self) -> SqlRows:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}; swap them")
        return self

    def accepts(self, count: int) -> bool:
        """Whether ``count`` rows is within the range."""
        return count >= self.min and (self.max is None or count <= self.max)

    def describe(self) -> str:
        """``1 to 1000 rows``, ``at least 1 row``, ``any number of rows``."""
        if self.max is None:
            return f"at least {self.min} {_rows(self.min)}" if self.min else "any number of rows"
        if self.min == self.max:
            return f"exactly {self.min} {_rows(self.min)}"
        return f"{self.min} to {self.max} rows"


def _rows(count: int) -> str:
    return "row" if count == 1 else "rows"


class SqlTarget(_Model):
    """One read-only query to repeat. ``params`` values are templates; the query is not."""

    url: str = Field(
        description=(
            "SQLAlchemy URL: postgresql+psycopg://user@host:5432/db (password from ${VAR} or "
            "libpq's PGPASSWORD) or sqlite:///path/to/file.db (opened read-only)."
        )
    )
    query: str = Field(
        description="One read-only statement with bound parameters such as :cid (never a template)."
    )
    params: dict[
        str,
        Annotated[str, BeforeValidator(_sql_param), WithJsonSchema({"type": ["string", "number"]})],
    ] = Field(
        default_factory=dict,
        description=(
            "Values of the bound parameters, templates rendered for every request. A value that "
            "renders as a whole number (no leading zero) is bound as an integer, anything else "
            "as a string."
        ),
    )
    timeout: Duration = Field(
        5.0, gt=0, description="Per-query timeout, enforced by the database and the client."
    )
    rows: SqlRows | None = Field(
        None, description="Expected row count, e.g. {min: 1, max: 1000}; outside it is a failure."
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        url = url.strip()
        scheme = url.partition("://")[0].lower()
        if "://" not in url or scheme not in _SQL_SCHEMES:
            raise ValueError(
                f"'{redact_url(url)}' is not a supported database URL; write "
                "postgresql+psycopg://user@host:5432/dbname or sqlite:///path/to/file.db"
            )
        if scheme.startswith("sqlite") and not url.partition("://")[2].lstrip("/"):
            raise ValueError(
                "a sqlite URL needs a file: sqlite:///relative.db or sqlite:////abs.db"
            )
        return url

    @field_validator("query")
    @classmethod
    def _has_query(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("write the query to run, such as SELECT 1")
        return query.strip()


class Target(_Model):
    """A named thing to warm, with a share of the load."""

    name: str = Field(
        description="Name used in metrics, status and logs (never the URL).",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    )
    weight: float = Field(1.0, gt=0, description="Relative share of requests.")
    http: HttpTarget | None = Field(None, description="An HTTP target.")
    sql: SqlTarget | None = Field(None, description="A SQL target (read-only queries).")

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        if self.http is None and self.sql is None:
            raise ValueError(f"target '{self.name}' needs a kind; add an http: or sql: section")
        if self.http is not None and self.sql is not None:
            raise ValueError(
                f"target '{self.name}' has both http: and sql:; a target has one kind, so make "
                "them two targets"
            )
        return self


class LoadConfig(_Model):
    """How hard to push."""

    concurrency: int = Field(8, ge=1, le=4096, description="Target (and maximum) in flight.")
    rate: float | None = Field(
        None, gt=0, description="Total requests per second (open model); unset: closed loop."
    )
    ramp_step: Duration = Field(1.0, description="How often the ramp judges and moves the level.")
    jitter: Duration = Field(
        0.0, description="Random delay before priming, so replicas do not stampede together."
    )


class GateConfig(_Model):
    """What warm means."""

    success_rate: float = Field(0.99, gt=0, le=1, description="Minimum share of successes.")
    p50: Duration | None = Field(None, description="Maximum median latency.")
    p95: LatencyOrAuto | None = Field(
        None, description="Maximum p95 latency, or 'auto': warm when latency stops improving."
    )
    p99: Duration | None = Field(None, description="Maximum p99 latency.")
    plateau_tolerance: float = Field(
        0.10, gt=0, lt=1, description="For p95: auto, the relative change that counts as flat."
    )
    min_requests: int = Field(20, ge=1, description="Minimum requests at target concurrency.")
    window: Duration = Field(10.0, gt=0, description="Sliding window the thresholds apply to.")
    hold: Duration = Field(5.0, ge=0, description="How long thresholds must keep passing.")
    timeout: Duration = Field(300.0, gt=0, description="Deadline for warming.")
    on_timeout: Literal["ready", "fail"] = Field(
        "ready", description="At the deadline: open anyway (ready) or fail closed (fail)."
    )


class WaitConfig(_Model):
    """How to wait for the target to come up before priming."""

    url: str | None = Field(
        None, description="A URL that answers 2xx when the app is up; default: TCP connect."
    )
    timeout: Duration = Field(300.0, gt=0, description="Deadline for the app to come up.")
    initial_backoff: Duration = Field(0.1, gt=0, description="First retry delay.")
    max_backoff: Duration = Field(2.0, gt=0, description="Cap of the exponential backoff.")


class AfterReadyConfig(_Model):
    """What ``run`` does once warm."""

    keep_warm_rate: float = Field(
        0.0, ge=0, description="Requests per second to keep sending once ready; 0: none."
    )
    rearm_after: Duration = Field(
        5.0, ge=0, description="Re-arm when the target stops answering this long; 0: never."
    )


class ServerConfig(_Model):
    """The readiness and metrics endpoint."""

    host: str = Field("0.0.0.0", description="Address to listen on.")  # noqa: S104 - a sidecar serves the kubelet
    port: int = Field(8099, ge=0, le=65535, description="Port; 0 picks a free one.")


class TrafficConfig(_Model):
    """How synthetic requests are marked, so the app can keep them out of business metrics."""

    user_agent: str = Field(f"warmgate/{__version__}", description="User-Agent header.")
    headers: dict[str, str] = Field(
        default_factory=lambda: {"X-Warmgate": "1"}, description="Headers added to every request."
    )


class Config(_Model):
    """The whole warm-up plan."""

    targets: list[Target] = Field(description="What to warm.", min_length=1)
    load: LoadConfig = LoadConfig()
    gate: GateConfig = GateConfig()
    wait: WaitConfig = WaitConfig()
    after_ready: AfterReadyConfig = AfterReadyConfig()
    server: ServerConfig = ServerConfig()
    traffic: TrafficConfig = TrafficConfig()
    status_dir: Path | None = Field(
        None, description="Directory for status.json and the ready marker (an emptyDir)."
    )
    log_format: Literal["auto", "json", "human"] = Field(
        "auto", description="auto: human on a terminal, JSON lines otherwise."
    )

    @model_validator(mode="before")
    @classmethod
    def _name_targets(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("targets"), list):
            targets = []
            for index, target in enumerate(data["targets"], start=1):
                unnamed = isinstance(target, Mapping) and target.get("name") is None
                targets.append({"name": f"target-{index}", **target} if unnamed else target)
            data = {**data, "targets": targets}
        return data

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Target]) -> list[Target]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"two targets are named '{target.name}'; give each its own name")
            seen.add(target.name)
        return targets


def redact_url(url: str) -> str:
    """``scheme://user:***@host/path``: never show a password embedded in a URL."""
    return re.sub(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", r"\g<head>:***@", url)


class Secrets:
    """Strings that must never be shown: values of secret-looking env vars used in the config."""

    def __init__(self, values: set[str] | None = None) -> None:
        self.values = {value for value in (values or set()) if len(value) >= 3}

    def redact(self, text: str) -> str:
        """``text`` with every secret and URL password replaced by ``***``."""
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return redact_url(text)


def expand_env(data: Any, environ: Mapping[str, str], secrets: set[str], path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``data``.

    Values of variables whose names look secret (PASSWORD, TOKEN, KEY, ...) go into ``secrets``.
    """
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
            if _SECRET_NAME.search(name):
                secrets.add(value)
            return value

        return _ENV_REFERENCE.sub(substitute, data)
    if isinstance(data, Mapping):
        return {
            key: expand_env(value, environ, secrets, _join(path, str(key)))
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            expand_env(value, environ, secrets, f"{path}[{index}]")
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
    """The mapping in a YAML config file, or a ConfigError saying what is wrong with it."""
    import yaml  # only configs from a file need a YAML parser

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist; check the path.") from None
    except OSError as exc:
        raise ConfigError(f"--config: {path} cannot be read ({exc.strerror}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"--config: {path} is not valid YAML{where}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config: {path} must hold a mapping with a 'targets' list, not a "
            f"{type(data).__name__}."
        )
    return data


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, Secrets]:
    """Build the config from an optional YAML file and command-line overrides."""
    raw: dict[str, Any] = read_yaml(path) if path is not None else {}
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
        raise ConfigError(secrets.redact(format_validation_error(exc))) from None
    for target in config.targets:
        if target.http is not None:
            secrets.values.update(_url_passwords(target.http.url))
        if target.sql is not None:
            secrets.values.update(_sql_url_secrets(target.sql.url))
    return config, secrets


def _sql_url_secrets(url: str) -> set[str]:
    """The password of a database URL as written and percent-decoded, and ``password=`` values."""
    found = _url_passwords(url)
    found.update(re.findall(r"[?&]password=([^&#\s]+)", url, re.IGNORECASE))
    found.update({unquote(value) for value in found})
    return {value for value in found if len(value) >= 3}


def _url_passwords(url: str) -> set[str]:
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:([^@/\s]+)@", url)
    return {match.group(1)} if match and len(match.group(1)) >= 3 else set()


def format_validation_error(exc: ValidationError) -> str:
    """One sentence per problem, each naming the field: ``gate.p95: '200' has no unit; ...``."""
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
        elif error["type"] == "literal_error":
            message = f"'{error.get('input')}' is not allowed; {message[0].lower()}{message[1:]}"
        lines.append(f"{location}: {message}.".replace("..", "."))
    problems = "\n".join(f"  - {line}" for line in lines)
    count = len(lines)
    return f"the configuration has {count} problem{'s' if count != 1 else ''}:\n{problems}"


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
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return []
        model = found
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def describe(config: Config, secrets: Secrets) -> str:
    """The effective plan in words, for ``warmgate validate``. Secrets are redacted."""
    gate, load = config.gate, config.load
    lines = ["targets:"]
    total_weight = sum(target.weight for target in config.targets)
    for target in config.targets:
        share = target.weight / total_weight
        if target.http is not None:
            http = target.http
            statuses = ", ".join(map(str, http.expect_status))
            what = f"HTTP {http.method} {http.url} (expect {statuses}"
            what += f", timeout {format_duration(http.timeout)})"
        elif target.sql is not None:
            sql = target.sql
            query = " ".join(sql.query.split())
            what = f"SQL {redact_url(sql.url)} read-only: {query}"
            if sql.params:
                what += f" with {', '.join(f'{k}={v}' for k, v in sql.params.items())}"
            expect = f"expect {sql.rows.describe()}, " if sql.rows is not None else ""
            what += f" ({expect}timeout {format_duration(sql.timeout)})"
        lines.append(f"  - {target.name}: {share:.0%} of requests, {what}")
    pacing = f"paced at {load.rate:g} req/s in total" if load.rate else "closed loop"
    lines.append(
        f"load: ramp from 1 to {load.concurrency} in flight, {pacing}, "
        f"judged every {format_duration(load.ramp_step)}"
    )
    limits = [f"success >= {gate.success_rate:.1%}"]
    for name in ("p50", "p95", "p99"):
        value = getattr(gate, name)
        if value == "auto":
            limits.append(f"p95 plateau (within ±{gate.plateau_tolerance:.0%} between windows)")
        elif value is not None:
            limits.append(f"{name} <= {format_duration(value)}")
    lines.append(
        f"gate: {', '.join(limits)} over the last {format_duration(gate.window)} of at least "
        f"{gate.min_requests} requests issued at concurrency {load.concurrency}, held for "
        f"{format_duration(gate.hold)}"
    )
    action = "open anyway" if gate.on_timeout == "ready" else "fail closed (exit 1)"
    lines.append(f"deadline: {format_duration(gate.timeout)}, then {action}")
    wait_what = f"GET {config.wait.url} answers 2xx" if config.wait.url else "targets accept TCP"
    lines.append(f"wait: until {wait_what}, at most {format_duration(config.wait.timeout)}")
    after = config.after_ready
    keep = f"keep warm at {after.keep_warm_rate:g} req/s" if after.keep_warm_rate else "no trickle"
    rearm = (
        f"re-arm after {format_duration(after.rearm_after)} without answers"
        if after.rearm_after
        else "never re-arm"
    )
    lines.append(f"after ready (run): {keep}, {rearm}")
    lines.append(f"serve: http://{config.server.host}:{config.server.port}")
    lines.append(f"status dir: {config.status_dir or '(none)'}")
    return secrets.redact("\n".join(lines))
