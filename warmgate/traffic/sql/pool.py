"""Taking a connection from a pool of PostgreSQL or MySQL connections of warmgate's own."""

from __future__ import annotations

import asyncio

import sqlalchemy


async def take_free(free: asyncio.Semaphore, wait: float) -> None:
    """Take one of the pool's free connections, waiting at most ``wait`` seconds for one.

    A timer runs only when the query has to wait: taking a free connection costs nothing more
    than the semaphore. Past ``wait``, the error SQLAlchemy's pool raises, so that every
    database reports it alike."""
    if not free.locked():
        await free.acquire()  # returns at once
        return
    try:
        async with asyncio.timeout(wait):
            await free.acquire()
    except TimeoutError:
        raise sqlalchemy.exc.TimeoutError("no free connection in the pool") from None
