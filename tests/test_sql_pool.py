"""Taking a connection from warmgate's own PostgreSQL and MySQL pools (traffic/sql/pool.py)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy

from warmgate.traffic.sql.pool import Slots


def test_a_free_slot_is_taken_at_once_and_a_full_pool_gives_sqlalchemys_timeout() -> None:
    async def scenario() -> None:
        slots = Slots(1)
        assert slots.take()
        assert slots.full
        assert not slots.take()
        with pytest.raises(sqlalchemy.exc.TimeoutError, match="no free connection in the pool"):
            await slots.wait(0.05)
        assert slots.full  # the one connection is still taken, not given twice
        slots.give_back()
        assert not slots.full
        assert slots.take()

    asyncio.run(scenario())


def test_a_slot_given_back_goes_to_the_query_waiting_longest() -> None:
    async def scenario() -> None:
        slots = Slots(1)
        assert slots.take()
        first = asyncio.create_task(slots.wait(30.0))
        second = asyncio.create_task(slots.wait(30.0))
        await asyncio.sleep(0)  # let both queue
        assert not first.done()
        assert not second.done()
        slots.give_back()
        await asyncio.wait_for(first, 5.0)
        assert not second.done()
        assert not slots.take()  # handed over, not freed: a newcomer does not jump the queue
        slots.give_back()
        await asyncio.wait_for(second, 5.0)
        slots.give_back()
        assert not slots.full

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_leaves_no_trace() -> None:
    """A cancelled or timed-out wait neither holds a slot nor keeps its place in the queue."""

    async def scenario() -> None:
        slots = Slots(1)
        assert slots.take()
        cancelled = asyncio.create_task(slots.wait(30.0))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        with pytest.raises(sqlalchemy.exc.TimeoutError):
            await slots.wait(0.01)
        slots.give_back()
        assert not slots.full
        assert slots.take()

    asyncio.run(scenario())


def test_a_slot_handed_over_as_the_wait_is_cancelled_is_passed_on() -> None:
    """The slot reached the waiter in the same turn of the loop as its cancellation: the
    waiter leaves, and the slot goes back instead of being lost."""

    async def scenario() -> None:
        slots = Slots(1)
        assert slots.take()
        waiter = asyncio.create_task(slots.wait(30.0))
        await asyncio.sleep(0)
        slots.give_back()  # handed to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not slots.full
        assert slots.take()

    asyncio.run(scenario())


def test_a_wait_cancelled_before_a_slot_is_given_back_ends_as_cancelled() -> None:
    """The waiter was cancelled, then a slot given back before it ran: the slot goes to the pool
    (the cancelled waiter is skipped), and the waiter ends cancelled, not with another error."""

    async def scenario() -> None:
        slots = Slots(1)
        assert slots.take()
        waiter = asyncio.create_task(slots.wait(30.0))
        await asyncio.sleep(0)
        waiter.cancel()
        slots.give_back()  # drops the cancelled waiter from the queue
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not slots.full
        assert slots.take()

    asyncio.run(scenario())
