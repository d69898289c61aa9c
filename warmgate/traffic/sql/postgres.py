"""PostgreSQL for the SQL driver: a small pool of psycopg connections, one round trip per query.

Theory of operation. warmgate measures latency from the client, so its own work per query must
stay small next to the database's. Each query is one transaction, written to the server at once
in libpq's pipeline mode and answered in one round trip::

    BEGIN READ ONLY; [SET LOCAL standard_conforming_strings = on;]
    SET LOCAL statement_timeout = <ms>; <the query>; ROLLBACK;
    SELECT pg_advisory_unlock_all(); DEALLOCATE ALL; Sync

This keeps every guarantee listed in ``driver.py``:

- BEGIN READ ONLY and SET LOCAL are sent in every transaction, so a query that turned the
  session's ``default_transaction_read_only`` or ``statement_timeout`` off changes nothing for
  the next query on that connection;
- the server reads the query as the statement check read it (``pgcheck.py``), whatever the
  server, the database or the role set ``standard_conforming_strings`` to. The setting changes
  what a backslash in a string means, and whether ``U&'...'`` strings are accepted, so a query
  whose bytes hold a backslash or an ``&`` anywhere is parsed only after ``SET LOCAL
  standard_conforming_strings = on`` in its transaction, and any other query, which reads the
  same either way, goes without (that saves the server a seventh of the transaction:
  docs/benchmarks.md). The bytes are checked, after encoding: a client encoding that would send
  a character as another (``¥`` as a backslash in EUC_JP) makes the query fail instead;
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
- the query's rows are counted as they arrive, in chunks of at most 1 MiB of rows (libpq's
  chunked rows mode, or row by row before libpq 17), never held all at once; past the row cap
  the answer is left unread and the connection closed, which stops the query on the server;
- no row wider than the target's ``row_bytes`` is ever sent: libpq would hold it whole before
  warmgate sees it, so the server drops it. The first time a query runs with parameters of
  given types, it is parsed and described without running (``_describe``, in a read-only
  transaction rolled back) and, unless its columns' types already bound its rows, read as a
  subquery that sends NULLs and a flag in place of a wide row (``pgrows.guard``); the wrapped
  query is parsed once too, and a query PostgreSQL cannot read as a subquery (SHOW, EXPLAIN)
  runs as it is, unchecked;
- libpq is in non-blocking mode (psycopg opens its connections so): a write that would block is
  finished when the event loop says the socket is writable, and the answer is read when it says
  the socket is readable, so nothing waits on the loop. A pooled connection's socket stays
  registered with the loop from one query to the next (:class:`Watcher`), and a query waits for
  a free connection under a timer only when none is free: per query, the client does only what
  the query needs.

Queries bypass SQLAlchemy's pool and psycopg's cursors: checking a connection out of
SQLAlchemy's asyncio pool and back costs about as much CPU as this whole transaction, and
psycopg's cursors flush and poll the socket once per statement even in pipeline mode (figures in
docs/sql.md, "Throughput"). SQLAlchemy still turns the URL into connection arguments, as its
psycopg dialect does; ``binding.py`` turns ``:name`` parameters into ``$1``, as the statement
check read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy
from psycopg import pq
from psycopg.pq.abc import PGconn, PGresult
from sqlalchemy.engine import URL

from warmgate.config.sql_target import DEFAULT_ROW_BYTES
from warmgate.traffic.sql.check import Dialect, binding
from warmgate.traffic.sql.pgrows import Column, Shape, Shapes
from warmgate.traffic.sql.pgtext import bind, encoded, encoding_of, type_of
from warmgate.traffic.sql.pool import Slots
from warmgate.traffic.sql.rows import Counted, rows_per_read

APPLICATION_NAME = "warmgate"
"""What PostgreSQL shows in ``pg_stat_activity.application_name`` for warm-up connections."""

Connection = psycopg.AsyncConnection[Any]
Statement = tuple[bytes, Sequence[bytes], Sequence[int]]
"""``(SQL, parameter values as text, parameter type OIDs)``; 0 lets the server infer the type."""
Step = Statement | tuple[bytes, None, Sequence[int]]
"""A statement to run, or (with ``None`` for the values) to parse and describe only."""

_BEGIN: Statement = (b"BEGIN READ ONLY", (), ())
_ROLLBACK: Statement = (b"ROLLBACK", (), ())
_RESET: tuple[Statement, ...] = (
    (b"SELECT pg_advisory_unlock_all()", (), ()),
    (b"DEALLOCATE ALL", (), ()),
)
_STRINGS: Statement = (b"SET LOCAL standard_conforming_strings = on", (), ())
_QUERY = 3
"""The query's place in the statements of a describing transaction (after BEGIN and two SET
LOCAL); in a query's transaction, it follows :func:`_around`'s statements before it."""
_BYTEA_OUTPUT: Statement = (b"SELECT current_setting('bytea_output')", (), ())
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_UNDONE = frozenset({_FATAL_ERROR, pq.ExecStatus.PIPELINE_ABORTED})
_IDLE = pq.TransactionStatus.IDLE
_ROWS = frozenset({pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK})
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
        self._slots = Slots(size)
        self._idle: list[tuple[Connection, Watcher]] = []
        self._closed = False
        self._shapes = Shapes()

    async def rows(
        self,
        query: str,
        params: Mapping[str, int | str],
        statement_timeout: float,
        cap: int,
        row_bytes: int = DEFAULT_ROW_BYTES,
    ) -> Counted:
        """Run ``query`` once in a read-only transaction, rolled back; the rows it returned,
        counted up to ``cap + 1`` (more than ``cap``: reading stopped there), and those wider
        than ``row_bytes``, which the server did not send."""
        text, names = _positional(query)
        if not self._slots.take():
            await self._slots.wait(self._wait)
        try:
            if self._idle:
                connection, watcher = self._idle.pop()
            else:
                connection = await self._connect()
                watcher = Watcher(connection)
            try:
                values = [params[name] for name in names]
                key = (text, tuple(map(type_of, values)), row_bytes)
                now = time.monotonic()
                shape = self._shapes.get(key, now)
                if shape is None:
                    describe = functools.partial(
                        _describe, connection, key[1], statement_timeout, watcher
                    )
                    shape = await self._shapes.learn(key, describe, now)
                try:
                    return await read_only(
                        connection, shape, values, statement_timeout, cap, watcher=watcher
                    )
                except psycopg.Error:
                    self._shapes.forget(key)
                    raise
            finally:
                if not self._closed and _reusable(connection):
                    self._idle.append((connection, watcher))
                else:
                    watcher.close()
                    await connection.close()
        finally:
            self._slots.give_back()

    async def aclose(self) -> None:
        """Close the idle connections now, and the ones in use when their query ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection, watcher in idle:
            watcher.close()
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
    shape: Shape | str,
    values: Sequence[int | str],
    statement_timeout: float,
    cap: int,
    *,
    watcher: Watcher | None = None,
) -> Counted:
    """One read-only transaction around the query, rolled back, then the session reset; the
    rows it returned, counted up to ``cap + 1``, and those the server dropped as too wide.

    ``shape`` is what :func:`describe` made of the query (a plain string is sent as it is);
    ``watcher`` the connection's :class:`Watcher`, if it has one (the pool's connections do).
    Raises the psycopg error of the first statement that failed (see the module docstring).
    """
    if isinstance(shape, str):
        shape = Shape(shape, None, rows_per_read(DEFAULT_ROW_BYTES))
    pgconn = connection.pgconn
    if pgconn.transaction_status != _IDLE:
        raise psycopg.InterfaceError("the connection is inside a transaction already")
    encoding = encoding_of(connection)
    texts: list[bytes] = []
    types: list[int] = []
    for value in values:
        text, oid = bind(value, encoding)
        texts.append(text)
        types.append(oid)
    text, backslash = encoded(shape.query, encoding)
    before, after = _around(statement_timeout, strings=backslash)
    transaction = (*before, (text, texts, types), *after)
    at = len(before)
    results, counted = await _pipeline(pgconn, transaction, shape, cap, watcher, at=at)
    if counted.rows > cap:
        return counted  # the answer is left unread: the connection cannot be reused
    # After a statement fails, the server skips the rest: the last one then failed or was
    # skipped, so it alone tells whether all went well.
    if results[-1].status not in _UNDONE and pgconn.transaction_status == _IDLE:
        return counted
    _, error = await _finish(pgconn, results, at, watcher)
    if error is not None:
        index, result = error
        if index > at:
            if watcher is not None:
                watcher.close()
            await connection.close()  # it may hold what the reset was to release
        raise _error(result, encoding)
    return counted


async def _describe(
    connection: Connection,
    types: Sequence[int],
    statement_timeout: float,
    watcher: Watcher | None,
    query: str,
) -> tuple[list[Column], bool]:
    """``pgrows.Describe`` on ``connection``: ``query`` parsed and described as the unnamed
    statement (which the next query replaces), never run, in a read-only transaction rolled
    back; its columns, and whether ``bytea_output`` is hex."""
    pgconn = connection.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.InterfaceError("the connection is inside a transaction already")
    encoding = connection.info.encoding
    described: Step = (encoded(query, encoding)[0], None, types)
    steps = [_BEGIN, _STRINGS, _set_timeout(statement_timeout), described, _BYTEA_OUTPUT, _ROLLBACK]
    results, _ = await _pipeline(pgconn, steps, watcher=watcher)
    results, error = await _finish(pgconn, results, len(steps), watcher)
    if error is not None:
        raise _error(error[1], encoding)
    # The Parse's result comes first, then the description, then the setting.
    description, setting = results[_QUERY + 1], results[_QUERY + 2]
    columns = [
        Column(description.ftype(i), description.fmod(i)) for i in range(description.nfields)
    ]
    return columns, setting.get_value(0, 0) == b"hex"


async def _finish(
    pgconn: PGconn, results: list[PGresult], kept: int, watcher: Watcher | None = None
) -> tuple[list[PGresult], tuple[int, PGresult] | None]:
    """Roll back a transaction that a failed statement left open (the server skipped the
    ROLLBACK and the reset after it); the results, and the first failure with its index."""
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        cleanup, _ = await _pipeline(pgconn, [_ROLLBACK, *_RESET], watcher=watcher)
        results = results[: kept + 1] + cleanup
    failed = _failed(results)
    return results, (failed, results[failed]) if failed is not None else None


def _failed(results: Sequence[PGresult]) -> int | None:
    """The index of the first result that is an error, if any."""
    return next(
        (index for index, result in enumerate(results) if result.status == _FATAL_ERROR), None
    )


async def _pipeline(
    pgconn: PGconn,
    statements: Sequence[Step],
    shape: Shape | None = None,
    cap: int = 0,
    watcher: Watcher | None = None,
    *,
    at: int = _QUERY,
) -> tuple[list[PGresult], Counted]:
    """Send ``statements`` and a Sync in one write; the last result of each statement, and the
    rows that the statement at index ``at`` returned when ``shape`` is given, counted in chunks
    up to ``cap + 1``, with those the server flagged as dropped.

    A statement whose values are ``None`` is parsed and described, not run: two results. Past
    ``cap`` it returns at once, leaving the rest of the answer unread. ``watcher`` tells when
    the answer can be read (without one, the socket is watched for this call only).
    """
    expected = _send(pgconn, statements)
    readable = watcher.readable if watcher is not None else functools.partial(_ready, pgconn)
    while pgconn.flush():
        await _ready(pgconn, write=True)
    counted = at if shape is not None else -1
    flag = shape.flag if shape is not None else None
    results: list[PGresult] = []
    current: PGresult | None = None
    count = wide = 0
    while True:
        # Inline rather than a coroutine per result: a chunk may be a single row.
        while pgconn.is_busy():
            await readable()
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            # libpq ends the results of each statement with None; one more means the connection
            # is gone, and waiting for the Sync would spin without ever yielding to the loop.
            if current is None:
                raise _lost(pgconn)
            results.append(current)
            current = None
            if len(results) == counted:
                _count_in_chunks(pgconn, shape.per_read)  # type: ignore[union-attr]
            continue
        status = result.status
        if status in _ROWS and len(results) == counted:
            rows = result.ntuples
            count += rows
            if flag is not None and rows:
                wide += _flagged(result, flag, rows)
            if count > cap:
                return results, Counted(cap + 1, wide)
        elif status == _SYNC:
            break
        elif status in _COPY:
            # libpq would hand out the same COPY result forever.
            raise psycopg.NotSupportedError("COPY cannot run in a warm-up query")
        current = result
    if len(results) != expected:
        raise _lost(pgconn)
    pgconn.exit_pipeline_mode()
    unchecked = shape.unchecked if shape is not None else None
    return results, Counted(count, wide, unchecked=unchecked)


def _send(pgconn: PGconn, statements: Sequence[Step]) -> int:
    """Enter pipeline mode and queue ``statements`` and a Sync; the results to expect."""
    pgconn.enter_pipeline_mode()
    expected = 0
    for text, values, types in statements:
        if values is None:
            pgconn.send_prepare(b"", text, param_types=types)
            pgconn.send_describe_prepared(b"")
            expected += 2
        else:
            pgconn.send_query_params(text, values, param_types=types)
            expected += 1
    pgconn.pipeline_sync()
    return expected


def _flagged(result: PGresult, flag: int, rows: int) -> int:
    """How many of a chunk's ``rows`` the guard dropped (true in its flag column)."""
    if rows == 1:
        return result.get_value(0, flag) == b"t"
    return [result.get_value(row, flag) for row in range(rows)].count(b"t")


def _count_in_chunks(pgconn: PGconn, rows: int) -> None:
    """Have libpq hand out the next statement's rows ``rows`` at a time."""
    try:
        pgconn.set_chunked_rows_mode(rows)
    except psycopg.NotSupportedError:  # libpq before 17
        with contextlib.suppress(psycopg.OperationalError):
            pgconn.set_single_row_mode()
    except psycopg.OperationalError:
        pass  # refused only when no row can come: the pipeline was aborted before it


class Watcher:
    """Tells when a connection's socket can be read, watching it from one query to the next.

    Adding the socket to the event loop's selector and removing it again for every query costs
    two system calls and about a tenth of the client's CPU for a query (docs/benchmarks.md). So
    the socket stays watched while its connection is pooled. The selector is level-triggered:
    it calls back once more after the query woken has read the answer, when that query's task
    had not run yet; a second call in a row with no query waiting means the socket holds what
    nobody reads (the server sent a notice, or closed the connection), and watching then stops
    until the next query, so the loop never spins on it. It must be closed before its
    connection is.
    """

    __slots__ = ("_loop", "_socket", "_unread", "_waiting", "_watching")

    def __init__(self, connection: Connection) -> None:
        self._loop = asyncio.get_running_loop()
        self._socket = connection.pgconn.socket
        self._waiting: asyncio.Future[None] | None = None
        self._watching = False
        self._unread = 0

    async def readable(self) -> None:
        """Wait until the socket can be read without blocking."""
        waiting = self._loop.create_future()
        self._waiting = waiting
        if not self._watching:
            self._loop.add_reader(self._socket, self._wake)
            self._watching = True
        try:
            await waiting
        finally:
            self._waiting = None

    def _wake(self) -> None:
        waiting = self._waiting
        if waiting is None:
            self._unread += 1
            if self._unread > 1:
                self.close()  # nobody reads: stop until the next query
            return
        self._unread = 0
        if not waiting.done():
            waiting.set_result(None)

    def close(self) -> None:
        """Stop watching the socket (before its connection closes, or when nobody reads)."""
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._socket)


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


def _set_timeout(seconds: float) -> Statement:
    return (b"SET LOCAL statement_timeout = %d" % max(1, round(seconds * 1000)), (), ())


@functools.lru_cache(maxsize=16)
def _around(
    seconds: float, *, strings: bool
) -> tuple[tuple[Statement, ...], tuple[Statement, ...]]:
    """The statements sent before and after the query, for a timeout of ``seconds``; with
    ``strings``, ``standard_conforming_strings`` is set on before the query."""
    timeout = _set_timeout(seconds)
    before = (_BEGIN, _STRINGS, timeout) if strings else (_BEGIN, timeout)
    return before, (_ROLLBACK, *_RESET)


@functools.lru_cache(maxsize=64)
def _positional(query: str) -> tuple[str, tuple[str, ...]]:
    """``query`` with ``$1``, ``$2``... for its ``:name`` parameters, and the names in order,
    as the statement check read it (``binding.py``)."""
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
