"""PostgreSQL for the SQL driver: a small pool of psycopg connections, one round trip per query.

Theory of operation. warmgate measures latency from the client, so its own work per query must
stay small next to the database's. Each query is one transaction, written to the server at once
in libpq's pipeline mode and answered in one round trip::

    BEGIN READ ONLY; SET LOCAL statement_timeout = <ms>; <the query>; ROLLBACK; Sync

This keeps every guarantee listed in ``sql.py``:

- BEGIN READ ONLY and SET LOCAL are sent in every transaction, so a query that turned the
  session's ``default_transaction_read_only`` or ``statement_timeout`` off changes nothing for
  the next query on that connection;
- BEGIN always opens a new transaction (inside an open one it would only warn): the pool hands
  out only connections that are outside any transaction;
- after an error the server skips every message up to the Sync, so the query never runs unless
  BEGIN READ ONLY succeeded; a query that failed leaves the transaction aborted, and it is then
  rolled back at once (a second round trip, on failures only);
- the extended query protocol carries exactly one statement per message, so a query cannot
  append a COMMIT or a second statement of its own;
- libpq is in non-blocking mode (psycopg opens its connections so): a write that would block is
  finished when the event loop says the socket is writable, and the answer is read when it says
  the socket is readable, so nothing waits on the loop.

Queries bypass SQLAlchemy's pool and psycopg's cursors: checking a connection out of
SQLAlchemy's asyncio pool and back costs about as much CPU as this whole transaction, and
psycopg's cursors flush and poll the socket once per statement even in pipeline mode (figures in
docs/sql.md, "Throughput"). SQLAlchemy still turns the URL into connection arguments, as its
psycopg dialect does, and ``:name`` parameters into ``$1``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy
from psycopg import pq
from psycopg.pq.abc import PGconn, PGresult
from sqlalchemy.engine import URL
from sqlalchemy.engine.default import DefaultDialect

APPLICATION_NAME = "warmgate"
"""What PostgreSQL shows in ``pg_stat_activity.application_name`` for warm-up connections."""

Connection = psycopg.AsyncConnection[Any]
Statement = tuple[bytes, Sequence[bytes], Sequence[int]]
"""``(SQL, parameter values as text, parameter type OIDs)``; 0 lets the server infer the type."""

_BEGIN: Statement = (b"BEGIN READ ONLY", (), ())
_ROLLBACK: Statement = (b"ROLLBACK", (), ())
# A Python int is bound as the smallest of int2, int4, int8 (then numeric) that holds it, as
# psycopg binds it, so a query fails or succeeds here as it does in an app using psycopg.
_INTEGER_TYPES = ((2**15, 21), (2**31, 23), (2**63, 20))
_NUMERIC = 1700
_COPY = frozenset({pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH})
_DOLLAR_PARAMS = DefaultDialect(paramstyle="numeric_dollar")


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
        self, query: str, params: Mapping[str, int | str], statement_timeout: float
    ) -> int:
        """Run ``query`` once in a read-only transaction, rolled back; the rows it returned."""
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
                return await read_only(connection, text, values, statement_timeout)
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

    async def _connect(self) -> Connection:
        # autocommit: the transactions are warmgate's own, psycopg is not to open any.
        return await psycopg.AsyncConnection.connect(autocommit=True, **self._arguments)


async def read_only(
    connection: Connection, query: str, values: Sequence[int | str], statement_timeout: float
) -> int:
    """One read-only transaction around ``query``, rolled back; the number of rows it returned.

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
    results = await _pipeline(pgconn, [_BEGIN, (set_timeout, (), ()), statement, _ROLLBACK])
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        # A statement failed, so the server skipped the ROLLBACK that followed it.
        await _pipeline(pgconn, [_ROLLBACK])
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise _error(result, encoding)
    return results[2].ntuples


async def _pipeline(pgconn: PGconn, statements: Sequence[Statement]) -> list[PGresult]:
    """Send ``statements`` and a Sync in one write; the result of each statement."""
    pgconn.enter_pipeline_mode()
    for text, values, types in statements:
        pgconn.send_query_params(text, values, param_types=types)
    pgconn.pipeline_sync()
    while pgconn.flush():
        await _ready(pgconn, write=True)
    results: list[PGresult] = []
    current: PGresult | None = None
    while True:
        while pgconn.is_busy():
            await _ready(pgconn)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            # libpq ends the results of each statement with None; one more means the connection
            # is gone, and waiting for the Sync would spin without ever yielding to the loop.
            if current is None:
                raise _lost(pgconn)
            results.append(current)
            current = None
        elif result.status == pq.ExecStatus.PIPELINE_SYNC:
            break
        elif result.status in _COPY:
            # libpq would hand out the same COPY result forever.
            raise psycopg.NotSupportedError("COPY cannot run in a warm-up query")
        else:
            current = result
    if len(results) != len(statements):
        raise _lost(pgconn)
    pgconn.exit_pipeline_mode()
    return results


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


@functools.lru_cache(maxsize=64)
def _positional(query: str) -> tuple[str, tuple[str, ...]]:
    """``query`` with ``$1``, ``$2``... for its ``:name`` parameters, and the names in order."""
    compiled = sqlalchemy.text(query).compile(dialect=_DOLLAR_PARAMS)
    return compiled.string, tuple(compiled.positiontup or ())


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
