"""The readiness endpoint: ``/readyz``, ``/livez``, ``/status``, ``/metrics``.

The standard library's threaded HTTP server, on its own threads, so a busy loop elsewhere never
delays the kubelet's probe and the long-lived sidecar imports nothing it does not need.
Handlers only read: a :data:`StatusSource` callable (an immutable snapshot held in memory by
the supervisor, or the status directory in ``serve`` mode), a liveness callable and the
metrics text. Nothing mutates, nothing secret is served. The admission webhook
(:mod:`warmgate.kube.webhook`) adds a :data:`PostRoute` for its reviews (a pure function of the
body) and TLS: each new connection is wrapped with the :class:`ssl.SSLContext` that ``tls`` returns
at that moment (so a renewed certificate applies to new connections), and the handshake runs on
the connection's own thread, under the connection's deadline.

The port is exposed to anything in the pod network, so no one client may starve a probe or a
review. The server stays the standard library's, one thread per connection (a few MiB for all
of them, no event loop or dependency to add), and three rules, decided in
:mod:`warmgate.serve.connections` and carried out by :class:`warmgate.serve.client_io.Guard`, bound
what a client holds:

- **a deadline per exchange, not per read**: 5 s from the accept or the previous answer to a
  complete request head of at most 32 KiB, TLS handshake included, then 10 s for a body, however
  steadily the bytes trickle (:class:`warmgate.serve.client_io.DeadlineReader`);
- **64 connections, and room for every newcomer**: when all are taken, a newcomer closes one
  that waits on its client, the longest-waiting of the address holding the most (looking first
  at those that waited 1 s), so a probe from the node's address gets in, and is not the one
  closed, while slow clients of other pods hold every connection; ``shutdown`` wakes the closed
  one's thread. Threads are kept a few seconds for the next connection
  (:class:`warmgate.serve.workers.Workers`), and the listen backlog is 1024: a crowd that reconnects
  as fast as it is closed makes probes wait milliseconds in the accept queue, not seconds of
  SYN retries;
- **body memory by bytes received**: a POST body (2 MiB at most, 413 beyond) is read as it
  arrives, its bytes held against 8 MiB and making room the same way when full; bodies are
  decided 2 MiB at a time (JSON decoding takes up to ~27 times a body's size), the others wait
  their turn, and only a turn that does not come before the body's deadline is answered 503.

What a client costs is one log line a minute for each kind of
:class:`~warmgate.serve.client_io.Trouble`, with the count of those held back, never a traceback; a
kept-alive connection closed before it began another request is routine and costs nothing.
:meth:`Endpoint.troubles` counts them for a metric.
Running out of file descriptors pauses accepting with one log line per burst instead of
spinning. :meth:`Endpoint.stop` closes every connection and waits for its thread.
"""

from __future__ import annotations

import errno
import io
import json
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from warmgate.kernel.errors import ServeError
from warmgate.serve.client_io import (
    Clock,
    Connection,
    DeadlineReader,
    DeadlineWriter,
    Guard,
    Reporter,
    Trouble,
)
from warmgate.serve.connections import Limits
from warmgate.serve.workers import Workers

if TYPE_CHECKING:
    from warmgate.serve.logs import Log

StatusSource = Callable[[], tuple[bool, str, dict[str, Any]]]
"""Returns ``(ready, reason, status_json)`` for the current moment."""
LivenessSource = Callable[[], tuple[bool, str]]
"""Returns ``(alive, reason)``: whether the loop that does the work is still turning."""
PostRoute = Callable[[str, bytes], tuple[int, bytes, str]]
"""Takes the path and body of a POST; returns the status, body and content type to answer."""
TlsSource = Callable[[], ssl.SSLContext]
"""Returns the TLS context for the next connection."""

LIMITS = Limits()
"""What an endpoint grants its clients unless told otherwise (see :class:`Limits`)."""
EXHAUSTED_PAUSE = 0.1
"""Seconds accepting pauses when the process is out of file descriptors."""
BODY_CHUNK = 64 * 1024
"""Bytes of a body read (and held) at a time."""


def always_alive() -> tuple[bool, str]:
    """The liveness of a process with nothing to watch but the server itself."""
    return True, "ok"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    request: Connection
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Shake hands (when TLS) on this connection's thread; read and write by its deadline."""
        connection = self.request
        self.connection = connection.sock
        connection.handshake(self.server.guard.clock)
        self.rfile = io.BufferedReader(DeadlineReader(connection, self.server.guard.clock))
        self.wfile = DeadlineWriter(connection, self.server.guard.clock)

    def do_POST(self) -> None:
        """Hand the body to the endpoint's POST route, if it has one."""
        route = self.server.endpoint.post
        length = self.headers.get("Content-Length", "")
        limit = self.server.guard.limits.body_bytes
        self.close_connection = True  # unless the body is read: what is left of it is no request
        if route is None:
            self._reply(405, "nothing here takes a POST\n")
        elif not (length.isascii() and length.isdigit()):
            self._reply(411, "a POST needs a Content-Length\n")
        elif int(length) > limit:
            self._reply(413, f"the body is over {limit} bytes\n")
        else:
            body = self._read_body(int(length))
            guard = self.server.guard
            if body is None or not guard.decide(self.request):
                peer = self.request.peer
                guard.trouble(Trouble.BUSY, f"answered 503 to {peer}: its turn to be decided "
                              "did not come in time")  # fmt: skip
                self._reply(503, "busy: other bodies being decided kept this one waiting\n")
                return
            self.close_connection = False
            self._reply(*route(self.path.split("?", 1)[0], body))

    def _read_body(self, size: int) -> bytes | None:
        """The body as it arrives, its bytes held as they come (None: no room, never expected)."""
        guard = self.server.guard
        guard.reading_body(self.request)
        chunks = []
        while size:
            chunk = self.rfile.read1(min(size, BODY_CHUNK))
            if not chunk:
                raise ConnectionAbortedError("the client closed before its body was complete")
            if not guard.hold(self.request, len(chunk)):
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def do_GET(self) -> None:
        """Serve one of the four read-only routes."""
        self.server.guard.running(self.request)
        path = self.path.split("?", 1)[0]
        endpoint = self.server.endpoint
        if path == "/readyz":
            ready, reason, _ = endpoint.source()
            self._reply(200 if ready else 503, reason + "\n")
        elif path == "/livez":
            alive, reason = endpoint.liveness()
            self._reply(200 if alive else 503, reason + "\n")
        elif path == "/status":
            _, _, data = endpoint.source()
            self._reply(200, json.dumps(data, indent=2) + "\n", "application/json")
        elif path == "/metrics":
            self._reply(200, endpoint.metrics(), CONTENT_TYPE_LATEST)
        else:
            self._reply(404, "not found: try /readyz, /livez, /status or /metrics\n")

    def _reply(self, code: int, body: str | bytes, content_type: str = "text/plain") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.server.guard.waiting(self.request)  # from now on, the client has to take the answer
        self.send_response(code)
        if "charset" not in content_type:
            content_type += "; charset=utf-8"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if self.server.endpoint.draining.is_set():
            # Going away: make kept-alive clients open their next connection elsewhere.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Successful requests are not logged (probes come every few seconds, forever)."""

    def log_error(self, format: str, *args: Any) -> None:
        """A malformed request: one line a minute."""
        peer = self.request.peer
        self.server.guard.trouble(Trouble.MALFORMED, f"bad request from {peer}: {format % args}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    endpoint: Endpoint

    def __init__(self, endpoint: Endpoint, listener: socket.socket, guard: Guard) -> None:
        self.endpoint = endpoint
        self.address_family = listener.family
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()[:2]
        self._exhausted = False
        self.guard = guard
        self.workers: Workers[Connection] = Workers(self._serve, "warmgate-connection")

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = self._accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                if not self._exhausted:
                    self._exhausted = True
                    self.endpoint.report(
                        f"cannot accept connections: {exc.strerror}; pausing accepts"
                    )
                time.sleep(EXHAUSTED_PAUSE)  # the socket stays readable: do not spin
            raise
        if self._exhausted:
            self._exhausted = False
            self.endpoint.report("accepting connections again")
        return request

    def _accept(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # An answer leaves in two writes (headers, body): without this, Nagle's algorithm holds
        # the second until the client's delayed ACK of the first, up to 40 ms on a kept-alive
        # connection.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.endpoint.tls
        if tls is None:
            return connection, address
        try:  # no I/O here: the handshake waits for the connection's thread
            wrapped = tls().wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        except OSError:
            connection.close()
            raise
        return wrapped, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """Admit the connection (closing another if all are taken) and give it a thread."""
        connection = Connection(request, client_address)
        if not self.guard.admit(connection):
            self.shutdown_request(request)
            return
        try:
            self.workers.submit(connection)
        except BaseException:
            self.guard.forget(connection)
            raise

    def _serve(self, connection: Connection) -> None:
        try:
            self.finish_request(connection, connection.address)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - whatever it was, it ends this connection only
            self.guard.failed(connection, sys.exc_info()[1])
        finally:
            self.guard.forget(connection)
            self.shutdown_request(connection.sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that could not be given a thread: at most a line."""
        self.guard.failed(None, sys.exc_info()[1])


class Endpoint:
    """Serves the four routes from a background thread until :meth:`stop`."""

    def __init__(
        self,
        source: StatusSource,
        metrics: Callable[[], bytes],
        *,
        liveness: LivenessSource = always_alive,
        report: Reporter | None = None,
        post: PostRoute | None = None,
        tls: TlsSource | None = None,
        limits: Limits = LIMITS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.liveness = liveness
        self.post = post
        self.tls = tls
        self.draining = threading.Event()
        """Set once the process is going away (see :func:`serve_until_signalled`)."""
        self.report: Reporter = report or (lambda _line: None)
        self._guard = Guard(limits, clock, self.report)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, listener: socket.socket) -> int:
        """Serve on an already bound, listening socket; returns its port."""
        server = _Server(self, listener, self._guard)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
            name="warmgate-endpoint",
        )  # fmt: skip
        self._thread.start()
        return int(listener.getsockname()[1])

    def troubles(self) -> dict[Trouble, int]:
        """How many of each kind of trouble clients caused since the start."""
        return dict(self._guard.counts)

    def serving(self) -> int:
        """Connections being served right now."""
        return self._guard.serving()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting, close the port and every connection; waits up to ``timeout`` seconds
        for the threads."""
        server, self._server = self._server, None
        if server is None:
            return
        deadline = time.monotonic() + timeout
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        server.server_close()
        self._guard.close_all(max(0.0, deadline - time.monotonic()))
        server.workers.stop(max(0.0, deadline - time.monotonic()))


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket, or a :class:`ServeError` naming the fix."""
    if not 0 <= port <= 65535:
        raise ServeError(f"--port: {port} is not a port; use 0 to 65535 (0 picks a free one).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(1024)
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        raise ServeError(
            f"cannot serve on {host}:{port} ({reason}); pick another --port or --host."
        ) from None
    return listener


def serve_directory(directory: Path, host: str, port: int, log_format: str = "auto") -> None:
    """``serve``: expose a status directory until SIGTERM/SIGINT."""
    listener = listen(host, port)
    from prometheus_client import CollectorRegistry, generate_latest

    from warmgate.kernel.redaction import Secrets
    from warmgate.serve.logs import Log
    from warmgate.serve.metrics import FileStatusCollector
    from warmgate.serve.status import snapshot

    registry = CollectorRegistry()
    registry.register(FileStatusCollector(directory))
    log = Log.for_format(log_format, Secrets())
    endpoint = Endpoint(
        lambda: snapshot(directory),
        lambda: generate_latest(registry),
        report=lambda line: log.event("endpoint", line),
    )
    bound = endpoint.start(listener)
    log.event("listening", f"serving {directory} on port {bound}", host=host, port=bound)
    serve_until_signalled(endpoint, log)


def serve_until_signalled(endpoint: Endpoint, log: Log, drain: float = 0.0) -> None:
    """Keep ``endpoint`` serving until SIGTERM or SIGINT, then stop it and say so.

    With ``drain``, the first signal sets ``endpoint.draining`` and serving goes on for that many
    seconds, each answer closing its connection (clients still routed here get answers while
    they learn it is going), or until a second signal.
    """
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
        if drain > 0:
            stop.clear()
            endpoint.draining.set()
            log.event("draining", f"still answering for {drain:g}s before stopping")
            stop.wait(drain)
    finally:
        endpoint.stop()
        log.event("stop", "stopped", at=time.time())
