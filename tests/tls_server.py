"""A real HTTPS server on port 0 for the TLS tests, and certificates made by trustme.

The server is the standard library's threaded HTTP server with each accepted socket wrapped in
TLS, so handshake failures end as real servers end them: with the TLS alert on the wire (an
asyncio server closes without flushing it). It records what each handshake carried (the SNI
name, the client certificate's subject) so tests can check what reached the server.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

APP_NAME = "app.internal"
"""The name in the test servers' certificates; the URLs say 127.0.0.1."""


@dataclass
class Seen:
    """What the server saw: SNI names, client certificate subjects, handshake failures."""

    server_names: list[str | None] = field(default_factory=list)
    client_subjects: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    """The Host header of each request."""
    requests: int = 0
    connections: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections alive between requests
    server: _TlsServer

    def do_GET(self) -> None:
        self.server.seen.requests += 1
        self.server.seen.hosts.append(self.headers.get("Host", ""))
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        """Quiet."""


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.seen = Seen()
        context.sni_callback = self._sni

    def _sni(self, _: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        self.seen.server_names.append(name)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.seen.connections += 1
        request.settimeout(10)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self.seen.failures.append(str(exc))
            return
        peer = request.getpeercert()
        if peer:
            subject = dict(pair[0] for pair in peer["subject"])
            self.seen.client_subjects.append(subject.get("commonName", ""))
        super().finish_request(request, client_address)


@contextmanager
def tls_server(
    cert: trustme.LeafCert,
    *,
    client_ca: trustme.CA | None = None,
    maximum_version: ssl.TLSVersion | None = None,
) -> Iterator[tuple[int, Seen]]:
    """Serve HTTPS with ``cert`` on 127.0.0.1:0; with ``client_ca``, require a client
    certificate it issued. Yields the port and what the server sees."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(context)
    if maximum_version is not None:
        context.maximum_version = maximum_version
    server = _TlsServer(context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``; returns ``path``."""
    path.write_bytes(data)
    return path


def self_signed(name: str = APP_NAME, days: int = 30) -> trustme.LeafCert:
    """A self-signed server certificate for ``name``, as a keytool -genkey would make."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return trustme.LeafCert(key_pem, certificate.public_bytes(serialization.Encoding.PEM), [])


def expired(ca: trustme.CA, name: str = APP_NAME) -> trustme.LeafCert:
    """A certificate for ``name`` from ``ca`` that expired on 2021-01-01."""
    return ca.issue_cert(
        name,
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
