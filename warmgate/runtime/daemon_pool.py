"""The primer's default executor: threads that nobody waits for when the process ends.

asyncio runs blocking calls it cannot avoid on the loop's default executor, and the one that
matters here is ``getaddrinfo``: aiohttp, psycopg and aiomysql resolve host names there. A
lookup sent to a DNS server that never answers blocks its thread for the resolver's timeouts
(10 s and more), and the standard ``ThreadPoolExecutor`` is joined twice on the way out — by
``asyncio.run`` and again at interpreter exit — so ``prime`` wrote its final status at once after
SIGTERM and then took ten seconds to exit. :class:`DaemonPool` runs the same jobs on daemon
threads and its :meth:`~DaemonPool.shutdown` never waits: a lookup still running when the
process ends ends with it. Nothing run here holds state worth finishing (a status write has its
own thread, which is waited for).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonPool(concurrent.futures.ThreadPoolExecutor):
    """Up to ``workers`` daemon threads, started as jobs need them, never joined.

    A ``ThreadPoolExecutor`` by type only (``loop.set_default_executor`` takes nothing else):
    it uses none of the parent's threads or queue.
    """

    def __init__(self, workers: int = 8, name: str = "warmgate-blocking") -> None:
        super().__init__(workers, name)
        self._workers = workers
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._started = 0
        self._closed = False

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on a thread of the pool."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            self._jobs.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and self._started < self._workers:
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._started}", daemon=True
                ).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more jobs and let idle threads end; never waits, whatever ``wait`` says."""
        with self._lock:
            self._closed = True
            for _ in range(self._started):
                self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, as the stdlib pool does
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            self._idle.release()
