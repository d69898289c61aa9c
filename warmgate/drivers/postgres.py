"""PostgreSQL for the SQL driver: a small pool of psycopg connections, one round trip per query.

Theory of operation. warmgate measures latency from the client, so its own work per query must
stay small next to the database's. Each query is one transaction, written to the server at once
in libpq's pipeline mode and answered in one round trip::

    BEGIN READ ONLY; SET LOCAL standard_conforming_strings = on;
    SET LOCAL statement_timeout = <ms>; <the query>; ROLLBACK;
    SELECT pg_advisory_unlock_all(); DEALLOCATE ALL; Sync

This keeps every guarantee listed in ``sql.py``:

- BEGIN READ ONLY and SET LOCAL are sent in every transaction, so a query that turned the
  session's ``default_transaction_read_only`` or ``statement_timeout`` off changes nothing for
  the next query on that connection;
- the server parses the query only after ``standard_conforming_strings`` is on, so it reads
  ``'...\'`` as the statement check read it (``pgcheck.py``), whatever the server, the
  database or the role set it to;
- BEGIN always opens a new transaction (inside an open one it would only warn): the pool hands
  out only connections that are outside any transaction;
- after an error the server skips every message up to the Sync, so the query never runs unless
  BEGIN READ ONLY succeeded; a query that failed leaves the transaction aborted, and it is then
  rolled back at once (a second round trip, on failures only);
- the extended query protocol carries exactly one statement per message, so a query cannot
  append a COMMIT or a second statement of its own;
- nothing of the query outlives it on the pooled connection: the rollback undoes settings
  (``set_config(..., false)`` too), LISTEN and cursors, a read-only transaction cannot create a
  temporary table, and the two statements after the ROLLBACK release what a rollback leaves
  behind: session-level advisory locks and prepared statements. (``DISCARD ALL`` would do it
  too, but it also drops every cached plan, so PL/pgSQL functions would be planned again on
  every query and measured slower than the app's own sessions run them.) If that reset fails,
  the connection is closed instead of reused;
- the query's rows are counted as they arrive, in chunks of ``CHUNK_ROWS`` (libpq's chunked
  rows mode, or row by row before libpq 17), never held all at once; past the row cap the
  answer is left unread and the connection closed, which stops the query on the server;
- libpq is in non-blocking mode (psycopg opens its connections so): a write that would block is
  finished when the event loop says the socket is writable, and the answer is read when it says
  the socket is readable, so nothing waits on the loop.

Queries bypass SQLAlchemy's pool and psycopg's cursors: checking a connection out of
SQLAlchemy's asyncio pool and back costs about as much CPU as this whole transaction, and
psycopg's cursors flush and poll the socket once per statement even in pipeline mode (figures in
docs/sql.md, "Throughput"). SQLAlchemy still turns the URL into connection arguments, as its
psycopg dialect does; ``sqlbind.py`` turns ``:name`` parameters into ``$1``, as the statement
check read them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy
from psycopg import pq
from psycopg.pq.abc import PGconn, PGresult
from sqlalchemy.engine import URL

from warmgate.drivers.sqlcheck import Dialect, binding

APPLICATION_NAME = "warmgate"
"""What PostgreSQL shows in ``pg_stat_activity.application_name`` for warm-up connections."""

Connection = psycopg.AsyncConnection[Any]
Statement = tuple[bytes, Sequence[bytes], Sequence[int]]
"""``(SQL, parameter values as text, parameter type OIDs)``; 0 lets the server infer the type."""

CHUNK_ROWS = 100
"""Rows libpq holds at most at once while a result is counted."""

_BEGIN: Statement = (b"BEGIN READ ONLY", (), ())
_ROLLBACK: Statement = (b"ROLLBACK", (), ())
_RESET: tuple[Statement, ...] = (
    (b"SELECT pg_advisory_unlock_all()", (), ()),
    (b"DEALLOCATE ALL", (), ()),
)
_STRINGS: Statement = (b"SET LOCAL standard_conforming_strings = on", (), ())
_QUERY = 3
"""The query's place in the transaction's statements (after BEGIN and two SET LOCAL)."""
_ROWS = frozenset({pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK})
# A Python int is bound as the smallest of int2, int4, int8 (then numeric) that holds it, as
# psycopg binds it, so a query fails or succeeds here as it does in an app using psycopg.
_INTEGER_TYPES = ((2**15, 21), (2**31, 23), (2**63, 20))
_NUMERIC = 1700
_COPY = frozenset({pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH})


class PostgresPool:
    """At most ``size`` connections, opened when first needed, each running one query at a time.

    A connection goes back to the pool only when the query left it healthy, out of pipeline mode
    and outside any transaction; otherwise (a broken connection, a query the client gave up on)
    it is closed and the next query opens a new one.
    """

    errors: tuple[type[Exception], ...] = (psycopg.Error, sqlalchemy.exc.TimeoutError, OSError)
    """What :meth:`rows` raises when the database or the connection fails."""

    def __init__(self, url: URL, size: int, wait: float) -> None:
        # The arguments SQLAlchemy's psycopg dialect would connect with (libpq options too).
        _, arguments = url.get_dialect()().create_connect_args(url)
        arguments.setdefault("application_name", APPLICATION_NAME)
        self._arguments = arguments
        self._wait = wait
        self._free = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._closed = False

    async def rows(
        self, query: str, params: Mapping[str, int | str], statement_timeout: float, cap: int
    ) -> int:
        """Run ``query`` once in a read-only transaction, rolled back; the rows it returned,
        counted up to ``cap + 1`` (more than ``cap``: reading stopped there)."""
        text, names = _positional(query)
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError:
            # The error SQLAlchemy's pool raises, so that both databases report it alike.
            raise sqlalchemy.exc.TimeoutError("no free connection in the pool") from None
        try:
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                values = [params[name] for name in names]
                return await read_only(connection, text, values, statement_timeout, cap)
            finally:
                if _reusable(connection) and not self._closed:
                    self._idle.append(connection)
                else:
                    await connection.close()
        finally:
            self._free.release()

    async def aclose(self) -> None:
        """Close the idle connections now, and the ones in use when their query ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    async def write_access(self) -> str | None:
        """How the connecting role can write (``app is a superuser``), or ``None`` when it can
        only read; on a connection of its own, closed after."""
        connection = await self._connect()
        try:
            cursor = await connection.execute(_ROLE_QUERY)
            row = await cursor.fetchone()
        finally:
            await connection.close()
        if row is None:
            return None
        role, superuser, table, tables, schema = row
        if superuser:
            return f"{role} is a superuser"
        if table is not None:
            more = f" and {tables - 1} more tables" if tables > 1 else ""
            return f"{role} may INSERT, UPDATE, DELETE or TRUNCATE {table}{more}"
        if schema is not None:
            return f"{role} may CREATE tables in schema {schema}"
        return None

    async def _connect(self) -> Connection:
        # autocommit: the transactions are warmgate's own, psycopg is not to open any.
        return await psycopg.AsyncConnection.connect(autocommit=True, **self._arguments)


_ROLE_QUERY = """
WITH visible AS (
    SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_(toast|temp_)'
      AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
), writable AS (
    SELECT format('%I.%I', v.nspname, c.relname) AS name
    FROM pg_catalog.pg_class c JOIN visible v ON v.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND (pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
           OR pg_catalog.has_any_column_privilege(c.oid, 'INSERT, UPDATE'))
)
SELECT current_user,
    (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
    (SELECT min(name) FROM writable),
    (SELECT count(*) FROM writable),
    (SELECT min(nspname) FROM visible WHERE pg_catalog.has_schema_privilege(oid, 'CREATE'))
"""


async def read_only(
    connection: Connection,
    query: str,
    values: Sequence[int | str],
    statement_timeout: float,
    cap: int,
) -> int:
    """One read-only transaction around ``query``, rolled back, then the session reset; the
    number of rows it returned, counted up to ``cap + 1``.

    Raises the psycopg error of the first statement that failed (see the module docstring).
    """
    pgconn = connection.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.InterfaceError("the connection is inside a transaction already")
    encoding = connection.info.encoding
    bound = [_bind(value, encoding) for value in values]
    statement: Statement = (
        query.encode(encoding),
        [text for text, _ in bound],
        [oid for _, oid in bound],
    )
    set_timeout = b"SET LOCAL statement_timeout = %d" % max(1, round(statement_timeout * 1000))
    transaction = [_BEGIN, _STRINGS, (set_timeout, (), ()), statement, _ROLLBACK, *_RESET]
    results, count = await _pipeline(pgconn, transaction, counted=_QUERY, cap=cap)
    if count > cap:
        return count  # the answer is left unread: the connection cannot be reused
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        # A statement failed, so the server skipped the ROLLBACK and the reset that followed it.
        cleanup, _ = await _pipeline(pgconn, [_ROLLBACK, *_RESET])
        results = results[: _QUERY + 1] + cleanup
    for index, result in enumerate(results):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            if index > _QUERY:
                await connection.close()  # it may hold what the reset was to release
            raise _error(result, encoding)
    return count


async def _pipeline(
    pgconn: PGconn, statements: Sequence[Statement], counted: int | None = None, cap: int = 0
) -> tuple[list[PGresult], int]:
    """Send ``statements`` and a Sync in one write; the last result of each statement, and the
    rows that the statement at index ``counted`` (not the first) returned, counted in chunks up
    to ``cap + 1``.

    Past ``cap`` it returns at once, leaving the rest of the answer unread.
    """
    pgconn.enter_pipeline_mode()
    for text, values, types in statements:
        pgconn.send_query_params(text, values, param_types=types)
    pgconn.pipeline_sync()
    while pgconn.flush():
        await _ready(pgconn, write=True)
    results: list[PGresult] = []
    current: PGresult | None = None
    count = 0
    while True:
        result = await _next_result(pgconn)
        if result is None:
            # libpq ends the results of each statement with None; one more means the connection
            # is gone, and waiting for the Sync would spin without ever yielding to the loop.
            if current is None:
                raise _lost(pgconn)
            results.append(current)
            current = None
            if len(results) == counted:
                _count_in_chunks(pgconn)  # now, before libpq starts reading that answer
            continue
        if result.status == pq.ExecStatus.PIPELINE_SYNC:
            break
        current = result
        if len(results) == counted and result.status in _ROWS:
            count += result.ntuples
            if count > cap:
                return results, cap + 1
    if len(results) != len(statements):
        raise _lost(pgconn)
    pgconn.exit_pipeline_mode()
    return results, count


async def _next_result(pgconn: PGconn) -> PGresult | None:
    """The next result libpq has, once the socket has brought it."""
    while pgconn.is_busy():
        await _ready(pgconn)
        pgconn.consume_input()
    result = pgconn.get_result()
    if result is not None and result.status in _COPY:
        # libpq would hand out the same COPY result forever.
        raise psycopg.NotSupportedError("COPY cannot run in a warm-up query")
    return result


def _count_in_chunks(pgconn: PGconn) -> None:
    """Have libpq hand out the next statement's rows a chunk at a time."""
    try:
        pgconn.set_chunked_rows_mode(CHUNK_ROWS)
    except psycopg.NotSupportedError:  # libpq before 17
        with contextlib.suppress(psycopg.OperationalError):
            pgconn.set_single_row_mode()
    except psycopg.OperationalError:
        pass  # refused only when no row can come: the pipeline was aborted before it


async def _ready(pgconn: PGconn, *, write: bool = False) -> None:
    """Wait until the connection's socket can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    socket = pgconn.socket
    if write:
        loop.add_writer(socket, wake)
    else:
        loop.add_reader(socket, wake)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(socket)
        else:
            loop.remove_reader(socket)


def _bind(value: int | str, encoding: str) -> tuple[bytes, int]:
    """``(text, type OID)`` of one parameter; a string's type is left to the server (OID 0)."""
    if isinstance(value, str):
        return value.encode(encoding), 0
    oid = next((oid for limit, oid in _INTEGER_TYPES if -limit <= value < limit), _NUMERIC)
    return str(value).encode(), oid


def _positional(query: str) -> tuple[str, tuple[str, ...]]:
    """``query`` with ``$1``, ``$2``... for its ``:name`` parameters, and the names in order,
    as the statement check read it (``sqlbind.py``)."""
    bound = binding(query, Dialect.POSTGRESQL)
    return bound.text, bound.names


def _error(result: PGresult, encoding: str) -> psycopg.Error:
    """The psycopg exception for a failed statement: the class of its SQLSTATE, its message."""
    sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    primary = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message
    message = primary.decode(encoding, "replace")
    if not sqlstate:
        # libpq's own report, such as a connection that broke half-way.
        return psycopg.OperationalError(message)
    try:
        return psycopg.errors.lookup(sqlstate)(message)
    except KeyError:
        return psycopg.DatabaseError(message)


def _lost(pgconn: PGconn) -> psycopg.OperationalError:
    message = pgconn.error_message.decode("utf-8", "replace").strip()
    return psycopg.OperationalError(message or "the server closed the connection")


def _reusable(connection: Connection) -> bool:
    pgconn = connection.pgconn
    return (
        not connection.closed
        and pgconn.status == pq.ConnStatus.OK
        and pgconn.transaction_status == pq.TransactionStatus.IDLE
        and pgconn.pipeline_status == pq.PipelineStatus.OFF
    )
