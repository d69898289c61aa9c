"""No client can starve the endpoint: deadlines per exchange, room for newcomers, bodies held by
the bytes received. Real sockets; the crowds of slow clients run in a process of their own
(tests/slow_clients.py), from 127.0.0.2 when they stand for other pods."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trustme

from tests.helpers import WarmgateProcess, items_url, poll
from tests.slow_clients import SlowClients
from warmgate.demo.simapp import SimApp
from warmgate.serve.client_io import Trouble
from warmgate.serve.connections import Limits
from warmgate.serve.server import LIMITS, Endpoint, PostRoute, listen

PROBE_RULE = 1.0
"""Seconds within which /readyz must answer whatever slow clients do (the product rule)."""


@contextmanager
def endpoint(
    limits: Limits = LIMITS,
    post: PostRoute | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[Endpoint, int, list[str]]]:
    """A warm endpoint on a free port, its log lines, stopped afterwards."""
    lines: list[str] = []
    server = Endpoint(
        lambda: (True, "warm", {}), lambda: b"", report=lines.append, post=post,
        tls=(lambda: tls) if tls else None, limits=limits,
    )  # fmt: skip
    port = server.start(listen("127.0.0.1", 0))
    try:
        yield server, port, lines
    finally:
        server.stop()


def probe(port: int, path: str = "/readyz") -> tuple[int, str, float]:
    """``(status, body, seconds)`` of a GET on a new connection, as the kubelet probes."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(), time.perf_counter() - started
    finally:
        connection.close()


def post(port: int, body: bytes) -> tuple[int, bytes]:
    """``(status, body)`` of a POST on a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/mutate", body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def length_route(_path: str, body: bytes) -> tuple[int, bytes, str]:
    """A POST route that answers the length of the body it got."""
    return 200, b"%d" % len(body), "text/plain"


def trickle_until_closed(client: socket.socket, piece: bytes, most: int) -> int:
    """Send ``piece`` every 0.1 s until the server closes; returns how many were sent."""
    client.settimeout(0.1)  # the pace of the trickle: the wait for the server's close is it
    for sent in range(most):
        try:
            if client.recv(1024) == b"":
                return sent
        except TimeoutError:
            pass
        except ConnectionResetError:
            return sent
        client.sendall(piece)
    return most


def test_a_client_trickling_header_lines_is_cut_at_the_head_deadline() -> None:
    """A header line every 0.1 s keeps no connection open past the 1 s head deadline: closed
    without an answer, counted once and logged in one line."""
    with endpoint(Limits(head=1.0)) as (server, port, lines):
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            sent = trickle_until_closed(client, b"X-Slow: 1\r\n", most=300)
        assert 3 <= sent < 300  # cut although never quiet for long, and long before 30 s
        poll(lambda: server.troubles()[Trouble.DEADLINE] == 1, timeout=10)
    assert len(lines) == 1
    assert lines[0].startswith("closed a connection from 127.0.0.1 that did not deliver")


def test_a_body_trickled_a_byte_at_a_time_is_cut_at_the_body_deadline() -> None:
    """A 2 MiB body sent a byte every 0.1 s is cut 1 s after its head, never handed on."""
    given: list[bytes] = []

    def route(path: str, body: bytes) -> tuple[int, bytes, str]:
        given.append(body)
        return length_route(path, body)

    with endpoint(Limits(body=1.0), post=route) as (server, port, _):
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
            sent = trickle_until_closed(client, b" ", most=300)
        assert 3 <= sent < 300
        poll(lambda: server.troubles()[Trouble.DEADLINE] == 1, timeout=10)
        assert post(port, b"{}") == (200, b"2")
    assert given == [b"{}"]


def test_a_request_head_past_32_kib_is_cut_without_being_kept() -> None:
    """Headers sent fast but never ending are read up to 32 KiB, then the connection is closed
    and counted as malformed; probes are answered as before."""
    with endpoint() as (server, port, lines):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            sent = 0
            with contextlib.suppress(ConnectionError):
                while sent < 10 * LIMITS.head_bytes:
                    client.sendall(b"X-Big: " + b"a" * 1000 + b"\r\n")
                    sent += 1009
            try:
                answer = client.recv(1024)
            except ConnectionResetError:  # closed with what it sent unread
                answer = b""
            assert answer == b""
        poll(lambda: server.troubles()[Trouble.MALFORMED] == 1, timeout=10)
        assert probe(port)[:2] == (200, "warm\n")
    assert lines == [f"bad request from 127.0.0.1: a request head over {LIMITS.head_bytes} "
                     "bytes; closed"]  # fmt: skip


def test_a_trickled_tls_handshake_is_cut_at_the_head_deadline() -> None:
    """A ClientHello sent a byte every 0.1 s gets no more than the 1 s a head gets."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    client_side = ssl.create_default_context()
    hello = client_side.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO())
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    client_hello = outgoing.read()
    with endpoint(Limits(head=1.0), tls=context) as (_, port, lines):
        with socket.create_connection(("127.0.0.1", port)) as client:
            sent = 0
            pieces = [client_hello[i : i + 1] for i in range(len(client_hello))]
            client.settimeout(0.1)
            while sent < len(pieces):
                try:
                    if client.recv(1024) == b"":
                        break
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    break
                client.sendall(pieces[sent])
                sent += 1
        assert 3 <= sent < len(pieces)
    assert lines == []  # nothing of a request arrived: a routine close


@contextmanager
def holding(port: int, clients: int, *options: str) -> Iterator[SlowClients]:
    """A crowd of slow clients trickling header lines every 0.5 s."""
    with SlowClients(port, clients, "--interval", "0.5", *options) as crowd:
        yield crowd


@pytest.mark.parametrize("clients", [64, 512])
def test_a_probe_sharing_the_slow_clients_address_takes_the_longest_waiting_ones_place(
    clients: int,
) -> None:
    """Slow clients of the probe's own address hold every connection (each newcomer closing the
    longest-waiting one); the probe gets in the same way at once and is answered within 1 s."""
    with endpoint() as (server, port, lines), holding(port, clients) as crowd:
        evicted = clients - LIMITS.connections
        poll(lambda: server.serving() == LIMITS.connections, what="every connection taken")
        poll(lambda: server.troubles()[Trouble.EVICTED] == evicted, what="the first ones closed")
        status, body, seconds = probe(port)
        assert (status, body) == (200, "warm\n")
        assert seconds < PROBE_RULE
        assert server.troubles()[Trouble.EVICTED] == evicted + 1
        assert server.troubles()[Trouble.REFUSED] == 0
        poll(lambda: crowd.counts["closed"] == evicted + 1, what="the crowd to see one closed")
        assert crowd.counts["open"] == LIMITS.connections - 1
    assert any(line.startswith("all 64 connections taken: closed one") for line in lines)


@pytest.mark.parametrize("clients", [64, 512])
def test_probes_from_the_node_are_answered_while_another_pods_slow_clients_reconnect_at_once(
    clients: int,
) -> None:
    """Slow clients of another pod's address that reconnect as soon as they are closed hold
    every connection; every probe from the node's address gets in and is answered. (How fast:
    benchmarks/slow_clients.py; a crowd on the probe's own address is measured there too.)"""
    with endpoint() as (server, port, _), holding(port, clients, "--source", "127.0.0.2",
                                                   "--reconnect") as crowd:  # fmt: skip
        crowd.wait_until_started()
        poll(lambda: server.serving() == LIMITS.connections, what="every connection taken")
        closed = crowd.counts["closed"]
        answers = [probe(port)[:2] for _ in range(20)]
        assert answers == [(200, "warm\n")] * 20
        if clients > LIMITS.connections:
            poll(lambda: crowd.counts["closed"] > closed, what="the crowd still pressing")


def test_a_storm_gives_back_every_thread_and_descriptor() -> None:
    """While 512 reconnecting slow clients and 64 slow bodies come and go, threads stay under
    twice the cap; once they are gone and the endpoint stops, none is left behind."""
    threads, descriptors = threading.active_count(), len(os.listdir("/proc/self/fd"))
    most = 0
    with endpoint(post=length_route) as (server, port, _):
        with (
            holding(port, 512, "--source", "127.0.0.2", "--reconnect") as heads,
            holding(port, 64, "--source", "127.0.0.3", "--mode", "body", "--reconnect") as bodies,
        ):
            heads.wait_until_started()
            bodies.wait_until_started()
            for _ in range(20):
                most = max(most, threading.active_count())
                assert probe(port)[0] == 200
        poll(lambda: server.serving() == 0, what="the connections to end with their clients")
    assert most <= threads + 2 * LIMITS.connections + 3  # the accepting and two reading ones
    poll(lambda: threading.active_count() == threads, timeout=10, what="threads to end")
    assert len(os.listdir("/proc/self/fd")) == descriptors


def test_a_genuine_body_is_answered_while_512_slow_bodies_press_on_every_connection() -> None:
    """2 MiB bodies trickled by 512 reconnecting clients of another address never make a
    genuine POST wait for them or get 503."""
    with (
        endpoint(post=length_route) as (server, port, _),
        holding(port, 512, "--source", "127.0.0.2", "--mode", "body", "--reconnect") as crowd,
    ):
        crowd.wait_until_started()
        poll(lambda: server.serving() == LIMITS.connections, what="every connection taken")
        for size in (2, 20_000, 1_500_000):
            assert post(port, b"x" * size) == (200, b"%d" % size)
        assert server.troubles()[Trouble.BUSY] == 0


def test_bodies_sent_fast_then_held_back_give_way_to_a_genuine_one() -> None:
    """Bodies sent whole but a byte and then stalled, past the 8 MiB kept for bodies, lose their
    place to a genuine body (oldest first), which is answered."""
    with endpoint(post=length_route) as (server, port, _):
        stalled = []
        try:
            for _ in range(6):
                client = socket.socket()
                client.bind(("127.0.0.2", 0))
                client.connect(("127.0.0.1", port))
                head = f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMITS.body_bytes}"
                client.sendall(f"{head}\r\n\r\n".encode() + b" " * (LIMITS.body_bytes - 1))
                stalled.append(client)
            poll(lambda: server.troubles()[Trouble.EVICTED] >= 2, what="room made for bodies")
            assert post(port, b"x" * 100_000) == (200, b"100000")
        finally:
            for client in stalled:
                client.close()
        assert server.troubles()[Trouble.EVICTED] >= 3
        assert server.troubles()[Trouble.BUSY] == 0


@pytest.mark.slow
def test_run_answers_its_probes_and_opens_while_512_slow_clients_press_on_its_port(
    sim_app: Callable[..., SimApp],
) -> None:
    """`warmgate run` priming a real app, its port held by 512 slow clients of another pod that
    reconnect whenever closed: every /readyz is answered with its reason, /livez too, and the
    gate opens."""
    app = sim_app()
    gate_args = ["--concurrency", "8", "--window", "3s", "--hold", "2s", "--min-requests", "20"]
    with WarmgateProcess("run", "--url", items_url(app.port), *gate_args, "--port", "0") as gate:
        port = gate.port()
        with holding(port, 512, "--source", "127.0.0.2", "--reconnect") as crowd:
            crowd.wait_until_started()
            poll(lambda: crowd.counts["closed"] >= 512 - LIMITS.connections,
                 what="every connection taken and the rest turned away")  # fmt: skip
            answers: list[tuple[int, str, float]] = []

            def opened() -> bool:
                answers.append(probe(port))
                answers.append(probe(port, "/livez"))
                return answers[-2][0] == 200

            poll(opened, timeout=60, interval=0.2, what="the gate to open")
            closed = crowd.counts["closed"]
            poll(lambda: crowd.counts["closed"] > closed, what="the crowd still pressing")
        assert {status for status, _, _ in answers[::2]} <= {200, 503}
        assert all(body.endswith("\n") and len(body) > 1 for _, body, _ in answers)
        assert {status for status, _, _ in answers[1::2]} == {200}
