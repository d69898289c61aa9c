"""Deadlines for many short awaits, kept by one timer.

Theory of operation. ``asyncio.timeout`` schedules a timer when it is entered and cancels it
when it is left; for a query that takes a third of a millisecond, that is about a tenth of the
client's CPU (the timer's handle, the heap it goes into, finding the task twice). Here the
awaits inside a deadline are kept in a dict, and one timer, running every ``resolution``
seconds while any of them is inside, cancels the tasks whose deadline has passed: a task is
given up on between its deadline and ``resolution`` seconds after it. That suits a deadline
that is a backstop, such as the SQL driver's (the database cancels the statement itself,
earlier).

Leaving works as ``asyncio.timeout``'s does: the cancellation a deadline caused becomes a
``TimeoutError``, and any other cancellation of the task (the load stopping) goes through.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any


class Deadlines:
    """A deadline for each ``with deadlines.within(seconds):`` block, enforced by one timer
    checking every ``resolution`` seconds."""

    __slots__ = ("_inside", "_loop", "_resolution", "_timer")

    def __init__(self, resolution: float) -> None:
        if resolution <= 0:
            raise ValueError("the resolution must be a positive number of seconds")
        self._resolution = resolution
        self._inside: dict[Within, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def within(self, seconds: float) -> Within:
        """A block the current task must leave within ``seconds`` (and ``resolution``), or
        raise ``TimeoutError`` from."""
        return Within(self, seconds)

    def current_task(self) -> asyncio.Task[Any]:
        """The task running now. asyncio.current_task() without a loop looks the running loop
        up, which costs a system call (getpid) on each call: the loop is looked up once here."""
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is None:  # no loop yet, or not the one running now
            try:
                task = asyncio.current_task()
            except RuntimeError:  # no loop is running
                task = None
            if task is None:
                raise RuntimeError("a deadline works only inside a task")
        return task

    def _enter(self, within: Within, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        if self._timer is None or self._loop is not loop:
            # No timer yet, or one of an earlier loop, which will never run: what is still
            # inside from that loop will never leave.
            self._inside = {block: due for block, due in self._inside.items() if block.on(loop)}
            self._loop = loop
            self._timer = loop.call_later(self._resolution, self._check, loop)
        self._inside[within] = time.monotonic() + seconds

    def _leave(self, within: Within) -> None:
        # The timer is left to run once more rather than cancelled: cancelling would cost
        # what this saves. (A block of an earlier loop may have been dropped already.)
        self._inside.pop(within, None)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            now = time.monotonic()
            for within, due in list(self._inside.items()):
                if due <= now:
                    within.expire()
        finally:  # whatever happened, the deadlines still inside keep their timer
            if self._inside:
                self._timer = loop.call_later(self._resolution, self._check, loop)
            else:
                self._timer = None


class Within:
    """One block under a deadline (made by :meth:`Deadlines.within`)."""

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_seconds", "_task")
    _task: asyncio.Task[Any]
    """The task inside, once entered."""

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._cancelling = 0
        self._expired = False

    def __enter__(self) -> Within:
        deadlines = self._deadlines
        task = deadlines.current_task()
        self._task = task
        self._cancelling = task.cancelling()
        deadlines._enter(self, task.get_loop(), self._seconds)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadlines._leave(self)
        if not self._expired:
            return
        # As asyncio.timeout: only when no other cancellation was asked for meanwhile.
        if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from error

    def on(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the task inside runs on ``loop``."""
        return self._task.get_loop() is loop

    def expire(self) -> None:
        """Cancel the task inside (the deadline has passed)."""
        if not self._expired:
            self._expired = True
            self._task.cancel()
