"""A simulated heritage app with a realistic cold start, for demos and tests.

It is a real HTTP server (aiohttp, on a port of its own) that behaves like a cold app server:

- **a pool that fills with use**: it handles ``start_capacity`` concurrent requests from the
  start; the capacity grows toward ``full_capacity`` as it serves requests (``warm_requests``) or
  as time passes from its first request (``warm_seconds``). Requests above the capacity get a
  503 after a short stall.
- **pages that compile on first hit** (like JSPs): the first request for each distinct path
  waits ``compile_delay``.
- **a JIT**: every answer takes ``base_latency`` plus ``cold_latency`` that decays as it serves
  (halving every ``jit_half_life`` requests).
- **pauses** (a garbage collector, a lock convoy): every ``stall_every`` seconds from its first
  request, the app freezes for ``stall_for`` seconds; requests arriving meanwhile wait for the
  end of the freeze.
- **sparse errors**: every ``error_every``-th request answers 500, however warm the app is.

- **a login-protected area**: ``POST /login`` with the right ``password`` (JSON or form)
  answers ``{"token": ...}`` and sets a ``SESSION`` cookie; ``GET /account/{page}`` needs both
  (``Authorization: Bearer <token>`` and the cookie of the same session), else 401. Each page is
  slow (``page_cold_latency``) for its first ``page_warm_requests`` answers.

Routes: ``GET /items/{id}`` answers JSON; ``GET /healthz`` always answers 200; the login area
above; anything else is 404. It keeps counters (:class:`SimStats`) so tests can check *when* it
really became warm.
It has nothing to do with the gate; it is only something to warm.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from warmgate.demo.background import BackgroundServer


@dataclass(frozen=True)
class Behavior:
    """How cold the simulated app is."""

    start_capacity: int = 1
    full_capacity: int = 64
    warm_requests: int = 0
    warm_seconds: float = 0.0
    base_latency: float = 0.001
    cold_latency: float = 0.0
    jit_half_life: int = 200
    compile_delay: float = 0.0
    overload_stall: float = 0.005
    stall_every: float = 0.0
    stall_for: float = 0.0
    error_every: int = 0
    password: str = "demo-password"  # noqa: S105 - the simulated app's own, for demos
    page_cold_latency: float = 0.0
    page_warm_requests: int = 0


@dataclass
class SimStats:
    """What the app went through."""

    served: int = 0
    rejected: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    warm_at: float | None = None
    capacity_reached: dict[int, float] = field(default_factory=dict)
    marked: int = 0
    errors: int = 0
    requests: int = 0
    user_agents: set[str] = field(default_factory=set)
    logins: int = 0
    failed_logins: int = 0
    login_with_cookie: int = 0
    """Logins that arrived carrying a session cookie already (a jar kept across iterations)."""
    mismatched: int = 0
    """Protected requests whose cookie and token belong to different sessions."""
    unauthorized: int = 0
    session_pages: dict[str, int] = field(default_factory=dict)
    """Protected pages served per session."""
    page_served: dict[str, int] = field(default_factory=dict)


class SimApp:
    """The simulated app; :meth:`start` serves it from a background thread."""

    def __init__(self, behavior: Behavior | None = None) -> None:
        self.behavior = behavior or Behavior()
        self.stats = SimStats()
        self._first_request: float | None = None
        self._compiled: set[str] = set()
        self._tokens: dict[str, str] = {}  # token -> session id
        self._server: BackgroundServer | None = None
        self.port = 0

    def capacity(self) -> int:
        """How many concurrent requests the app copes with now."""
        b = self.behavior
        progress = 1.0
        if b.warm_requests:
            progress = min(progress, self.stats.served / b.warm_requests)
        if b.warm_seconds:
            # The clock starts with the first request: an app nobody talks to stays cold.
            now = time.monotonic()
            if self._first_request is None:
                self._first_request = now
            progress = min(progress, (now - self._first_request) / b.warm_seconds)
        capacity = b.start_capacity + int((b.full_capacity - b.start_capacity) * progress)
        if capacity not in self.stats.capacity_reached:
            self.stats.capacity_reached[capacity] = time.monotonic()
        if capacity >= b.full_capacity and self.stats.warm_at is None:
            self.stats.warm_at = time.monotonic()
        return capacity

    def capable_since(self, concurrency: int) -> float | None:
        """When (``time.monotonic``) the app first coped with ``concurrency`` at once."""
        times = [t for level, t in self.stats.capacity_reached.items() if level >= concurrency]
        return min(times, default=None)

    def frozen_for(self) -> float:
        """Seconds until the current freeze ends (0 outside a freeze)."""
        b = self.behavior
        if not (b.stall_every and b.stall_for):
            return 0.0
        now = time.monotonic()
        if self._first_request is None:
            self._first_request = now
        into = (now - self._first_request) % b.stall_every
        return max(0.0, b.stall_for - into)

    def latency(self, path: str) -> float:
        """How long the next answer for ``path`` takes."""
        b = self.behavior
        delay = b.base_latency + b.cold_latency * 0.5 ** (self.stats.served / b.jit_half_life)
        delay = float(delay)
        if b.compile_delay and path not in self._compiled:
            self._compiled.add(path)
            delay += b.compile_delay
        return delay

    async def _item(self, request: web.Request) -> web.Response:
        stats = self.stats
        if request.headers.get("X-Warmgate") == "1":
            stats.marked += 1
        stats.user_agents.add(request.headers.get("User-Agent", ""))
        stats.requests += 1
        frozen = self.frozen_for()
        if frozen:
            await asyncio.sleep(frozen)
        if self.behavior.error_every and stats.requests % self.behavior.error_every == 0:
            stats.errors += 1
            return web.Response(status=500, text="sparse failure\n")
        if stats.in_flight >= self.capacity():
            stats.rejected += 1
            await asyncio.sleep(self.behavior.overload_stall)
            return web.Response(status=503, text="pool exhausted\n")
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            await asyncio.sleep(self.latency(request.path))
        finally:
            stats.in_flight -= 1
        stats.served += 1
        return web.json_response({"id": request.match_info["id"], "name": "widget"})

    async def _login(self, request: web.Request) -> web.Response:
        stats = self.stats
        if "SESSION" in request.cookies:
            stats.login_with_cookie += 1
        if request.content_type == "application/json":
            try:
                sent = await request.json()
            except ValueError:
                sent = {}
        else:
            sent = dict(await request.post())
        password = sent.get("password") if isinstance(sent, dict) else None
        if password != self.behavior.password:
            stats.failed_logins += 1
            return web.json_response({"error": "wrong user or password"}, status=401)
        stats.logins += 1
        session, token = uuid.uuid4().hex, uuid.uuid4().hex
        self._tokens[token] = session
        response = web.json_response({"token": token, "user": {"name": "demo"}})
        response.set_cookie("SESSION", session, path="/", httponly=True)
        return response

    async def _account(self, request: web.Request) -> web.Response:
        stats = self.stats
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        session = self._tokens.get(token)
        cookie = request.cookies.get("SESSION")
        if session is None or cookie is None:
            stats.unauthorized += 1
            return web.json_response({"error": "log in first"}, status=401)
        if cookie != session:
            stats.mismatched += 1
            return web.json_response({"error": "session and token differ"}, status=401)
        page = request.match_info["page"]
        served = stats.page_served.get(page, 0)
        delay = self.behavior.base_latency
        if served < self.behavior.page_warm_requests:
            delay += self.behavior.page_cold_latency
        await asyncio.sleep(delay)
        stats.page_served[page] = stats.page_served.get(page, 0) + 1
        stats.session_pages[session] = stats.session_pages.get(session, 0) + 1
        return web.json_response({"page": page, "user": "demo"})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    def app(self) -> web.Application:
        """The aiohttp application."""
        application = web.Application()
        application.router.add_get("/items/{id}", self._item)
        application.router.add_get("/healthz", self._healthz)
        application.router.add_post("/login", self._login)
        application.router.add_get("/account/{page}", self._account)
        return application

    def start(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> int:
        """Serve from a background thread (over HTTPS with ``tls``); returns the bound port."""
        self._server = BackgroundServer(self.app(), host, port, tls)
        self.port = self._server.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SimApp:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def main() -> None:
    """``python -m warmgate.demo.simapp [PORT]``: serve a cold app until interrupted."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    behavior = Behavior(
        start_capacity=1, full_capacity=32, warm_requests=500, cold_latency=0.15, compile_delay=0.3
    )
    app = SimApp(behavior)
    bound = app.start(port=port)
    print(f"simulated app on http://127.0.0.1:{bound}/items/1", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        app.stop()


if __name__ == "__main__":
    main()
