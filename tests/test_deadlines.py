"""One timer for many deadlines (traffic/deadlines.py): what asyncio.timeout does, for less."""

from __future__ import annotations

import asyncio

import pytest

from warmgate.traffic.deadlines import Deadlines


def test_a_block_past_its_deadline_raises_timeout_within_the_resolution() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(0.02)
        started = loop.time()
        with pytest.raises(TimeoutError), deadlines.within(0.05):
            await loop.create_future()  # never done
        return loop.time() - started

    elapsed = asyncio.run(scenario())
    assert 0.05 <= elapsed < 1.0


def test_a_block_that_ends_in_time_is_left_alone_and_the_task_stays_uncancelled() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(0.01)
        for _ in range(3):
            with deadlines.within(5.0):
                await asyncio.sleep(0)
        # Past a few of the timer's checks, nothing cancels the task late.
        await asyncio.sleep(0.05)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    asyncio.run(scenario())


def test_each_task_gets_its_own_deadline() -> None:
    async def scenario() -> list[str]:
        deadlines = Deadlines(0.01)
        release = asyncio.Event()

        async def waits(seconds: float) -> str:
            try:
                with deadlines.within(seconds):
                    await release.wait()
            except TimeoutError:
                return "timed out"
            return "done"

        short = asyncio.create_task(waits(0.03))
        long = asyncio.create_task(waits(30.0))
        first = await short
        release.set()
        return [first, await long]

    assert asyncio.run(scenario()) == ["timed out", "done"]


def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(0.01)
        entered = loop.create_future()

        async def waits() -> None:
            with deadlines.within(30.0):
                entered.set_result(None)
                await loop.create_future()

        task = asyncio.create_task(waits())
        await entered
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_deadline_still_holds_on_a_second_event_loop() -> None:
    """The timer of a loop that ended never runs: a new loop gets a timer of its own."""
    deadlines = Deadlines(0.01)

    async def scenario() -> None:
        with deadlines.within(0.02):
            await asyncio.get_running_loop().create_future()

    for _ in range(2):
        with pytest.raises(TimeoutError):
            asyncio.run(scenario())


def test_outside_a_task_it_says_so() -> None:
    deadlines = Deadlines(0.01)
    with pytest.raises(RuntimeError, match="only inside a task"), deadlines.within(1.0):
        pass
    with pytest.raises(ValueError, match="positive"):
        Deadlines(0)
