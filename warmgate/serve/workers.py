"""Threads that serve the endpoint's connections, started as needed and kept a while.

A thread per connection costs a thread's start for every connection, about 0.1 ms of the
accepting thread's time, which a crowd of clients that reconnect as fast as they are closed
turns into a queue of connections waiting to be accepted, probes among them. Here a thread that
has served its connection waits :data:`IDLE` seconds for the next one before it ends, so the
threads are as many as the connections being served at the busiest moment of the last seconds,
and none once the port has been quiet for a while (the sidecar stays small). The number of
threads is bounded by whoever submits (the :class:`~warmgate.serve.client_io.Guard` admits at most
twice the connection cap), not here.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")

IDLE = 5.0
"""Seconds a thread waits for another connection before it ends."""


class Workers(Generic[Item]):
    """Runs ``serve(item)`` for every submitted item on a thread of its own."""

    def __init__(self, serve: Callable[[Item], None], name: str, idle: float = IDLE) -> None:
        self.serve = serve
        self.name = name
        self.idle = idle
        self._lock = threading.Condition()
        self._queue: deque[Item] = deque()
        self._threads = 0
        self._waiting = 0
        self._stopping = False

    def submit(self, item: Item) -> None:
        """Serve ``item`` on a waiting thread, or on a new one."""
        with self._lock:
            self._queue.append(item)
            if self._waiting >= len(self._queue):
                self._lock.notify()
                return
            self._threads += 1
        try:
            threading.Thread(target=self._run, name=self.name, daemon=True).start()
        except BaseException:
            with self._lock:
                self._threads -= 1
                self._queue.remove(item)
            raise

    def threads(self) -> int:
        """Threads serving an item or waiting for one."""
        with self._lock:
            return self._threads

    def waiting(self) -> int:
        """Threads waiting for an item."""
        with self._lock:
            return self._waiting

    def stop(self, timeout: float) -> bool:
        """End the waiting threads; True once every thread has ended within ``timeout``."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            return self._lock.wait_for(lambda: self._threads == 0, timeout)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._waiting += 1
                    try:
                        self._lock.wait_for(lambda: self._queue or self._stopping, self.idle)
                    finally:
                        self._waiting -= 1
                    if not self._queue:
                        return  # idle for a while, or stopping
                    item = self._queue.popleft()
                self.serve(item)
        finally:
            with self._lock:
                self._threads -= 1
                self._lock.notify_all()
