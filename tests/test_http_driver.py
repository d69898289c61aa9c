"""The HTTP driver and the load generator against real local servers."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import Message

import httpx
import pytest

from warmgate.config import HttpTarget, TrafficConfig
from warmgate.drivers import CONNECTION_ERROR, OK, TIMEOUT, UNEXPECTED_STATUS
from warmgate.drivers.http import HttpDriver, HttpPlan, StatelessClient, make_client, tcp_probe
from warmgate.load import Load
from warmgate.simapp import Behavior, SimApp
from warmgate.templating import Templates
from warmgate.window import Sample, Stats


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
    """Nothing listening is a connection error with a short reason."""
    port = closed_port()

    async def scenario() -> tuple[str, str, str | None]:
        async with make_client(1, TrafficConfig()) as client:
            driver = driver_for(f"http://127.0.0.1:{port}/", client)
            outcome = await driver.execute()
            return outcome.outcome, outcome.detail, await driver.probe()

    outcome, detail, probe = asyncio.run(scenario())
    assert (outcome, detail) == (CONNECTION_ERROR, "connection refused")
    assert probe == f"127.0.0.1:{port}: connection refused"


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


def run_load(
    app: SimApp, level: int, rate: float | None, seconds: float, cap: int = 16
) -> tuple[list[Sample], int]:
    """Run the load against ``app`` for ``seconds``; returns the samples and max in flight."""
    samples: list[Sample] = []

    async def scenario() -> int:
        async with make_client(cap, TrafficConfig()) as client:
            driver = driver_for(f"http://127.0.0.1:{app.port}/items/1", client)
            load = Load([driver], [1.0], cap, samples.append)
            load.start()
            load.configure(level, rate)
            await asyncio.sleep(seconds)  # the measured interval itself, not a synchronisation
            await load.stop()
            return app.stats.max_in_flight

    return samples, asyncio.run(scenario())


def test_closed_loop_never_exceeds_the_level(sim_app: Callable[..., SimApp]) -> None:
    """At level 4 of 16 the app never sees more than 4 requests at once."""
    app = sim_app(Behavior(start_capacity=64, full_capacity=64, base_latency=0.005))
    samples, max_in_flight = run_load(app, level=4, rate=None, seconds=1.0)
    assert len(samples) > 50
    assert max_in_flight == 4
    assert {sample.level for sample in samples} == {4}


def test_paced_load_holds_the_rate(sim_app: Callable[..., SimApp]) -> None:
    """Paced at 200 req/s for 2s, about 400 requests go out, latency from intended time."""
    app = sim_app(Behavior(start_capacity=64, full_capacity=64, base_latency=0.002))
    samples, _ = run_load(app, level=8, rate=200.0, seconds=2.0, cap=8)
    assert 360 <= len(samples) <= 420
    stats = Stats.of(samples)
    assert stats.success_ratio == 1.0
    assert stats.p50 is not None
    assert stats.p50 >= 0.002


def test_paced_latency_counts_queueing(sim_app: Callable[..., SimApp]) -> None:
    """When the app cannot keep up, latency includes the wait behind the schedule."""
    app = sim_app(Behavior(start_capacity=64, full_capacity=64, base_latency=0.05))
    # 1 worker, 100 req/s wanted, 50ms per answer: the schedule falls further behind.
    samples, _ = run_load(app, level=1, rate=100.0, seconds=1.0, cap=1)
    stats = Stats.of(samples)
    assert stats.p95 is not None
    assert stats.p95 > 0.3


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


def test_a_capped_target_leaves_the_slack_to_the_others(sim_app: Callable[..., SimApp]) -> None:
    """A target capped at 20 req/s gets about 20 a second; the other target takes the rest."""
    app = sim_app(Behavior(start_capacity=64, full_capacity=64, base_latency=0.002))
    samples: list[Sample] = []

    async def scenario() -> None:
        async with make_client(8, TrafficConfig()) as client:
            url = f"http://127.0.0.1:{app.port}/items/1"
            capped = HttpDriver("db", HttpTarget(url=url), HttpPlan.compile(HttpTarget(url=url), Templates(), "t"), client)  # fmt: skip
            free = driver_for(url, client)
            load = Load([capped, free], [1.0, 1.0], 8, samples.append, rate_caps=[20.0, None])
            load.start()
            load.configure(8)
            await asyncio.sleep(2.0)  # the measured interval itself, not a synchronisation
            await load.stop()

    asyncio.run(scenario())
    by_target = Counter(sample.target for sample in samples)
    assert 30 <= by_target["db"] <= 42  # 20 req/s for 2 s, plus the first free slot
    assert by_target["app"] > 5 * by_target["db"]


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
