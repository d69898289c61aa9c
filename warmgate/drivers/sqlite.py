"""SQLite for the SQL driver: SQLAlchemy's asyncio engine over aiosqlite.

aiosqlite runs each connection on a thread of its own, so a query never blocks the event loop.
The file is opened read-only (a ``file:...?mode=ro`` URI, see ``sql.py``) and each connection
also gets ``PRAGMA query_only``; every query runs in a transaction that is rolled back, and
returning a connection to the pool rolls back again. SQLite has no statement timeout: at the
deadline the query is interrupted on its own connection.

Rows are fetched ``CHUNK_ROWS`` at a time from a server-side cursor of SQLAlchemy's aiosqlite
adapter and counted, never kept; past the row cap the cursor is closed, which stops the query.
The query runs on the adapter's cursor itself rather than through a SQLAlchemy ``Result``: its
plain cursor fetches the whole result first, and its streaming one fetches a first row on its
own, one more trip to the connection's thread on every query. Errors are then the database
driver's own (``sqlite3.Error``), which ``sql.classify`` reads like the wrapped ones. The
connection holds no session state beyond the transaction, so it goes back to the pool as it is.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from warmgate.drivers.sqlcheck import Dialect, binding

CHUNK_ROWS = 100
"""Rows fetched at once while a result is counted."""

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
        self, query: str, params: Mapping[str, int | str], statement_timeout: float, cap: int
    ) -> int:
        """Run ``query`` once in a transaction, rolled back; the rows it returned, counted up to
        ``cap + 1``.

        The query is interrupted after ``statement_timeout`` seconds.
        """
        async with self._engine.connect() as connection:
            work = connection.run_sync(_transaction, _statement(query), params, cap)
            return await _interrupt_at_deadline(connection, work, statement_timeout)

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
    connection: Connection, statement: Statement, params: Mapping[str, int | str], cap: int
) -> int:
    """One transaction, rolled back; the row count, up to ``cap + 1``.

    Runs as one unit in SQLAlchemy's synchronous API (one greenlet switch instead of one per
    call), still on the event loop: every call to the adapter inside yields to it.
    """
    text, names = statement
    adapter = connection.connection.dbapi_connection
    assert adapter is not None  # noqa: S101 - a checked-out connection always has one
    cursor = adapter.cursor(server_side=True)
    count = 0
    try:
        cursor.execute(text, [params[name] for name in names])
        if cursor.description is not None:
            # A short chunk is the last: asking again would cost one more trip to the thread.
            while len(chunk := cursor.fetchmany(CHUNK_ROWS)) == CHUNK_ROWS and count < cap:
                count += CHUNK_ROWS
            count = min(count + len(chunk), cap + 1)
    finally:
        cursor.close()
        adapter.rollback()
    return count


async def _interrupt_at_deadline(
    connection: AsyncConnection, work: Coroutine[Any, Any, int], seconds: float
) -> int:
    """Await ``work``; interrupt SQLite after ``seconds`` (it has no statement timeout)."""
    raw = await connection.get_raw_connection()
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
        driver = raw.driver_connection
        if not done and driver is not None:
            # Safe while this connection is ours: it stops this query and nothing else.
            await driver.interrupt()
        return await task
    finally:
        if not task.done():
            task.cancel()
