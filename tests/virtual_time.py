"""An asyncio event loop on a virtual clock, for tests of what the load does *when*.

Theory of operation: the loop's clock (``loop.time()``, which ``asyncio.sleep``, ``call_later``
and ``asyncio.timeout`` all read) is a number that only moves when the loop has nothing to do:
where a real loop would block in ``select(timeout)`` until its next timer, this one jumps the
clock to that timer at once. Ready callbacks always run before the clock moves, so the order of
events is the order the code asks for, and a schedule of "200 requests a second for 2 seconds"
yields the same samples on an idle laptop and on a busy CI machine.

Only code that waits through the loop's timers belongs here (the load with drivers that
``await asyncio.sleep``): real sockets would still be polled, but their latency would not
advance the clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Never blocks: with nothing ready, moves the clock to the loop's next timer instead."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("the loop would wait forever: nothing is scheduled")
        self._clock[0] += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` starts at 0 and moves only when idle."""

    def __init__(self) -> None:
        self._clock = [0.0]
        super().__init__(_JumpingSelector(self._clock))

    def time(self) -> float:
        """Virtual seconds since the loop was made."""
        return self._clock[0]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coroutine)
