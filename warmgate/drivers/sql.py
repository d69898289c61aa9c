"""The SQL driver: read-only queries against PostgreSQL and SQLite.

PostgreSQL goes through psycopg 3's async connections, each query one pipelined round trip
(``postgres.py``); SQLite through SQLAlchemy's asyncio engine over aiosqlite, a thread per
connection (``sqlite.py``). No query blocks the event loop that also serves ``/readyz``. This
module imports SQLAlchemy, so ``targets.py`` imports it only for configs with SQL targets, and it
imports psycopg or aiosqlite only for a target that needs it (sidecar memory).

Warm-up traffic never writes. Three layers see to it:

1. at start-up, a query that is obviously a write (INSERT, UPDATE, DELETE, MERGE, DDL,
   SELECT INTO, a locking read, several statements) is a :class:`ConfigError` naming the target;
2. every query runs in a read-only transaction: PostgreSQL ``BEGIN READ ONLY`` sent with each
   query, whatever the session defaults say; SQLite a connection opened with ``mode=ro`` plus
   ``PRAGMA query_only``; so the database itself refuses a write that slipped past (1): outcome
   ``write_rejected``;
3. nothing ever commits: each transaction is rolled back (PostgreSQL: a ROLLBACK in the same
   round trip, and one more if the query failed; SQLite: returning a connection to the pool
   rolls back again).

The timeout is enforced by the database (PostgreSQL ``SET LOCAL statement_timeout`` in each
transaction; SQLite an interrupt at the deadline) and always by the client too, a little later,
with ``asyncio.timeout`` (it also covers waiting for the pool and connecting).

Bound parameters: each ``params`` value is a template rendered for every request. A rendered
value that is a whole number without a leading zero (``42``, ``-7``, ``0``) is bound as an
integer; anything else (``007``, ``3.5``, ``2024-01-31``) is bound as a string, which
PostgreSQL types from the context it is used in (compared with a date column it is a date).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from warmgate.config import SqlRows, SqlTarget
from warmgate.drivers import (
    CONNECTION_ERROR,
    ERROR,
    OK,
    TIMEOUT,
    UNEXPECTED_STATUS,
    WRITE_REJECTED,
    Outcome,
)
from warmgate.errors import ConfigError
from warmgate.secrets import redact_url
from warmgate.templating import Template, Templates

PROBE_TIMEOUT = 2.0
"""Seconds a probe may take to connect and run ``SELECT 1``."""
CLIENT_GRACE = 0.5
"""The client gives up this long after the database should have cancelled the statement."""

_READ_STARTS = ("SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN")
_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "TRUNCATE"})
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_NOISE = re.compile(
    r"--[^\n]*"  # line comment
    r"|/\*.*?\*/"  # block comment
    r"|[Ee]'(?:[^'\\]|''|\\.)*'"  # string literal with backslash escapes
    r"|'(?:[^']|'')*'"  # string literal
    r'|"(?:[^"]|"")*"'  # quoted identifier
    r"|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$",  # dollar-quoted string
    re.DOTALL,
)
_CONNECT_PHRASES = (
    (r"connection refused", "connection refused"),
    (r'password authentication failed for user "?([^"\s]+)',
     "password authentication failed for user {}"),
    (r"no password supplied|fe_sendauth", "no password supplied"),
    (r'role "?([^"\s]+)"? does not exist', "role {} does not exist"),
    (r'database "?([^"\s]+)"? does not exist', "database {} does not exist"),
    (r"no pg_hba\.conf entry", "pg_hba.conf has no entry for this connection"),
    (r"failed to resolve host|could not translate host name|name or service not known",
     "host name not found"),
    (r"timeout expired|timed out", "connect timed out"),
    (r"the database system is (starting up|shutting down|in recovery mode|not yet accepting)",
     "the database system is {}"),
    (r"too many (?:clients|connections)|remaining connection slots", "too many connections"),
    (r"server closed the connection|terminating connection|connection is closed|"
     r"consuming input failed", "the server closed the connection"),
    (r"unable to open database file", "cannot open the database file"),
    (r"file is not a database", "the file is not a database"),
)  # fmt: skip


def write_problem(query: str) -> str | None:
    """Why ``query`` is obviously not a read-only statement, or ``None`` if it may be one.

    A syntactic check on the query without its comments and quoted text; the read-only
    transaction is what really guarantees that nothing is written.
    """
    code = _NOISE.sub(" ", query)
    words = [word.upper() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", code)]
    writes = [word for word in words if word in _WRITE_WORDS]
    problem = None
    if re.search(r";\s*\S", code):
        problem = "holds more than one statement"
    elif not words:
        problem = "has no statement"
    elif words[0] not in _READ_STARTS:
        kind = "writes data" if words[0] in _WRITE_WORDS else "is not a read-only query"
        problem = f"starts with {words[0]}, which {kind}"
    elif re.search(r"\bFOR\s+(NO\s+KEY\s+|KEY\s+)?(UPDATE|SHARE)\b", code, re.IGNORECASE):
        problem = "takes row locks (FOR UPDATE/SHARE), which would block the app's writes"
    elif writes:
        problem = f"contains {writes[0]}, which writes data"
    elif "INTO" in words:
        problem = "contains INTO (SELECT INTO creates a table)"
    return problem


def bind_value(rendered: str) -> int | str:
    """The value bound for a rendered parameter: an integer for a plain whole number, else
    the string as is (see the module docstring for the rule)."""
    return int(rendered) if _INTEGER.fullmatch(rendered) else rendered


def connect_phrase(message: str) -> str:
    """A short, secret-free reason from a driver's connection error message."""
    for pattern, phrase in _CONNECT_PHRASES:
        match = re.search(pattern, message, re.IGNORECASE)
        if match:
            return phrase.format(*match.groups())
    return "connection failed"


def _first_line(message: str, limit: int = 160) -> str:
    line = message.strip().splitlines()[0] if message.strip() else ""
    line = re.sub(r"^(ERROR|FATAL):\s+", "", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class SqlPlan:
    """One SQL target, checked and ready to run: where, what, with which parameters.

    ``url`` may hold a password; SQLAlchemy's URL hides it when shown, and so does ``place``.
    """

    url: URL
    postgres: bool
    place: str
    query: str
    params: tuple[tuple[str, Template], ...]
    timeout: float
    rows: SqlRows | None = None

    @classmethod
    def compile(cls, target: SqlTarget, templates: Templates, where: str, name: str) -> SqlPlan:
        """Check the URL, the query and its parameters, and compile the parameter templates.

        Raises :class:`ConfigError` naming the target when the query obviously writes.
        """
        problem = write_problem(target.query)
        if problem is not None:
            raise ConfigError(
                f"target '{name}': {where}.query {problem}; warm-up traffic must never write, "
                f"so give one read-only statement ({', '.join(_READ_STARTS)})."
            )
        url, postgres, place = _connect_url(target.url, where)
        used = set(sqlalchemy.text(target.query).compile().params)
        for missing in sorted(used - set(target.params)):
            example = '"{{ randint(1, 100) }}"'
            raise ConfigError(
                f"target '{name}': {where}.query binds :{missing}, but {where}.params has no "
                f"'{missing}'; add it, such as params: {{{missing}: {example}}}."
            )
        for unused in sorted(set(target.params) - used):
            raise ConfigError(
                f"target '{name}': {where}.params.{unused} is not bound by the query; write "
                f":{unused} where it belongs (a cast is CAST(:{unused} AS type), not "
                f":{unused}::type)."
            )
        params = tuple(
            (key, templates.compile(value, f"{where}.params.{key}"))
            for key, value in target.params.items()
        )
        return cls(url, postgres, place, target.query, params, target.timeout, target.rows)

    def render_params(self) -> dict[str, int | str]:
        """Fresh values of the bound parameters for one request."""
        return {key: bind_value(template.render()) for key, template in self.params}


def _connect_url(text: str, where: str) -> tuple[URL, bool, str]:
    """``(url, postgres, place)``: the URL warmgate connects with and where it points."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{where}.url: '{redact_url(text)}' is not a valid database URL; write "
            "postgresql+psycopg://user@host:5432/dbname or sqlite:///path/to/file.db."
        ) from None
    if url.get_backend_name() == "postgresql":
        place = f"{url.host or 'localhost'}:{url.port or 5432}"
        return url.set(drivername="postgresql+psycopg"), True, place
    path = url.database or ""
    if url.query:
        raise ConfigError(
            f"{where}.url: a sqlite URL takes no options (?{'&'.join(url.query)}); warmgate "
            "opens the file read-only itself."
        )
    # A URI filename with mode=ro: SQLite refuses every write on this connection.
    readonly = URL.create(
        "sqlite+aiosqlite", database=f"file:{quote(path)}", query={"mode": "ro", "uri": "true"}
    )
    return readonly, False, path


class SqlPool(Protocol):
    """Connections to one database, at most as many as the concurrency, that run queries
    read-only (``postgres.PostgresPool``, ``sqlite.SqlitePool``)."""

    errors: tuple[type[Exception], ...]
    """What :meth:`rows` raises when the database or the connection fails (see :func:`classify`)."""

    async def rows(
        self, query: str, params: Mapping[str, int | str], statement_timeout: float
    ) -> int:
        """Run ``query`` once in a read-only transaction, rolled back; the rows it returned.

        The database stops the query after ``statement_timeout`` seconds.
        """
        ...

    async def aclose(self) -> None:
        """Close the pooled connections."""
        ...


def open_pool(plan: SqlPlan, size: int) -> SqlPool:
    """The pool of ``size`` connections for ``plan``'s database (none is opened yet)."""
    if plan.postgres:
        from warmgate.drivers.postgres import PostgresPool

        return PostgresPool(plan.url, size, wait=plan.timeout)
    from warmgate.drivers.sqlite import SqlitePool

    return SqlitePool(plan.url, size, wait=plan.timeout)


class SqlDriver:
    """Runs one SQL target's query, read-only, through a pool sized to the concurrency."""

    def __init__(self, name: str, plan: SqlPlan, pool: SqlPool) -> None:
        self.name = name
        self._plan = plan
        self._pool = pool
        self._password = plan.url.password

    @classmethod
    def open(cls, name: str, plan: SqlPlan, concurrency: int) -> SqlDriver:
        """A driver with a pool of its own (no connection is made until the first use)."""
        return cls(name, plan, open_pool(plan, concurrency))

    async def execute(self) -> Outcome:
        """Render the parameters, run the query read-only, count the rows, classify."""
        plan = self._plan
        params = plan.render_params()
        try:
            async with asyncio.timeout(plan.timeout + CLIENT_GRACE):
                count = await self._pool.rows(plan.query, params, plan.timeout)
        except TimeoutError:
            return Outcome(TIMEOUT, detail="timed out")
        except self._pool.errors as exc:
            return self._classify(exc)
        rows = plan.rows
        if rows is not None and not rows.accepts(count):
            noun = "row" if count == 1 else "rows"
            return Outcome(
                UNEXPECTED_STATUS, detail=f"returned {count} {noun}; expected {rows.describe()}"
            )
        return Outcome(OK)

    def _classify(self, exc: BaseException) -> Outcome:
        outcome = classify(exc, postgres=self._plan.postgres)
        if self._password and self._password in outcome.detail:
            return Outcome(outcome.outcome, detail=outcome.detail.replace(self._password, "***"))
        return outcome

    async def probe(self) -> str | None:
        """``None`` when the database accepts a connection and answers ``SELECT 1``."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._pool.rows("SELECT 1", {}, PROBE_TIMEOUT)
        except TimeoutError:
            return f"{self._plan.place}: connect timed out"
        except self._pool.errors as exc:
            return f"{self._plan.place}: {self._classify(exc).detail}"
        return None

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()


def classify(exc: BaseException, *, postgres: bool) -> Outcome:
    """The outcome of a query that raised ``exc``: a psycopg error, or a SQLAlchemy error
    wrapping the database driver's."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return Outcome(TIMEOUT, detail="no free connection in the pool")
    original: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    sqlstate = str(getattr(original, "sqlstate", None) or "")
    sqlite_error = str(getattr(original, "sqlite_errorname", None) or "")
    message = _message(original)
    if sqlstate == "25006" or sqlite_error.startswith("SQLITE_READONLY"):
        return Outcome(WRITE_REJECTED, detail=f"the database refused a write: {message}")
    if sqlstate == "57014" or sqlite_error == "SQLITE_INTERRUPT":
        return Outcome(TIMEOUT, detail="statement timeout")
    connection_lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
    refused = sqlstate[:2] in {"08", "28", "3D", "53"} or sqlstate.startswith("57P")
    unreachable = postgres and not sqlstate and _psycopg_operational(original)
    if (
        connection_lost
        or refused
        or unreachable
        or sqlite_error in {"SQLITE_CANTOPEN", "SQLITE_NOTADB"}
    ):
        return Outcome(CONNECTION_ERROR, detail=connect_phrase(str(original)))
    if isinstance(exc, OSError):
        return Outcome(CONNECTION_ERROR, detail=connect_phrase(str(exc)))
    return Outcome(ERROR, detail=message or type(original).__name__)


def _psycopg_operational(error: BaseException) -> bool:
    """Whether ``error`` is psycopg's OperationalError; without a SQLSTATE it comes from the
    client side: connecting failed, or the connection broke."""
    import psycopg  # loaded already: only PostgreSQL targets ask

    return isinstance(error, psycopg.OperationalError)


def _message(error: BaseException) -> str:
    """The database's own one-line message (PostgreSQL's primary message when there is one)."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return _first_line(str(primary or error))
