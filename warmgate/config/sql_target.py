"""One SQL target's model: the read-only query to repeat, its parameters and its bounds.

:class:`SqlTarget` is a target's ``sql:`` block: a SQLAlchemy URL of a supported database, one
statement with bound parameters (templates rendered per request; the statement itself never is),
the expected row count (:class:`SqlRows`) and the bounds on what one result may cost
(``row_cap``, ``row_bytes``). Whether the statement only reads is checked when targets compile
(:mod:`warmgate.traffic.sql.driver`); here only the text is checked.

A config model: pydantic, the shared fields and ``kernel/`` only, no I/O.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from warmgate.config.fields import Duration, StrictModel
from warmgate.kernel.redaction import mask_url, url_passwords
from warmgate.kernel.units import format_size, parse_size

SIZE_PATTERN = r"^\s*\d{1,12}\s*([KkMmGg][Ii][Bb]?|[Bb])?\s*$"
DEFAULT_ROW_BYTES = 1 << 20
"""The widest row, in bytes of text, that a SQL target receives whole unless it says otherwise."""
MIN_ROW_BYTES = 1 << 16
MAX_ROW_BYTES = 1 << 30
"""PostgreSQL's largest field; it also keeps the row guard's arithmetic in 32-bit integers."""

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


class SqlRows(StrictModel):
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


class SqlTarget(StrictModel):
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
