"""Slow clients that hold connections to a port, as a slowloris attack does.

Run as its own process (``python -m tests.slow_clients --port P --clients 64``), so the server
under test does not share its interpreter. Every client connects (from ``--source``, an address
of its own on 127.0.0.0/8 to stand for another pod), optionally shakes hands in TLS, and then
trickles: a header line every ``--interval`` seconds (``head``), or a body announced as 2 MiB
one byte at a time (``body``), or nothing at all (``silent``); or sends a 2 MiB body but its last
byte as fast as it can and then nothing (``stall``). With ``--reconnect``, a client the server
closes connects again at once, so the pressure never lets up.

One JSON line on stdout every 0.2 s: ``{"open": n, "opened": total, "started": sent_first,
"closed": by_server, "answered": answers}`` (``started`` counts connections that got as far as
sending their first bytes, after the handshake; ``closed`` those the server ended; ``answered``
those it sent anything to first). Runs until stdin closes.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import REPO, poll

BODY = 2 * 1024 * 1024


@dataclass
class Client:
    """One slow connection."""

    sock: socket.socket
    connected: bool = False
    shaken: bool = False
    next_send: float = 0.0
    sent: int = 0
    pending: memoryview = field(default_factory=lambda: memoryview(b""))


class Crowd:
    """All the slow clients, on one selector."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.selector = selectors.DefaultSelector()
        self.tls: ssl.SSLContext | None = None
        if args.tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        self.opened = self.started = self.closed = self.answered = 0

    def first_bytes(self) -> bytes:
        """What a client sends as soon as it is connected."""
        if self.args.mode in ("body", "stall"):
            head = (f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {BODY}\r\n\r\n{{").encode()  # fmt: skip
            return head + b" " * (BODY - 2) if self.args.mode == "stall" else head
        if self.args.mode == "head":
            return b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
        return b""

    def piece(self, client: Client) -> bytes:
        """What a client sends every interval (once its first bytes are all sent)."""
        if self.args.mode == "body":
            return b" "
        if self.args.mode == "head":
            return f"X-Slow-{client.sent}: {'a' * 8}\r\n".encode()
        return b""

    def open(self) -> None:
        """Start one more client."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.args.source, 0))
        code = sock.connect_ex(("127.0.0.1", self.args.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.closed += 1
            return
        client = Client(sock)
        self.opened += 1
        self.selector.register(sock, selectors.EVENT_WRITE, client)

    def end(self, client: Client, answered: bool = False) -> None:
        """The server closed (or answered) this client."""
        self.selector.unregister(client.sock)
        client.sock.close()
        self.closed += 1
        self.answered += answered
        if self.args.reconnect:
            self.open()

    def ready(self, client: Client, now: float) -> None:
        """The socket is readable or writable."""
        try:
            if not client.connected:
                error = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self.end(client)
                    return
                client.connected = True
                if self.tls is not None:
                    client.sock = self.tls.wrap_socket(
                        client.sock, do_handshake_on_connect=False, server_hostname=None
                    )
                    self.selector.modify(client.sock, selectors.EVENT_READ, client)
            if self.tls is not None and not client.shaken:
                assert isinstance(client.sock, ssl.SSLSocket)
                try:
                    client.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self.selector.modify(client.sock, selectors.EVENT_READ, client)
                    return
                except ssl.SSLWantWriteError:
                    self.selector.modify(client.sock, selectors.EVENT_WRITE, client)
                    return
                client.shaken = True
            if client.next_send == 0.0:
                client.pending = memoryview(self.first_bytes())
                self.started += 1
                client.next_send = now + self.args.interval
            if client.pending:
                client.pending = client.pending[client.sock.send(client.pending) :]
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.pending else 0)
                self.selector.modify(client.sock, events, client)
                return
            data = client.sock.recv(4096)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        except OSError:
            self.end(client)
            return
        self.end(client, answered=bool(data))

    def trickle(self, now: float) -> float:
        """Send each client's next piece when due; returns when the next one is due."""
        due = now + self.args.interval
        for key in list(self.selector.get_map().values()):
            client: Client = key.data
            if not client.next_send or client.pending:
                continue
            if client.next_send <= now:
                try:
                    client.sock.send(self.piece(client))
                except ssl.SSLWantWriteError:
                    pass
                except OSError:
                    self.end(client)
                    continue
                client.sent += 1
                client.next_send = now + self.args.interval
            due = min(due, client.next_send)
        return due

    def run(self, stop: threading.Event) -> None:
        """Open the clients, then keep them trickling until ``stop``."""
        for _ in range(self.args.clients):
            self.open()
        report = 0.0
        while not stop.is_set():
            now = time.monotonic()
            due = self.trickle(now)
            if now >= report:
                report = now + 0.2
                print(json.dumps({"open": len(self.selector.get_map()), "opened": self.opened,
                                  "started": self.started, "closed": self.closed,
                                  "answered": self.answered}), flush=True)  # fmt: skip
            timeout = max(0.0, min(due, report) - time.monotonic())
            for key, _ in self.selector.select(timeout):
                self.ready(key.data, time.monotonic())


class SlowClients:
    """The test's side: a running crowd of slow clients and its latest counts."""

    def __init__(self, port: int, clients: int, *options: str) -> None:
        self.clients = clients
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.slow_clients", "--port", str(port),
             "--clients", str(clients), *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        self.counts = dict.fromkeys(["open", "opened", "started", "closed", "answered"], 0)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.counts = json.loads(line)

    def wait_until_started(self, count: int | None = None, timeout: float = 60.0) -> None:
        """Until ``count`` connections (one per client by default) have sent their first bytes:
        after the TLS handshake, which clients that close each other's connections may take
        many tries to finish."""
        count = self.clients if count is None else count
        poll(lambda: self.counts["started"] >= count, timeout=timeout,
             what=f"{count} slow connections to start")  # fmt: skip

    def __enter__(self) -> SlowClients:
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


def main() -> None:
    """Parse the options and hold connections until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--mode", choices=["head", "body", "silent", "stall"], default="head")
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--reconnect", action="store_true")
    args = parser.parse_args()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    Crowd(args).run(stop)


if __name__ == "__main__":
    main()
