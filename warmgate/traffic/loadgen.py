"""The load generator: keep ``level`` requests in flight, closed loop or paced.

Theory of operation: ``cap`` worker tasks exist from the start; worker ``i`` works only while
``i < level``, so the judge moves the load by changing one number and the cap can never be
exceeded. Closed loop: each active worker sends its next request as soon as the last one ends.
Paced (open model, ``rate`` req/s in total at the full level): active workers share one schedule
of intended send times, ``rate * level / cap`` per second, and latency is measured from the
*intended* time — when the app (or the cap) holds requests back, the wait counts as latency
instead of silently lowering the rate (the wrk2 model, no coordinated omission).

A target may have a rate cap of its own (a database shared by many replicas): a worker whose
weighted pick lands on a capped target that has no free slot picks among the others, and waits
for the earliest slot only when every target is capped. Latency then counts from the moment
the cap let the request go, since that wait is warmgate's own choice, not the app's slowness.

The load also knows which requests are still open (:meth:`Load.open_requests`): the gate counts one
that is already older than the latency limit as slow, so a hung worker holds the gate shut now,
not when its request finally times out.

A worker is also a virtual user: a driver whose requests follow each other (a journey) gives
each worker its own :class:`~warmgate.traffic.driver.VirtualUser` (its place in the steps, captures
and cookie jar), so one worker runs one journey at a time, one step per request. A step that is not
judged (a login) is sent and timed like any other, but neither recorded nor counted as open.

A closed-loop worker whose request could not even connect, or whose journey step failed,
pauses before the next one (doubling up to a second), so a target that went away (or a login
that keeps failing) is not hammered thousands of times a second. A driver that raises instead
of returning an outcome (a bug, or user input only the client libraries reject) costs an
``error`` sample and the same pause, never a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Callable, Sequence

from warmgate.decide.outcomes import CONNECTION_ERROR, ERROR, OK
from warmgate.decide.window import Pending, Sample
from warmgate.kernel.redaction import Secrets
from warmgate.traffic.driver import Driver, Outcome, PerUser, VirtualUser

Clock = Callable[[], float]
CRASH_CHARS = 200
"""The most of a raised error's text the ``error`` sample's detail keeps (redacted first)."""


class Load:
    """Runs workers against weighted drivers and reports every completed request."""

    def __init__(
        self,
        drivers: Sequence[Driver],
        weights: Sequence[float],
        cap: int,
        record: Callable[[Sample], None],
        *,
        rate_caps: Sequence[float | None] | None = None,
        clock: Clock = time.monotonic,
        on_crash: Callable[[str, BaseException], None] | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        if not drivers or len(drivers) != len(weights):
            raise ValueError("give one weight per driver, and at least one driver")
        self._drivers = list(drivers)
        self._weights = list(weights)
        self._cumulative = list(itertools.accumulate(weights))
        self._intervals = [
            None if not rate else 1.0 / rate for rate in (rate_caps or [None] * len(drivers))
        ]
        self._next_free = [0.0] * len(drivers)
        self.cap = cap
        self._record = record
        self._clock = clock
        self._on_crash = on_crash
        self._secrets = secrets or Secrets()
        self._crashes_seen: set[tuple[str, str]] = set()
        self.level = 0
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._interval: float | None = None
        self._next_send = 0.0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._open: dict[int, Pending] = {}

    def configure(self, level: int, rate: float | None = None) -> None:
        """Run ``level`` workers (0 pauses); ``rate`` is the total req/s at this level, or
        ``None`` for a closed loop. The level is clamped to the cap.
        """
        self.level = max(0, min(self.cap, level))
        self._interval = 1.0 / rate if rate else None
        self._next_send = self._clock()
        self._changed.set()
        self._changed = asyncio.Event()

    def start(self) -> None:
        """Create the workers (idle until ``configure`` gives them a level)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(index), name=f"warmgate-worker-{index}")
                for index in range(self.cap)
            ]

    async def stop(self, grace: float = 0.5) -> None:
        """Pause, let in-flight requests finish for up to ``grace`` seconds, then cancel."""
        self.configure(0)
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def open_requests(self) -> list[Pending]:
        """The requests open right now: when each was (meant to be) sent, level, target."""
        return list(self._open.values())

    def _users(self) -> list[tuple[Driver, VirtualUser | None]]:
        """One worker's drivers: its own virtual user of each driver that has them."""
        found: list[tuple[Driver, VirtualUser | None]] = []
        for driver in self._drivers:
            user = driver.for_user() if isinstance(driver, PerUser) else None
            found.append((user or driver, user))
        return found

    def _pick(self) -> tuple[int, float]:
        """A driver's index by weight, and when its cap lets the request go (now, if uncapped)."""
        count = len(self._drivers)
        index = 0 if count == 1 else random.choices(range(count), cum_weights=self._cumulative)[0]
        if self._intervals[index] is None:
            return index, self._clock()
        now = self._clock()
        if self._next_free[index] > now:
            # Capped and busy: any other target with a free slot, by weight; else the earliest.
            free = [
                i for i in range(count) if self._intervals[i] is None or self._next_free[i] <= now
            ]
            if free:
                index = random.choices(free, weights=[self._weights[i] for i in free])[0]
            else:
                index = min(range(count), key=self._next_free.__getitem__)
        return index, self._reserve(index, now)

    def _reserve(self, index: int, now: float) -> float:
        interval = self._intervals[index]
        if interval is None:
            return now
        release = max(now, self._next_free[index])
        self._next_free[index] = release + interval
        return release

    async def _work(self, index: int) -> None:
        pause = 0.0
        drivers = self._users()
        while True:
            while index >= self.level:
                await self._changed.wait()
            intended = await self._turn(index, pause)
            if intended is None:
                continue  # paused or lowered while waiting for its turn
            chosen, release = self._pick()
            driver, user = drivers[chosen]
            if release > self._clock():
                await asyncio.sleep(release - self._clock())
                if index >= self.level:
                    continue  # paused or lowered while waiting for the cap
                intended = max(intended, release)
            # Just after the level drops, requests issued at the old level may still be in
            # flight: label the sample with the concurrency it really met.
            level = max(self.level, self.in_flight + 1)
            judged = user is None or user.judged
            if judged:
                self._open[index] = Pending(intended, level, driver.name)
            try:
                outcome, crashed = await self._execute(driver)
            finally:
                self._open.pop(index, None)
            # A virtual user whose step failed waits too: its next try may be a login again,
            # and a login hammered with a wrong password can lock the account.
            failed_user = user is not None and outcome.outcome != OK
            if outcome.outcome == CONNECTION_ERROR or crashed or failed_user:
                pause = min(1.0, max(0.05, pause * 2))
            else:
                pause = 0.0
            if not judged:
                continue
            self._record(
                Sample(
                    intended,
                    self._clock(),
                    level,
                    driver.name,
                    outcome.outcome,
                    outcome.status,
                    outcome.detail,
                )
            )

    async def _turn(self, index: int, pause: float) -> float | None:
        """When worker ``index``'s next request is (meant to be) sent, once it is time; ``None``
        when the worker was paused or lowered meanwhile."""
        if self._interval is not None:
            intended = self._next_send
            self._next_send += self._interval
            delay = intended - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            # Always yield: a driver that fails without awaiting must not starve the loop.
            await asyncio.sleep(pause)
            intended = self._clock()
        return None if index >= self.level else intended

    async def _execute(self, driver: Driver) -> tuple[Outcome, bool]:
        """The driver's outcome, and whether it raised instead of returning one."""
        self.in_flight += 1
        self._idle.clear()
        try:
            return await driver.execute(), False
        except Exception as exc:  # noqa: BLE001 - the worker boundary: a driver bug must not stop the load
            key = (driver.name, type(exc).__name__)
            if self._on_crash is not None and key not in self._crashes_seen:
                self._crashes_seen.add(key)
                self._on_crash(driver.name, exc)
            detail = self._secrets.shorten(f"{type(exc).__name__}: {exc}", CRASH_CHARS)
            return Outcome(ERROR, detail=detail), True
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
