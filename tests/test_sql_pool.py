"""Taking a connection from warmgate's own PostgreSQL and MySQL pools (traffic/sql/pool.py)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy

from warmgate.traffic.sql.pool import take_free


def test_a_free_connection_is_taken_at_once_and_a_full_pool_gives_sqlalchemys_timeout() -> None:
    async def scenario() -> None:
        free = asyncio.Semaphore(1)
        await take_free(free, 0.05)
        assert free.locked()
        with pytest.raises(sqlalchemy.exc.TimeoutError, match="no free connection in the pool"):
            await take_free(free, 0.05)
        assert free.locked()  # the one connection is still taken, not given twice

    asyncio.run(scenario())


def test_a_connection_given_back_while_waiting_is_taken() -> None:
    async def scenario() -> None:
        free = asyncio.Semaphore(1)
        await take_free(free, 1.0)
        waiter = asyncio.create_task(take_free(free, 30.0))
        await asyncio.sleep(0)  # let the waiter queue on the semaphore
        assert not waiter.done()
        free.release()
        await asyncio.wait_for(waiter, 5.0)
        assert free.locked()

    asyncio.run(scenario())
