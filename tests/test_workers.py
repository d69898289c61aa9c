"""The endpoint's threads: reused for the next connection, ended when idle or stopped."""

from __future__ import annotations

import threading

from tests.helpers import poll
from warmgate.serve.workers import Workers


def test_a_thread_serves_one_item_after_another_and_ends_once_idle() -> None:
    """Items submitted one at a time reuse one thread, which ends after its idle time."""
    served: list[tuple[int, str]] = []
    done = threading.Event()

    def serve(item: int) -> None:
        served.append((item, threading.current_thread().name))
        done.set()

    workers: Workers[int] = Workers(serve, "test-worker", idle=0.5)
    for item in range(3):
        done.clear()
        workers.submit(item)
        assert done.wait(10)
        poll(lambda: workers.waiting() == 1, timeout=10, what="the thread to wait again")
    assert [item for item, _ in served] == [0, 1, 2]
    assert workers.threads() == 1
    poll(lambda: workers.threads() == 0, timeout=10, what="the idle thread to end")


def test_items_submitted_together_get_threads_of_their_own() -> None:
    """Items that block each get a thread: none waits for another to finish."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def serve(_item: int) -> None:
        started.release()
        release.wait(30)

    workers: Workers[int] = Workers(serve, "test-worker", idle=60.0)
    for item in range(5):
        workers.submit(item)
    for _ in range(5):
        assert started.acquire(timeout=10)
    assert workers.threads() == 5
    release.set()
    assert workers.stop(10)
    assert workers.threads() == 0
