"""Regex captures off the event loop, each under a time budget.

RE2 matches in time linear in the answer, but linear in 1 MiB times a large pattern still takes
seconds in its slowest mode (a pattern whose automaton outgrows RE2's memory), far too long to
hold the event loop that sends every request, takes signals and keeps the deadline. So a
:class:`Matcher` runs each job on a thread of its own (RE2 lets go of the interpreter lock while
it matches) and waits for it at most :data:`MATCH_BUDGET`, counted from when the job was handed
over: past that, :class:`OverBudgetError`, and the step fails with a reason. A match cannot be
stopped once it runs; it ends by itself (``capture.MAX_PROGRAM_SIZE`` bounds it), its result
unused, while later jobs wait their turn on their own budget, and a job whose caller stopped
waiting is never started. One thread per matcher, so a pattern that is too slow costs one core,
not all of them; a daemon thread, so a process that exits (a SIGTERM) never waits for a match.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

MATCH_BUDGET = 1.0
"""Seconds a regex capture may take, waiting for its turn included (a usual match of 1 MiB takes
milliseconds)."""

_Job = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class OverBudgetError(Exception):
    """A job did not finish within the matcher's budget."""


class Matcher:
    """Runs jobs one at a time on a daemon thread; each caller waits at most ``budget``."""

    def __init__(self, budget: float = MATCH_BUDGET) -> None:
        self.budget = budget
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, job: Callable[[], T]) -> T:
        """``job()``'s result (or its exception), or :class:`OverBudgetError` past the budget."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="warmgate-capture", daemon=True
            )
            self._thread.start()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, future))
        try:
            async with asyncio.timeout(self.budget):
                # Cancelled by the timeout, a job not started yet is never started.
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise OverBudgetError from None

    def close(self) -> None:
        """Let the thread end once the job it runs (if any) is done; it is not waited for."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting
            try:
                result = job()
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who judges it
                future.set_exception(exc)
            else:
                future.set_result(result)
