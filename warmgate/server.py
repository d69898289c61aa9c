"""The readiness endpoint: ``/readyz``, ``/livez``, ``/status``, ``/metrics``.

The standard library's threaded HTTP server, on its own threads, so a busy loop elsewhere never
delays the kubelet's probe and the long-lived sidecar imports nothing it does not need.
Handlers only read: a :data:`StatusSource` callable (an immutable snapshot held in memory by
the supervisor, or the status directory in ``serve`` mode), a liveness callable and the
metrics text. Nothing mutates, nothing secret is served. The admission webhook
(:mod:`warmgate.webhook`) adds a :data:`PostRoute` for its reviews (a pure function of the body)
and TLS: each new connection is wrapped with the :class:`ssl.SSLContext` that ``tls`` returns
at that moment (so a renewed certificate applies to new connections), and the handshake runs on
the connection's own thread, under the idle timeout.

The port is exposed to anything in the pod network, so it is built to take abuse: a malformed
request or a client that hangs up costs one log line, never a traceback; idle connections are
closed after :data:`IDLE_TIMEOUT`; at most :data:`MAX_CONNECTIONS` are served at once (the rest
are closed at once); POST bodies read at once hold at most :data:`MAX_BODY_BYTES` together
(503 beyond); and running out of file descriptors pauses accepting with one log line per burst
instead of spinning.
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from warmgate.errors import ServeError

if TYPE_CHECKING:
    from warmgate.logs import Log

StatusSource = Callable[[], tuple[bool, str, dict[str, Any]]]
"""Returns ``(ready, reason, status_json)`` for the current moment."""
LivenessSource = Callable[[], tuple[bool, str]]
"""Returns ``(alive, reason)``: whether the loop that does the work is still turning."""
Reporter = Callable[[str], None]
"""Takes one line about a problem with a client or the listening socket."""
PostRoute = Callable[[str, bytes], tuple[int, bytes, str]]
"""Takes the path and body of a POST; returns the status, body and content type to answer."""
TlsSource = Callable[[], ssl.SSLContext]
"""Returns the TLS context for the next connection."""

IDLE_TIMEOUT = 5.0
"""Seconds a connection may sit without sending a complete request before it is closed."""
MAX_CONNECTIONS = 64
"""Connections served at once; probes need a handful."""
MAX_BODY_BYTES = 2 * 1024 * 1024
"""The POST body bytes read and decided at once, across all connections (413 for one larger
body, 503 while others hold them). An AdmissionReview holds one object and etcd stores at most
1.5 MiB; decoding JSON takes up to ~27 times its size, and the webhook has 128 MiB."""
EXHAUSTED_PAUSE = 0.1
"""Seconds accepting pauses when the process is out of file descriptors."""


def always_alive() -> tuple[bool, str]:
    """The liveness of a process with nothing to watch but the server itself."""
    return True, "ok"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT

    def setup(self) -> None:
        """Shake hands on this connection's thread, under the idle timeout, when it is TLS."""
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_POST(self) -> None:
        """Hand the body to the endpoint's POST route, if it has one."""
        route = self.server.endpoint.post
        if route is None:
            self._reply(405, "nothing here takes a POST\n")
            return
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit()):
            self._reply(411, "a POST needs a Content-Length\n")
            return
        size = int(length)
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(413, f"the body is over {MAX_BODY_BYTES} bytes\n")
            return
        if not self.server.reserve(size):
            self.close_connection = True  # its body stays unread
            self._reply(503, "busy: other bodies being read fill the memory kept for them\n")
            return
        try:
            code, body, content_type = route(self.path.split("?", 1)[0], self.rfile.read(size))
        finally:
            self.server.release(size)
        self._reply(code, body, content_type)

    def do_GET(self) -> None:
        """Serve one of the four read-only routes."""
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
        """A malformed request: one line."""
        peer = self.client_address[0] if self.client_address else "?"
        self.server.endpoint.report(f"bad request from {peer}: {format % args}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    endpoint: Endpoint

    def __init__(self, endpoint: Endpoint, listener: socket.socket) -> None:
        self.endpoint = endpoint
        self.address_family = listener.family
        super().__init__(listener.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._exhausted = False
        self._body_lock = threading.Lock()
        self._body_bytes = 0

    def reserve(self, size: int) -> bool:
        """Count ``size`` bytes of body as being read, if they fit within MAX_BODY_BYTES."""
        with self._body_lock:
            if self._body_bytes + size > MAX_BODY_BYTES:
                return False
            self._body_bytes += size
            return True

    def release(self, size: int) -> None:
        """The body of ``size`` bytes is answered: its memory is free again."""
        with self._body_lock:
            self._body_bytes -= size

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
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the limit: close at once
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or timed out: one line, no traceback."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, TimeoutError | ConnectionError):
            return  # idle or gone: routine for probes
        peer = client_address[0] if client_address else "?"
        self.endpoint.report(f"request from {peer} failed: {type(exc).__name__}: {exc}")


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
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.liveness = liveness
        self.post = post
        self.tls = tls
        self.draining = threading.Event()
        """Set once the process is going away (see :func:`serve_until_signalled`)."""
        self.report: Reporter = report or (lambda _line: None)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, listener: socket.socket) -> int:
        """Serve on an already bound, listening socket; returns its port."""
        server = _Server(self, listener)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
            name="warmgate-endpoint",
        )  # fmt: skip
        self._thread.start()
        return int(listener.getsockname()[1])

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting and close the port; waits up to ``timeout`` seconds for the thread."""
        server, self._server = self._server, None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        server.server_close()


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket, or a :class:`ServeError` naming the fix."""
    if not 0 <= port <= 65535:
        raise ServeError(f"--port: {port} is not a port; use 0 to 65535 (0 picks a free one).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
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

    from warmgate.logs import Log
    from warmgate.metrics import FileStatusCollector
    from warmgate.secrets import Secrets
    from warmgate.status import snapshot

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
