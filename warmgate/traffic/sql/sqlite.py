"""SQLite for the SQL driver: SQLAlchemy's asyncio engine over aiosqlite.

aiosqlite runs each connection on a thread of its own, so a query never blocks the event loop.
The file is opened read-only (a ``file:...?mode=ro`` URI, see ``driver.py``) and each connection
also gets ``PRAGMA query_only``; every query runs in a transaction that is rolled back, and
returning a connection to the pool rolls back again. SQLite has no statement timeout: at the
deadline the query is interrupted on its own connection.

The whole query, from ``execute`` to the rollback, is one trip to the connection's thread
(aiosqlite's own queue, ``_execute``, the call its cursors make): the rows are counted there one
at a time, each dropped before the next is made, and past the row cap the cursor is closed,
which stops the query. A SQLAlchemy ``Result`` would fetch the whole result first, or a first row
on its own, and fetching chunks from the loop costs a trip per chunk. Before each query the
connection gets SQLite's own length limit (``SQLITE_LIMIT_LENGTH``) at the target's
``row_bytes``: SQLite then never makes a longer string or blob and stops the query there
(``SQLITE_TOOBIG``), which counts as a row too wide to hold, the rows after it unread. Errors
are the database driver's own (``sqlite3.Error``), which ``sql.classify`` reads like wrapped
ones. The connection holds no session state beyond the transaction, so it goes back to the pool
as it is.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from warmgate.config.sql_target import DEFAULT_ROW_BYTES
from warmgate.traffic.sql.check import Dialect, binding
from warmgate.traffic.sql.rows import Counted

Statement = tuple[str, tuple[str, ...]]
"""A query in SQLite's own parameter style (``?``), and the parameter names in order."""


class SqlitePool:
    """SQLAlchemy's pool of read-only SQLite connections, at most ``size`` of them."""

    errors: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error, OSError)
    """What :meth:`rows` raises when the database or the connection fails."""

    def __init__(self, url: URL, size: int, wait: float) -> None:
        self._engine = create_async_engine(
            url,
            pool_size=size,
            max_overflow=0,
            pool_timeout=wait,
            pool_reset_on_return="rollback",
            hide_parameters=True,
        )
        event.listen(self._engine.sync_engine, "connect", _query_only)

    async def rows(
        self,
        query: str,
        params: Mapping[str, int | str],
        statement_timeout: float,
        cap: int,
        row_bytes: int = DEFAULT_ROW_BYTES,
    ) -> Counted:
        """Run ``query`` once in a transaction, rolled back; the rows it returned, counted up to
        ``cap + 1``, and whether SQLite stopped at a value longer than ``row_bytes``.

        The query is interrupted after ``statement_timeout`` seconds.
        """
        text, names = _statement(query)
        values = [params[name] for name in names]
        async with self._engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            if driver is None:
                raise sqlite3.InterfaceError("the pooled connection has no SQLite connection")
            # The connection's own thread runs _transaction (aiosqlite's queue, as its cursors do).
            work = driver._execute(_transaction, driver._conn, text, values, cap, row_bytes)
            return await _interrupt_at_deadline(driver, work, statement_timeout)

    async def write_access(self) -> str | None:
        """Always ``None``: the file is opened read-only, whoever runs warmgate."""
        return None

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()


def _query_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


def _statement(query: str) -> Statement:
    bound = binding(query, Dialect.SQLITE)
    return bound.text, bound.names


def _transaction(
    connection: sqlite3.Connection,
    text: str,
    values: Sequence[int | str],
    cap: int,
    row_bytes: int,
) -> Counted:
    """On the connection's thread: one transaction, rolled back; the rows counted up to
    ``cap + 1``, one at a time, and whether SQLite stopped at a value longer than ``row_bytes``
    (the rows before it counted, not it)."""
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, row_bytes)
    cursor = connection.cursor()
    count, executed = 0, False
    try:
        cursor.execute(text, values)  # makes the first row
        executed = True
        for count, _ in enumerate(cursor, start=1):
            if count > cap:
                break
    except sqlite3.DataError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_TOOBIG:
            raise
        # The cursor makes the next row as it hands one out: when making it failed, the row it
        # was handing out existed all the same (when execute failed, no row did).
        return Counted(count + 1 if executed else 0, wide=1, stopped=True)
    finally:
        cursor.close()
        connection.rollback()
    return Counted(count)


async def _interrupt_at_deadline(
    driver: aiosqlite.Connection, work: Coroutine[Any, Any, Counted], seconds: float
) -> Counted:
    """Await ``work``; interrupt SQLite after ``seconds`` (it has no statement timeout)."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if not done:
            # Safe while this connection is ours: it stops this query and nothing else.
            await driver.interrupt()
        return await task
    finally:
        if not task.done():
            task.cancel()
