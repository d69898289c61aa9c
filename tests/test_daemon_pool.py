"""The primer's default executor: jobs run on threads that no exit waits for."""

from __future__ import annotations

import asyncio
import threading

import pytest

from warmgate.runtime.daemon_pool import DaemonPool


def test_the_loop_ends_while_a_blocking_job_still_runs() -> None:
    """asyncio.run returns with a job (a DNS lookup that hangs) still blocked on the pool;
    the job finishes later, when released."""
    release = threading.Event()
    finished: list[bool] = []

    def lookup() -> None:
        finished.append(release.wait(60))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonPool(name="hung-lookup"))
        loop.run_in_executor(None, lookup)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert finished == []  # the stdlib pool would have waited here for the lookup's 60 s
    release.set()
    thread = next(t for t in threading.enumerate() if t.name.startswith("hung-lookup"))
    thread.join(30)
    assert finished == [True]


def test_jobs_run_side_by_side_up_to_the_limit_and_results_come_back() -> None:
    """Two jobs that wait for each other both finish (two threads); results and exceptions
    reach the callers; after shutdown no job is taken."""
    pool = DaemonPool(workers=2)
    first, second = threading.Event(), threading.Event()

    def meet(mine: threading.Event, other: threading.Event) -> bool:
        mine.set()
        return other.wait(30)

    a = pool.submit(meet, first, second)
    b = pool.submit(meet, second, first)
    assert (a.result(30), b.result(30)) == (True, True)
    failing = pool.submit(int, "not a number")
    with pytest.raises(ValueError, match="invalid literal"):
        failing.result(30)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(int, "1")
