"""Taking a connection from a pool of PostgreSQL or MySQL connections of warmgate's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import sqlalchemy


class Slots:
    """How many of a pool's ``size`` connections are in use.

    Taking a free one is a comparison (:meth:`take`), with no coroutine and no timer, since a
    query runs for a third of a millisecond; only when every connection is in use does a query
    wait (:meth:`wait`), in turn, under a timer. A connection given back goes to the query that
    has waited longest.
    """

    __slots__ = ("_size", "_used", "_waiting")

    def __init__(self, size: int) -> None:
        self._size = size
        self._used = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def full(self) -> bool:
        """Whether every connection is in use."""
        return self._used >= self._size

    def take(self) -> bool:
        """Take a free connection's slot, if there is one and nobody is waiting for it."""
        if self._used < self._size and not self._waiting:
            self._used += 1
            return True
        return False

    async def wait(self, seconds: float) -> None:
        """Wait in turn for a slot, at most ``seconds``; past that, the error SQLAlchemy's
        pool raises, so that every database reports it alike."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed over just as the wait ended: pass it on
            else:
                waiter.cancel()
                # give_back() may have dropped it already, cancelled, on its way to the next.
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise sqlalchemy.exc.TimeoutError("no free connection in the pool") from None
            raise

    def give_back(self) -> None:
        """Give a slot back: to the query waiting longest, else to the pool."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._used -= 1
