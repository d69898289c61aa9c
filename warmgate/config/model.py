"""The configuration model: one frozen pydantic model, built once from YAML, env and flags.

Every section is a frozen model that rejects unknown keys; validators say how to fix the input.
Loading (YAML, ``${VAR}``, flags, error messages) lives in ``loading.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from warmgate import __version__
from warmgate.config.journey import Journey, JourneyStep, evidence_warnings
from warmgate.kernel.secrets import mask_url, url_passwords
from warmgate.kernel.units import format_duration, format_size, parse_duration, parse_size
from warmgate.traffic.tls import TlsConfig, needs_https, tls_warnings

DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h)\s*)+$"
MIN_REARM_AFTER = 0.1
"""Seconds: anything shorter would re-arm on one slow answer."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIZE_PATTERN = r"^\s*\d{1,12}\s*([KkMmGg][Ii][Bb]?|[Bb])?\s*$"
DEFAULT_ROW_BYTES = 1 << 20
"""The widest row, in bytes of text, that a SQL target receives whole unless it says otherwise."""
MIN_ROW_BYTES = 1 << 16
MAX_ROW_BYTES = 1 << 30
"""PostgreSQL's largest field; it also keeps the row guard's arithmetic in 32-bit integers."""
MAX_RATE = 1e6
"""Requests per second: no one process sends more, so a larger value is a typo."""
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header value may hold: a CR or LF would end the header (tab is allowed)."""


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


def _positive(seconds: float, example: str) -> float:
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


def _header_values(headers: dict[str, str], what: str) -> dict[str, str]:
    """``headers`` unchanged, or a ValueError naming a header that could never be sent."""
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a header name; use letters, digits and dashes, such as "
                "X-Request-Id"
            )
        if _CONTROL.search(value):
            raise ValueError(
                f"the value of {what} {name} contains a line break or control character, which "
                "would end the header; remove it"
            )
    return headers


def _http_url(url: str) -> str:
    """``url`` stripped, or a ValueError unless it is http(s) with a valid host and port.

    A host or port that is itself a template is checked once rendered, when targets compile.
    """
    url = url.strip()
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise ValueError(f"'{mask_url(url)}' must start with http:// or https://")
    if _CONTROL.search(url) or "\t" in url:
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


class _Model(BaseModel):
    # Infinity and NaN are never what anyone means (weight: .inf would starve every other target).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class HttpTarget(_Model):
    """One HTTP request to repeat. ``url``, header values and ``body`` are templates."""

    url: str | None = Field(
        None, description="URL template, rendered for every request (or give urls_file)."
    )
    urls_file: Path | None = Field(
        None,
        description=(
            "Instead of url: a file of URL templates, one `URL [WEIGHT]` a line (# comments), "
            "as warmgate paths writes it; one is picked by weight for every request."
        ),
    )
    method: str = Field("GET", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Header templates.")
    body: str | None = Field(None, description="Request body template.")
    expect_status: list[int | str] = Field(
        default_factory=lambda: list[int | str](["2xx"]),
        description="Statuses that count as success: numbers or classes such as '2xx'. "
        "May also be written `accept`.",
    )
    timeout: Duration = Field(5.0, description="Per-request timeout; a timeout is a failure.")
    confirm_read_only: bool = Field(
        False,
        description="Allow a method other than GET/HEAD/OPTIONS: the endpoint only reads.",
    )
    tls: TlsConfig | None = Field(None, description="TLS settings of an https URL.")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _http_url(url)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, timeout: float) -> float:
        return _positive(timeout, "5s")

    @model_validator(mode="after")
    def _one_url(self) -> HttpTarget:
        if (self.url is None) == (self.urls_file is None):
            raise ValueError(
                "give exactly one of url (one URL template) or urls_file (a file of them)"
            )
        return self

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return _header_values(headers, "header")

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

    @model_validator(mode="before")
    @classmethod
    def _accept_is_expect_status(cls, data: object) -> object:
        if isinstance(data, dict) and "accept" in data:
            if "expect_status" in data:
                raise ValueError(
                    "accept and expect_status are the same setting; write only one of them"
                )
            data = {("expect_status" if key == "accept" else key): v for key, v in data.items()}
        return data

    @model_validator(mode="after")
    def _tls_for_https(self) -> HttpTarget:
        if self.urls_file is None:  # a URL set's scheme is known once the file is read
            needs_https(self.url, self.tls)
        return self

    def read_only_problem(self) -> str | None:
        """Why this request may write, unless its method is safe or confirmed read-only.

        Checked by a plain target; a journey step has its own rule (``allow_methods``).
        """
        if self.method not in _SAFE_METHODS and not self.confirm_read_only:
            return (
                f"method {self.method} may change data and warm-up traffic must never write; "
                "use GET, or set confirm_read_only: true if this endpoint only reads"
            )
        return None

    def accepts(self, status: int) -> bool:
        """Whether ``status`` counts as success."""
        for expected in self.expect_status:
            if isinstance(expected, int):
                if status == expected:
                    return True
            elif status // 100 == int(expected[0]):
                return True
        return False


_SQL_SCHEMES = (
    "postgresql",
    "postgresql+psycopg",
    "mysql",
    "mysql+aiomysql",
    "mariadb",
    "mariadb+aiomysql",
    "sqlite",
    "sqlite+aiosqlite",
)


def _size(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a validation error
            f"'{value}' is not a size; write a number of bytes, or one with KiB, MiB or GiB"
        )
    if isinstance(value, str):
        return parse_size(value)
    return value


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
            "libpq's PGPASSWORD), mysql://user@host:3306/db or mariadb://... (aiomysql; password "
            "from ${VAR}), or sqlite:///path/to/file.db (opened read-only)."
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
    row_cap: int = Field(
        10_000,
        ge=1,
        description=(
            "Most rows read of one result: past it the query is stopped and warmgate warns "
            "(add a LIMIT). rows.min and rows.max must not exceed it."
        ),
    )
    row_bytes: Annotated[
        int,
        BeforeValidator(_size),
        WithJsonSchema(
            {
                "type": ["integer", "string"],
                "pattern": SIZE_PATTERN,
                "minimum": MIN_ROW_BYTES,
                "maximum": MAX_ROW_BYTES,
                "examples": ["1MiB", "256KiB"],
            }
        ),
    ] = Field(
        DEFAULT_ROW_BYTES,
        description=(
            "Widest row, in bytes of its columns' text, that warmgate receives whole: bytes, or "
            "64KiB to 1GiB. A wider row is counted but never held: PostgreSQL does not send it, "
            "MySQL's is read in pieces and dropped, SQLite stops the query at a value this long. "
            "Bounds warmgate's memory (docs/sql.md, 'Wide rows')."
        ),
    )
    require_read_only_role: bool = Field(
        False,
        description=(
            "Refuse to start when the database role can write (a superuser, or INSERT, UPDATE, "
            "DELETE or TRUNCATE on a table it can see); false: warn."
        ),
    )

    @field_validator("row_bytes")
    @classmethod
    def _row_bytes(cls, row_bytes: int) -> int:
        if not MIN_ROW_BYTES <= row_bytes <= MAX_ROW_BYTES:
            raise ValueError(
                f"{row_bytes} bytes is outside {format_size(MIN_ROW_BYTES)} to "
                f"{format_size(MAX_ROW_BYTES)}; write a size within them, such as '1MiB'"
            )
        return row_bytes

    @model_validator(mode="after")
    def _rows_within_cap(self) -> SqlTarget:
        most = max(self.rows.min, self.rows.max or 0) if self.rows else 0
        if most > self.row_cap:
            raise ValueError(
                f"rows expects up to {most} rows but row_cap {self.row_cap} stops reading "
                f"there; raise row_cap to at least {most} or lower rows"
            )
        return self

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        url = url.strip()
        scheme = url.partition("://")[0].lower()
        if "://" not in url or scheme not in _SQL_SCHEMES:
            raise ValueError(
                f"'{mask_url(url)}' is not a supported database URL; write "
                "postgresql+psycopg://user@host:5432/dbname, mysql://user@host:3306/dbname "
                "(or mariadb://) or sqlite:///path/to/file.db"
            )
        if scheme.startswith("sqlite") and not url.partition("://")[2].lstrip("/"):
            raise ValueError(
                "a sqlite URL needs a file: sqlite:///relative.db or sqlite:////abs.db"
            )
        if any("@" in password for password in url_passwords(url)):
            # The database driver would read the rest of the password as the host, and show it.
            raise ValueError(
                f"the password in '{mask_url(url)}' holds an @, which ends the password early; "
                "percent-encode it as %40 (in the ${VAR} value too)"
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
    weight: float = Field(1.0, gt=0, le=1e6, description="Relative share of requests.")
    rate: float | None = Field(
        None,
        gt=0,
        le=MAX_RATE,
        description=(
            "At most this many requests per second to this target (a shared database, say); "
            "the other targets take up the slack."
        ),
    )
    http: HttpTarget | None = Field(None, description="An HTTP target.")
    sql: SqlTarget | None = Field(None, description="A SQL target (read-only queries).")
    journey: Journey | None = Field(
        None, description="A journey: ordered HTTP steps per virtual user (a login, then pages)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        kinds = [kind for kind in ("http", "sql", "journey") if getattr(self, kind) is not None]
        if not kinds:
            raise ValueError(
                f"target '{self.name}' needs a kind; add an http:, sql: or journey: section"
            )
        if len(kinds) > 1:
            raise ValueError(
                f"target '{self.name}' has both {kinds[0]}: and {kinds[1]}:; a target has one "
                "kind, so make them two targets"
            )
        problem = self.http.read_only_problem() if self.http is not None else None
        if problem:
            raise ValueError(problem)
        return self


class LoadConfig(_Model):
    """How hard to push."""

    concurrency: int = Field(8, ge=1, le=4096, description="Target (and maximum) in flight.")
    rate: float | None = Field(
        None,
        gt=0,
        le=MAX_RATE,
        description="Total requests per second (open model); unset: closed loop.",
    )
    ramp_step: Duration = Field(1.0, description="How often the ramp judges and moves the level.")
    jitter: Duration = Field(
        0.0, description="Random delay before priming, so replicas do not stampede together."
    )

    @field_validator("ramp_step")
    @classmethod
    def _ramp_step(cls, ramp_step: float) -> float:
        return _positive(ramp_step, "1s")


class GateConfig(_Model):
    """What warm means."""

    success_rate: float = Field(0.99, gt=0, le=1, description="Minimum share of successes.")
    p50: Duration | None = Field(None, description="Maximum median latency.")
    p95: LatencyOrAuto | None = Field(
        None, description="Maximum p95 latency, or 'auto': warm when latency stops improving."
    )
    p99: Duration | None = Field(None, description="Maximum p99 latency.")
    plateau_tolerance: float = Field(
        0.10, gt=0, lt=1, description="For p95: auto, the p95 trend over 3 windows that is flat."
    )
    min_requests: int = Field(
        20, ge=1, le=1_000_000_000, description="Minimum requests at target concurrency."
    )
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
    tls: TlsConfig | None = Field(
        None,
        description=(
            "TLS settings of an https wait.url; unset: those of the HTTP target with the same "
            "host and port."
        ),
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _http_url(url)

    @field_validator("max_backoff")
    @classmethod
    def _backoff_order(cls, max_backoff: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial_backoff")  # absent when it failed validation itself
        if initial is not None and max_backoff < initial:
            raise ValueError(
                f"{format_duration(max_backoff)} is shorter than wait.initial_backoff "
                f"{format_duration(initial)}; raise max_backoff or lower initial_backoff"
            )
        return max_backoff

    @model_validator(mode="after")
    def _tls_for_https(self) -> WaitConfig:
        needs_https(self.url, self.tls)
        return self


class AfterReadyConfig(_Model):
    """What ``run`` does once warm."""

    keep_warm_rate: float = Field(
        0.0,
        ge=0,
        le=MAX_RATE,
        description="Requests per second to keep sending once ready; 0: none.",
    )
    rearm_after: Duration = Field(
        5.0,
        ge=0,
        description=(
            "Once ready, a refused connection re-arms at once (the app restarted); a target "
            "unreachable (no route, unknown host) this long re-arms too (at least 100ms). "
            "Slow answers, errors and connect timeouts never re-arm. 0: never re-arm."
        ),
    )
    retry_after: Duration = Field(
        60.0, ge=0, description="After failing closed, prime again after this long; 0: never."
    )

    @field_validator("rearm_after")
    @classmethod
    def _rearm_after(cls, rearm_after: float) -> float:
        if 0 < rearm_after < MIN_REARM_AFTER:
            raise ValueError(
                f"{format_duration(rearm_after)} is too short to tell a restart from one slow "
                "answer; write 0s (never re-arm) or at least 100ms"
            )
        return rearm_after


class ServerConfig(_Model):
    """The readiness and metrics endpoint."""

    host: str = Field("0.0.0.0", description="Address to listen on.")  # noqa: S104 - a sidecar serves the kubelet
    port: int = Field(8099, ge=0, le=65535, description="Port; 0 picks a free one.")


class TrafficConfig(_Model):
    """How synthetic requests are marked, so the app can keep them out of business metrics."""

    user_agent: str = Field(f"warmgate/{__version__}", description="User-Agent header.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Headers added to every request. X-Warmgate: 1 is always sent as well; set "
            "X-Warmgate here to give it another value."
        ),
    )

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, user_agent: str) -> str:
        if _CONTROL.search(user_agent):
            raise ValueError(
                "contains a line break or control character, which would end the header; remove it"
            )
        return user_agent

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return _header_values(headers, "header")


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
    template_files: bool = Field(
        True,
        description="Whether templates may read files with line(); the admission webhook "
        "writes false into configs it builds from pod annotations.",
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

    @field_validator("status_dir", mode="before")
    @classmethod
    def _status_dir(cls, status_dir: object) -> object:
        if isinstance(status_dir, str) and not status_dir.strip():
            raise ValueError("is empty; write a directory such as /warmgate, or leave it out")
        return status_dir

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Target]) -> list[Target]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"two targets are named '{target.name}'; give each its own name")
            seen.add(target.name)
        return targets

    @model_validator(mode="after")
    def _rate_fills_the_window(self) -> Config:
        rate, window, needed = self.load.rate, self.gate.window, self.gate.min_requests
        # A tiny tolerance, so that 0.1 req/s over 200s counts as the 20 requests it is.
        if rate is None or rate * window + 1e-9 >= needed:
            return self
        most = math.floor(rate * window + 1e-9)
        fixes = [
            f"raise load.rate to at least {math.ceil(needed / window * 100) / 100:g}",
            f"lengthen gate.window to at least {format_duration(math.ceil(needed / rate))}",
        ]
        if most >= 1:
            fixes.append(f"lower gate.min_requests to {most}")
        raise ValueError(
            f"load.rate {rate:g} req/s sends at most {rate * window:g} requests in a "
            f"gate.window of {format_duration(window)}, fewer than gate.min_requests "
            f"{needed}, so the gate could never pass; {', '.join(fixes[:-1])} or {fixes[-1]}"
        )

    @model_validator(mode="after")
    def _hold_before_the_deadline(self) -> Config:
        gate = self.gate
        if gate.hold >= gate.timeout:
            raise ValueError(
                f"gate.hold {format_duration(gate.hold)} is not shorter than gate.timeout "
                f"{format_duration(gate.timeout)}, so the gate could never pass before the "
                "deadline; shorten gate.hold or lengthen gate.timeout"
            )
        return self

    @model_validator(mode="after")
    def _caps_fill_the_window(self) -> Config:
        from warmgate.decide.gate import target_minimums

        window, needed = self.gate.window, self.gate.min_requests
        caps = [target.rate for target in self.targets]
        total = sum(cap for cap in caps if cap is not None)
        if all(cap is not None for cap in caps) and total * window + 1e-9 < needed:
            raise ValueError(
                f"the targets' rate caps add up to {total:g} req/s, at most {total * window:g} "
                f"requests in a gate.window of {format_duration(window)}, fewer than "
                f"gate.min_requests {needed}, so the gate could never pass; raise the caps, "
                f"lengthen gate.window to at least {format_duration(math.ceil(needed / total))} "
                f"or lower gate.min_requests to {max(1, math.floor(total * window + 1e-9))}"
            )
        # Each target must also bring its weight's share of the evidence (as the gate asks).
        shares = target_minimums(needed, [target.weight for target in self.targets])
        for target, share in zip(self.targets, shares, strict=True):
            if target.rate is not None and target.rate * window + 1e-9 < share:
                raise ValueError(
                    f"targets '{target.name}' rate {target.rate:g} req/s sends at most "
                    f"{target.rate * window:g} requests in a gate.window of "
                    f"{format_duration(window)}, fewer than the {share} its weight's share of "
                    f"gate.min_requests asks for, so its check could never pass; raise its rate "
                    f"to at least {math.ceil(share / window * 100) / 100:g} or lengthen "
                    f"gate.window to at least {format_duration(math.ceil(share / target.rate))}"
                )
        return self


def warnings(config: Config) -> list[str]:
    """Sentences about settings that can work but probably do not do what was meant."""
    found = []
    window = config.gate.window
    for index, target in enumerate(config.targets):
        kind = "http" if target.http is not None else "sql"
        specs: list[tuple[str, HttpTarget | SqlTarget | None]] = [(kind, target.http or target.sql)]
        if target.journey is not None:
            steps = enumerate(target.journey.steps)
            specs = [(f"journey.steps[{number}].http", step.http) for number, step in steps]
        for field, spec in specs:
            if spec is not None and spec.timeout > window:
                found.append(
                    f"targets[{index}].{field}.timeout {format_duration(spec.timeout)} is longer "
                    f"than gate.window {format_duration(window)}: while requests hang that long "
                    "the window holds no answers to judge; shorten the timeout or lengthen the "
                    "window"
                )
    return found + evidence_warnings(config) + tls_warnings(config)


# A journey step holds the same http block as a plain target, defined in this module: resolve
# that forward reference now, then the models that contain a journey.
JourneyStep.model_rebuild(_types_namespace={"HttpTarget": HttpTarget})
Journey.model_rebuild()
Target.model_rebuild()
Config.model_rebuild()
