"""The HTTP driver and the load generator against real local servers."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from email.message import Message

import httpx
import pytest
from aiohttp import web

from warmgate.config.http_target import HttpTarget
from warmgate.config.model import TrafficConfig
from warmgate.decide.outcomes import CONNECTION_ERROR, OK, TIMEOUT, UNEXPECTED_STATUS
from warmgate.decide.reach import Down, Reach
from warmgate.decide.window import Sample
from warmgate.demo.simapp import SimApp
from warmgate.traffic.loadgen import Load
from warmgate.traffic.templating import Templates
from warmgate.traffic.web.driver import (
    HttpDriver,
    HttpPlan,
    StatelessClient,
    make_client,
    tcp_probe,
)


def driver_for(url: str, client: httpx.AsyncClient, **fields: object) -> HttpDriver:
    """An HttpDriver for ``url`` using ``client``."""
    target = HttpTarget(url=url, **fields)  # type: ignore[arg-type]
    plan = HttpPlan.compile(target, Templates(), "test")
    return HttpDriver("app", target, plan, client)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    listener.close()


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_requests_are_marked_and_templated(sim_app: Callable[..., SimApp]) -> None:
    """Every request carries the warmgate User-Agent and X-Warmgate header, and a fresh URL."""
    app = sim_app()

    async def scenario() -> list[str]:
        async with make_client(4, TrafficConfig()) as client:
            driver = driver_for(
                f"http://127.0.0.1:{app.port}/items/{{{{ randint(1, 9) }}}}", client
            )
            return [(await driver.execute()).outcome for _ in range(20)]

    outcomes = asyncio.run(scenario())
    assert outcomes == [OK] * 20
    assert app.stats.marked == 20
    assert {agent for agent in app.stats.user_agents if agent.startswith("warmgate/")}


@pytest.fixture
def header_server() -> Iterator[tuple[int, list[Message]]]:
    """A real HTTP server on port 0 that answers 200 and keeps the headers of every request."""
    seen: list[Message] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, {"X-Warmgate": ["1"]}),
    ({"Authorization": "Bearer t0ken", "X-Tenant": "a"}, {"X-Warmgate": ["1"], "Authorization": ["Bearer t0ken"], "X-Tenant": ["a"]}),
    ({"x-warmgate": "canary"}, {"X-Warmgate": ["canary"]}),
])  # fmt: skip
def test_the_marking_header_stays_when_users_add_headers(
    header_server: tuple[int, list[Message]],
    headers: dict[str, str],
    expected: dict[str, list[str]],
) -> None:
    """traffic.headers adds to X-Warmgate: 1 rather than replacing it; only an explicit X-Warmgate changes its value."""
    port, seen = header_server

    async def scenario() -> None:
        async with make_client(2, TrafficConfig(headers=headers)) as client:
            assert (await driver_for(f"http://127.0.0.1:{port}/", client).execute()).outcome == OK

    asyncio.run(scenario())
    [received] = seen
    for name, values in expected.items():
        assert received.get_all(name) == values
    assert received.get_all("User-Agent") == [TrafficConfig().user_agent]


def test_unexpected_status_is_a_failure(sim_app: Callable[..., SimApp]) -> None:
    """A 404 is a failure that keeps its status, for the drift hint."""
    app = sim_app()

    async def scenario() -> tuple[str, int | None]:
        async with make_client(1, TrafficConfig()) as client:
            outcome = await driver_for(f"http://127.0.0.1:{app.port}/nope", client).execute()
            return outcome.outcome, outcome.status

    assert asyncio.run(scenario()) == (UNEXPECTED_STATUS, 404)


def test_expected_statuses_are_configurable(sim_app: Callable[..., SimApp]) -> None:
    """expect_status may list a specific status that counts as success."""
    app = sim_app()

    async def scenario() -> str:
        async with make_client(1, TrafficConfig()) as client:
            driver = driver_for(f"http://127.0.0.1:{app.port}/nope", client, expect_status=[404])
            return (await driver.execute()).outcome

    assert asyncio.run(scenario()) == OK


def test_silent_target_times_out(silent_server: int) -> None:
    """A target that accepts connections but never answers is a timeout, not a hang."""

    async def scenario() -> str:
        async with make_client(1, TrafficConfig()) as client:
            driver = driver_for(f"http://127.0.0.1:{silent_server}/", client, timeout="200ms")
            return (await driver.execute()).outcome

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == TIMEOUT


def test_refused_connection_is_a_connection_error() -> None:
    """Nothing listening is a connection error with a short reason, and a probe reads it as
    refused (the process is gone)."""
    port = closed_port()

    async def scenario() -> tuple[str, str, Down | None]:
        async with make_client(1, TrafficConfig()) as client:
            driver = driver_for(f"http://127.0.0.1:{port}/", client)
            outcome = await driver.execute()
            return outcome.outcome, outcome.detail, await driver.probe()

    outcome, detail, probe = asyncio.run(scenario())
    assert (outcome, detail) == (CONNECTION_ERROR, "connection refused")
    assert probe == Down(Reach.REFUSED, f"127.0.0.1:{port}: connection refused")


def test_probe_sees_a_listening_port(silent_server: int) -> None:
    """A TCP probe succeeds as soon as the port accepts connections."""
    assert asyncio.run(tcp_probe("127.0.0.1", silent_server)) is None


def test_driver_accepts_an_injected_mock_transport() -> None:
    """The driver works with any httpx client, such as one over httpx.MockTransport."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503)

    async def scenario() -> tuple[str, int | None]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            outcome = await driver_for("http://app.test/x", client).execute()
            return outcome.outcome, outcome.status

    assert asyncio.run(scenario()) == (UNEXPECTED_STATUS, 503)
    assert seen[0].url == "http://app.test/x"


class Rendezvous:
    """An HTTP app that answers requests only in groups of ``size`` in flight at once.

    A load that keeps fewer than ``size`` requests open never gets an answer; one that sends
    more shows it in ``max_in_flight``, which the app counts exactly.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.in_flight = 0
        self.max_in_flight = 0
        self._arrived = 0
        self._group = asyncio.Event()
        self._draining = False

    async def handle(self, _: web.Request) -> web.Response:
        """Wait for the group to fill (or the drain), then answer."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            group = self._group
            self._arrived += 1
            if self._arrived == self.size or self._draining:
                self._arrived, self._group = 0, asyncio.Event()
                group.set()
            await group.wait()
        finally:
            self.in_flight -= 1
        return web.Response(text="ok")

    def drain(self) -> None:
        """Answer the requests waiting now and every later one at once."""
        self._draining = True
        self._group.set()


def test_closed_loop_never_exceeds_the_level() -> None:
    """At level 4 of 16 the app never has more than 4 requests at once, and it does have 4."""
    rendezvous = Rendezvous(4)
    samples: list[Sample] = []
    enough = asyncio.Event()

    def record(sample: Sample) -> None:
        samples.append(sample)
        if len(samples) >= 100:
            enough.set()

    async def scenario() -> None:
        application = web.Application()
        application.router.add_get("/", rendezvous.handle)
        runner = web.AppRunner(application)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with make_client(16, TrafficConfig()) as client:
                load = Load([driver_for(f"http://127.0.0.1:{port}/", client)], [1.0], 16, record)
                load.start()
                load.configure(4)
                async with asyncio.timeout(30):
                    await enough.wait()
                rendezvous.drain()
                await load.stop()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert len(samples) >= 100
    assert {sample.outcome for sample in samples} == {OK}
    assert rendezvous.max_in_flight == 4
    assert {sample.level for sample in samples} == {4}


def test_no_cookies_are_kept_between_synthetic_requests() -> None:
    """A Set-Cookie answer does not make the next synthetic request carry a cookie."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "JSESSIONID=abc; Path=/"})

    async def scenario() -> None:
        async with StatelessClient(transport=httpx.MockTransport(handler)) as client:
            driver = driver_for("http://app.test/x", client)
            await driver.execute()
            await driver.execute()

    asyncio.run(scenario())
    assert seen == [None, None]


SLOW_ANSWER = 6.5
"""Seconds the behaving server takes on /slow: past httpx's 5 s default timeout."""
BIG_BODY = 64 * 2**20
"""Bytes the behaving server sends on /large."""
_CHUNK = b"x" * 2**20


@pytest.fixture
def behaving_server() -> Iterator[tuple[int, list[str | None]]]:
    """A real HTTP server on port 0 whose paths misbehave on purpose; yields the port and the
    Cookie header of every request.

    ``/`` sets a session cookie; ``/slow`` answers after SLOW_ANSWER seconds; ``/large`` sends
    BIG_BODY bytes; ``/endless`` sends bytes until the client goes away.
    """
    cookies: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cookies.append(self.headers.get("Cookie"))
            if self.path == "/slow":
                time.sleep(SLOW_ANSWER)  # the server's behaviour under test
            self.send_response(200)
            self.send_header("Set-Cookie", "JSESSIONID=returning-user; Path=/")
            if self.path == "/large":
                self.send_header("Content-Length", str(BIG_BODY))
            elif self.path != "/endless":
                self.send_header("Content-Length", "2")
            self.end_headers()
            try:
                if self.path == "/large":
                    for _ in range(BIG_BODY // len(_CHUNK)):
                        self.wfile.write(_CHUNK)
                elif self.path == "/endless":
                    while True:
                        self.wfile.write(_CHUNK)
                else:
                    self.wfile.write(b"ok")
            except OSError:
                self.close_connection = True  # the client gave up: expected for /endless

        def log_message(self, *_: object) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cookies
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_no_layer_keeps_cookies_for_a_host_name(
    behaving_server: tuple[int, list[str | None]],
) -> None:
    """Through the production client, a localhost app that sets a cookie never gets it back."""
    port, cookies = behaving_server

    async def scenario() -> list[str]:
        async with make_client(1, TrafficConfig()) as client:
            driver = driver_for(f"http://localhost:{port}/", client)
            return [(await driver.execute()).outcome for _ in range(4)]

    assert asyncio.run(scenario()) == [OK] * 4
    assert cookies == [None] * 4


def test_a_timeout_longer_than_httpx_default_holds(
    behaving_server: tuple[int, list[str | None]],
) -> None:
    """An answer in 6.5 s succeeds with timeout 10s and times out with timeout 5s."""
    port, _ = behaving_server

    async def scenario() -> list[str]:
        async with make_client(2, TrafficConfig()) as client:
            patient = driver_for(f"http://127.0.0.1:{port}/slow", client, timeout="10s")
            hasty = driver_for(f"http://127.0.0.1:{port}/slow", client, timeout="5s")
            outcomes = await asyncio.gather(patient.execute(), hasty.execute())
            return [outcome.outcome for outcome in outcomes]

    assert asyncio.run(scenario()) == [OK, TIMEOUT]


@pytest.mark.parametrize(("path", "expected"), [("/large", OK), ("/endless", TIMEOUT)])
def test_a_huge_body_costs_a_few_mib(
    behaving_server: tuple[int, list[str | None]], path: str, expected: str
) -> None:
    """A 64 MiB body is read and dropped in chunks; an endless one ends at the timeout."""
    port, _ = behaving_server

    async def scenario() -> str:
        async with make_client(1, TrafficConfig()) as client:
            driver = driver_for(f"http://127.0.0.1:{port}{path}", client, timeout="2s")
            return (await driver.execute()).outcome

    tracemalloc.start()
    try:
        outcome = asyncio.run(scenario())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome == expected
    assert peak < 8 * 2**20
