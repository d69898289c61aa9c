"""The SQL driver: read-only queries against PostgreSQL, MySQL, MariaDB and SQLite.

PostgreSQL goes through psycopg 3's async connections, each query one pipelined round trip
(``postgres.py``); MySQL and MariaDB through aiomysql's (``mysql.py``); SQLite through
SQLAlchemy's asyncio engine over aiosqlite, a thread per connection (``sqlite.py``). No query
blocks the event loop that also serves ``/readyz``. This module imports SQLAlchemy, so
``targets.py`` imports it only for configs with SQL targets, and it imports psycopg, aiomysql or
aiosqlite only for a target that needs it (sidecar memory).

Warm-up traffic never writes and leaves nothing behind. Four layers see to it:

1. at start-up, the statement check reads the query as its server will (``check.py``): a
   write (INSERT, UPDATE, DELETE, MERGE, DDL, SELECT INTO, a locking read, several statements,
   and MySQL's REPLACE, LOAD DATA, INTO OUTFILE, ``:=``...), a call of a function acting
   outside its transaction (dblink, session advisory locks, GET_LOCK...), a ``:name`` where
   the server reads no value, or a query the check cannot read with certainty is a
   :class:`ConfigError` naming the target;
2. every query runs in a read-only transaction: PostgreSQL ``BEGIN READ ONLY`` sent with each
   query, whatever the session defaults say; MySQL and MariaDB ``START TRANSACTION READ ONLY``
   before each query; SQLite a connection opened with ``mode=ro`` plus
   ``PRAGMA query_only``; so the database itself refuses a write that slipped past (1): outcome
   ``write_rejected``;
3. nothing ever commits, and nothing outlives the query: each transaction is rolled back
   (PostgreSQL: a ROLLBACK in the same round trip, and one more if the query failed, then the
   session reset; MySQL and MariaDB: a ROLLBACK, then ``COM_RESET_CONNECTION``; SQLite:
   returning a connection to the pool rolls back again);
4. the first probe that reaches the database checks what the role may do: a role that can
   write is a warning, or a :class:`ConfigError` with ``require_read_only_role``, since only
   the role's privileges stop a function that hides an escape hatch in its body.

Rows are counted as they arrive, never held all at once, and reading stops past the target's
``row_cap`` (warned about once). A row wider than the target's ``row_bytes`` is counted but never
held whole (``rows.py``: PostgreSQL does not send it, MySQL's is read in pieces, SQLite stops
at it), and warned about once: so a primer's memory is bounded by its concurrency and
``row_bytes``, whatever the data (docs/sql.md, "Wide rows").

The timeout is enforced by the database (PostgreSQL ``SET LOCAL statement_timeout`` in each
transaction; MariaDB ``SET STATEMENT max_statement_time=... FOR`` the query; MySQL
``max_execution_time``; SQLite an interrupt at the deadline) and always by the client too, a
little later, ``CLIENT_GRACE`` to ``1.5 * CLIENT_GRACE`` after it (it also covers waiting for the
pool and connecting), through one timer for all the queries in flight (``deadlines.py``).

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

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from warmgate.config.sql_target import DEFAULT_ROW_BYTES, SqlRows, SqlTarget
from warmgate.decide.outcomes import OK, TIMEOUT, UNEXPECTED_STATUS
from warmgate.decide.reach import Down, Reach, reach_of
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import Secrets, mask_url
from warmgate.kernel.units import format_size
from warmgate.traffic.deadlines import Deadlines
from warmgate.traffic.driver import Outcome, Warn, warn_on_stderr
from warmgate.traffic.probe import tcp_probe
from warmgate.traffic.sql.check import READ_STARTS, Dialect, binding, read_query
from warmgate.traffic.sql.outcomes import classify
from warmgate.traffic.sql.rows import Counted
from warmgate.traffic.templating import Template, Templates

PROBE_TIMEOUT = 2.0
"""Seconds a probe may take to connect and run ``SELECT 1``."""
ROLE_CHECK_TIMEOUT = 10.0
"""Seconds the start-up check of the role's privileges may take (it reads the catalogs)."""
CLIENT_GRACE = 0.5
"""The client gives up this long after the database should have cancelled the statement."""

_SUCCEEDED = Outcome(OK)
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")


def bind_value(rendered: str) -> int | str:
    """The value bound for a rendered parameter: an integer for a plain whole number, else
    the string as is (see the module docstring for the rule)."""
    return int(rendered) if _INTEGER.fullmatch(rendered) else rendered


@dataclass(frozen=True, slots=True)
class SqlPlan:
    """One SQL target, checked and ready to run: where, what, with which parameters.

    ``url`` may hold a password; SQLAlchemy's URL hides it when shown, and so does ``place``.
    """

    url: URL
    dialect: Dialect
    place: str
    query: str
    params: tuple[tuple[str, Template], ...]
    timeout: float
    rows: SqlRows | None = None
    row_cap: int = 10_000
    require_read_only_role: bool = False
    row_bytes: int = DEFAULT_ROW_BYTES

    @classmethod
    def compile(cls, target: SqlTarget, templates: Templates, where: str, name: str) -> SqlPlan:
        """Check the URL, the query and its parameters, and compile the parameter templates.

        Raises :class:`ConfigError` naming the target when the parameters and the query do not
        match, or the statement check refuses the query (``check.py``).
        """
        url, dialect, place = _connect_url(target.url, where)
        _check_query(target, dialect, where, name)
        params = tuple(
            (key, templates.compile(value, f"{where}.params.{key}"))
            for key, value in target.params.items()
        )
        return cls(
            url,
            dialect,
            place,
            target.query,
            params,
            target.timeout,
            target.rows,
            target.row_cap,
            target.require_read_only_role,
            target.row_bytes,
        )

    @property
    def address(self) -> tuple[str, int] | None:
        """The server's host and TCP port, when it is reached over TCP at one address."""
        host = self.url.host
        if self.dialect is Dialect.SQLITE or not host or host.startswith("/") or "," in host:
            return None
        return host, self.url.port or _PORTS[self.dialect]

    def render_params(self) -> dict[str, int | str]:
        """Fresh values of the bound parameters for one request."""
        return {key: bind_value(template.render()) for key, template in self.params}


def _check_query(target: SqlTarget, dialect: Dialect, where: str, name: str) -> None:
    """Raise :class:`ConfigError` when the statement check refuses the query or its parameters
    do not match ``params``: a write first, then a parameter where the server reads no value,
    then a missing or unused one (before a query that does not parse: ``:x::int`` hides ``:x``)."""
    reading = read_query(target.query, dialect)
    if reading.write is not None:
        raise ConfigError(
            f"target '{name}': {where}.query {reading.write}; warm-up traffic must never "
            f"write, so give one read-only statement ({', '.join(READ_STARTS)})."
        )
    if reading.parameter is not None:
        raise ConfigError(f"target '{name}': {where}.query {reading.parameter}.")
    used = set(binding(target.query, dialect).names)
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
    if reading.unreadable is not None:
        raise ConfigError(
            f"target '{name}': {where}.query {reading.unreadable}; warmgate refuses a query it "
            'cannot read as the database will, so write it in plain SQL (docs/sql.md, "The '
            'statement check").'
        )
    if reading.escape is not None:
        raise ConfigError(
            f"target '{name}': {where}.query {reading.escape}; a warm-up query must stay "
            "inside its read-only transaction, so query the tables the app reads instead."
        )


_MYSQL_OPTIONS = frozenset({"charset", "connect_timeout", "program_name", "unix_socket"})
"""URL options that aiomysql takes and that leave the connection as warmgate needs it."""
_PORTS = {Dialect.POSTGRESQL: 5432, Dialect.MYSQL: 3306}
_UNSAFE_CHARSETS = frozenset({"big5", "cp932", "eucjpms", "gbk", "gb18030", "sjis", "ujis"})
"""Connection character sets whose multibyte characters may end in the byte of a backslash, or
that send a character as a backslash (EUC-JP's ``¥``, as Python encodes it)."""


def _connect_url(text: str, where: str) -> tuple[URL, Dialect, str]:
    """``(url, dialect, place)``: the URL warmgate connects with and where it points."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{where}.url: '{mask_url(text)}' is not a valid database URL; write "
            "postgresql+psycopg://user@host:5432/dbname, mysql://user@host:3306/dbname or "
            "sqlite:///path/to/file.db."
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        place = f"{url.host or 'localhost'}:{url.port or 5432}"
        return url.set(drivername="postgresql+psycopg"), Dialect.POSTGRESQL, place
    if backend in {"mysql", "mariadb"}:
        for option in sorted(set(url.query) & {"init_command", "client_flag", "local_infile"}):
            raise ConfigError(
                f"{where}.url: warmgate sets the {option} option itself (it resets the session "
                f"after every query and keeps it read-only); remove ?{option}= from the URL."
            )
        for option in sorted(key for key in url.query if key.startswith("ssl")):
            # SQLAlchemy hands these on as a dict, and aiomysql takes only an SSLContext.
            raise ConfigError(
                f"{where}.url: ?{option}= is not supported for MySQL and MariaDB yet (warmgate "
                "connects to them without TLS); remove it, or reach the database over a "
                "trusted network."
            )
        charset = str(url.query.get("charset", "utf8mb4")).lower()
        if charset in _UNSAFE_CHARSETS:
            raise ConfigError(
                f"{where}.url: ?charset={charset} is refused: in it a backslash can end a "
                "multibyte character, or a character be sent as a backslash, so a parameter "
                "value escaped into the query text could leave its quotes; use utf8mb4 (the "
                "default)."
            )
        for option in sorted(set(url.query) - _MYSQL_OPTIONS):
            raise ConfigError(
                f"{where}.url: ?{option}= is not an option warmgate passes to MySQL or MariaDB; "
                f"it takes {', '.join(sorted(_MYSQL_OPTIONS))}."
            )
        place = f"{url.host or 'localhost'}:{url.port or 3306}"
        return url.set(drivername=f"{backend}+aiomysql"), Dialect.MYSQL, place
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
    return readonly, Dialect.SQLITE, path


class SqlPool(Protocol):
    """Connections to one database, at most as many as the concurrency, that run queries
    read-only (``postgres.PostgresPool``, ``mysql.MysqlPool``, ``sqlite.SqlitePool``)."""

    errors: tuple[type[Exception], ...]
    """What :meth:`rows` raises when the database or the connection fails (see :func:`classify`)."""

    async def rows(
        self,
        query: str,
        params: Mapping[str, int | str],
        statement_timeout: float,
        cap: int,
        row_bytes: int = DEFAULT_ROW_BYTES,
    ) -> Counted:
        """Run ``query`` once in a read-only transaction, rolled back; the rows it returned.

        Rows are counted as they arrive, never all held at once, up to ``cap + 1``: more than
        ``cap`` means the pool stopped reading there. A row wider than ``row_bytes`` is counted
        without being held whole (see ``rows.py``). The database stops the query after
        ``statement_timeout`` seconds.
        """
        ...

    async def write_access(self) -> str | None:
        """How the connecting role can write (``app is a superuser``), or ``None`` when it can
        only read."""
        ...

    async def aclose(self) -> None:
        """Close the pooled connections."""
        ...


def open_pool(plan: SqlPlan, size: int) -> SqlPool:
    """The pool of ``size`` connections for ``plan``'s database (none is opened yet)."""
    if plan.dialect is Dialect.POSTGRESQL:
        from warmgate.traffic.sql.postgres import PostgresPool

        return PostgresPool(plan.url, size, wait=plan.timeout)
    if plan.dialect is Dialect.MYSQL:
        from warmgate.traffic.sql.mysql import MysqlPool

        return MysqlPool(plan.url, size, wait=plan.timeout)
    from warmgate.traffic.sql.sqlite import SqlitePool

    return SqlitePool(plan.url, size, wait=plan.timeout)


_WIDE_ROWS = {
    Dialect.POSTGRESQL: "PostgreSQL does not send them, so the latency leaves out their transfer",
    Dialect.MYSQL: "it reads them in pieces and drops them",
}
"""How each engine drops a wide row (SQLite stops the query instead: ``Counted.stopped``)."""
_MORE = 'select fewer or narrower columns, or raise row_bytes (docs/sql.md, "Wide rows")'
_ESCAPE_EXAMPLE = {
    Dialect.POSTGRESQL: "dblink",
    Dialect.MYSQL: "GET_LOCK inside a stored function",
    Dialect.SQLITE: "none on a read-only file",
}


class SqlDriver:
    """Runs one SQL target's query, read-only, through a pool sized to the concurrency."""

    def __init__(
        self,
        name: str,
        plan: SqlPlan,
        pool: SqlPool,
        warn: Warn = warn_on_stderr,
        secrets: Secrets | None = None,
    ) -> None:
        self.name = name
        self._plan = plan
        self._pool = pool
        self._warn = warn
        # The database's messages may quote any secret of the config (a bound ${VAR} value),
        # and the URL's password, as the driver was given it, always counts as one.
        password = plan.url.password
        self._secrets = (secrets or Secrets()).including({str(password or "")})
        self._role_checked = False
        self._capped = False
        self._warned: set[str] = set()
        self._deadlines = Deadlines(CLIENT_GRACE / 2)

    @classmethod
    def open(
        cls,
        name: str,
        plan: SqlPlan,
        concurrency: int,
        warn: Warn = warn_on_stderr,
        secrets: Secrets | None = None,
    ) -> SqlDriver:
        """A driver with a pool of its own (no connection is made until the first use)."""
        return cls(name, plan, open_pool(plan, concurrency), warn, secrets)

    async def execute(self) -> Outcome:
        """Render the parameters, run the query read-only, count the rows, classify."""
        plan = self._plan
        params = plan.render_params()
        try:
            with self._deadlines.within(plan.timeout + CLIENT_GRACE):
                counted = await self._pool.rows(
                    plan.query, params, plan.timeout, plan.row_cap, plan.row_bytes
                )
        except TimeoutError:
            return Outcome(TIMEOUT, detail="timed out")
        except self._pool.errors as exc:
            return self._classify(exc)
        self._warn_about_width(counted)
        count = counted.rows
        capped = count > plan.row_cap
        if capped and not self._capped:
            self._capped = True
            self._warn(
                f"target '{self.name}': the query returned more than {plan.row_cap} rows; "
                "warmgate stops reading there, which stops the query (on PostgreSQL and MySQL by "
                "closing its connection): add a LIMIT to the query, or raise row_cap."
            )
        rows = plan.rows
        if rows is not None and counted.stopped:
            return Outcome(
                UNEXPECTED_STATUS,
                detail=f"stopped after {count} {_rows(count)} at a value longer than row_bytes; "
                f"expected {rows.describe()}",
            )
        if rows is not None and not rows.accepts(count):
            returned = f"more than {plan.row_cap} rows" if capped else f"{count} {_rows(count)}"
            return Outcome(
                UNEXPECTED_STATUS, detail=f"returned {returned}; expected {rows.describe()}"
            )
        return _SUCCEEDED

    def _warn_about_width(self, counted: Counted) -> None:
        """Warn once per target of each way a query's rows were too wide to hold."""
        if not (counted.stopped or counted.wide or counted.unchecked is not None):
            return  # the usual case, checked before any message is made
        plan, name = self._plan, f"target '{self.name}'"
        limit = f"row_bytes ({format_size(plan.row_bytes)})"
        if counted.stopped:
            if "stopped" not in self._warned:
                self._warned.add("stopped")
                self._warn(
                    f"{name}: SQLite stopped the query at a value longer than {limit}, so the "
                    f"rows after it were neither read nor counted; {_MORE}."
                )
        elif counted.wide and "wide" not in self._warned:
            self._warned.add("wide")
            self._warn(
                f"{name}: the query returned {counted.wide} {_rows(counted.wide)} wider than "
                f"{limit}; warmgate counts such rows without keeping them "
                f"({_WIDE_ROWS[plan.dialect]}); {_MORE}."
            )
        if counted.unchecked is not None and "unchecked" not in self._warned:
            self._warned.add("unchecked")
            self._warn(
                f"{name}: PostgreSQL cannot run the query as a subquery "
                f"({self._classify(counted.unchecked).detail}), so warmgate receives its rows "
                f"whole, however wide, and row_bytes does not bound its memory (SHOW and EXPLAIN "
                "cannot be read so; a query can, once nothing follows its last semicolon)."
            )

    def _classify(self, exc: BaseException) -> Outcome:
        return classify(exc, dialect=self._plan.dialect, secrets=self._secrets)

    async def probe(self) -> Down | None:
        """``None`` when the database accepts a connection and answers ``SELECT 1``.

        The first time it does, what the role may do is checked too: a role that can write is
        a warning, or a :class:`ConfigError` when the target requires a read-only role. How a
        failure reads (refused, busy, unreachable) comes from the socket's error; psycopg
        keeps only libpq's message, so then the server's port is asked once more.
        """
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._pool.rows("SELECT 1", {}, PROBE_TIMEOUT, 1)
            if not self._role_checked:
                async with asyncio.timeout(ROLE_CHECK_TIMEOUT):
                    access = await self._pool.write_access()
                self._role_checked = True
                self._judge_role(access)
        except TimeoutError:
            return Down(Reach.BUSY, f"{self._plan.place}: connect timed out")
        except self._pool.errors as exc:
            reason = f"{self._plan.place}: {self._classify(exc).detail}"
            reach = reach_of(exc)
            address = self._plan.address
            if reach is Reach.UNREACHABLE and address is not None:
                down = await tcp_probe(*address)
                reach = reach if down is None else down.reach
            return Down(reach, reason)
        return None

    def _judge_role(self, access: str | None) -> None:
        if access is None:
            return
        fix = 'connect as a role that can only read (docs/sql.md, "A read-only role")'
        if self._plan.require_read_only_role:
            raise ConfigError(
                f"target '{self.name}': the database role {access}, and require_read_only_role "
                f"is true; {fix}, or set require_read_only_role: false to only warn."
            )
        self._warn(
            f"target '{self.name}': the database role {access}. Warm-up queries run read-only, "
            f"but a function can reach outside that ({_ESCAPE_EXAMPLE[self._plan.dialect]}, "
            f"for one); {fix}, or set "
            "require_read_only_role: true to refuse to start."
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()


def _rows(count: int) -> str:
    return "row" if count == 1 else "rows"
