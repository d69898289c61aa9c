"""The gRPC driver: one grpcio aio channel per target, one unary call per request.

Theory of operation:

- compiling (:meth:`GrpcPlan.compile`, no network) renders the request and metadata templates
  once, reads the TLS files and, with a ``descriptor_set``, finds the method's types there;
- opening (:meth:`GrpcDriver.open`) makes the target's one channel and the method's callable
  once: no per-call channel or stub. HTTP/2 carries the level's calls as streams of that one
  connection, and the load generator bounds them by the concurrency level;
- the first probe that reaches the port asks the server's reflection for the types when no
  descriptor set gave them (:mod:`warmgate.traffic.grpc.resolve`): a method the server does not
  offer is a :class:`ConfigError` there, as a SQL role that can write is; then each probe asks
  the standard health service, ``grpc.health.v1.Health/Check``, and the target is up when it
  answers ``SERVING`` (or when the server offers no health service: its port is all there is);
- each call renders the request (JSON, parsed into the request type and serialized; a constant
  request is serialized once, and a short rendering seen recently reuses its bytes) and sends
  it with the metadata and the target's deadline. The answer's bytes are dropped unparsed, like
  HTTP bodies. A status in ``expect`` is a success; ``DEADLINE_EXCEEDED`` a timeout (slow and
  failed); a channel that could not connect a connection error (``connection refused``: the
  load pauses, the supervisor's port watch re-arms); any other status a failure named by its
  code, which the gate's reason counts (``UNAVAILABLE 12%``).

Every call carries ``x-warmgate: 1`` and ``traffic.headers`` as metadata, and
``traffic.user_agent`` as the channel's user agent, as HTTP requests do.
TLS takes the settings of ``http.tls``: the CA file (or certifi's public bundle), a client
certificate and key, and ``server_name`` as the name verified (``grpc.ssl_target_name_override``).
grpcio cannot skip verifying a certificate, so ``verify: false`` is refused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warmgate.config.grpc_target import HEALTH_SERVICE, GrpcTarget
from warmgate.config.model import TrafficConfig
from warmgate.config.tls import TlsConfig
from warmgate.decide.outcomes import CONNECTION_ERROR, ERROR, OK, TIMEOUT, UNEXPECTED_STATUS
from warmgate.decide.reach import Down, Reach
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.driver import Outcome
from warmgate.traffic.grpc.resolve import (
    Resolved,
    Unreachable,
    connection_detail,
    read_descriptor_set,
    reflect,
    resolve_in,
)
from warmgate.traffic.probe import tcp_probe
from warmgate.traffic.templating import Constant, Template, Templates
from warmgate.traffic.tls import read_pem

if TYPE_CHECKING:
    import grpc.aio

HEALTH_TIMEOUT = 2.0
"""Seconds a health check (or the reflection it follows) may take in the wait phase."""
MARKER = ("x-warmgate", "1")
CACHED_REQUESTS = 4096
CACHED_REQUEST_CHARS = 1024
"""Rendered requests up to this long keep their bytes, the last few thousand distinct ones."""
CHANNEL_OPTIONS = (
    # A restarted server is reconnected to within a second, not gRPC's default two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),  # one call is one outcome: no transparent retries
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


@dataclass(frozen=True, slots=True)
class GrpcCredentials:
    """The PEM bytes grpcio's channel credentials take, read at start-up."""

    root_certificates: bytes | None
    private_key: bytes | None
    certificate_chain: bytes | None
    server_name: str | None


@dataclass(frozen=True, slots=True)
class GrpcPlan:
    """One gRPC target compiled: its templates, endpoint, credentials and, from a descriptor
    set, its method's types."""

    target: GrpcTarget
    request: Template
    metadata: tuple[tuple[str, Template], ...]
    host: str
    port: int
    credentials: GrpcCredentials | None
    resolved: Resolved | None

    @classmethod
    def compile(cls, target: GrpcTarget, templates: Templates, where: str) -> GrpcPlan:
        """Compile the templates (each rendered once), take the TLS files (checked already by
        :func:`~warmgate.traffic.tls.load_tls`) and, with a descriptor set, resolve the method
        and check that the request parses as its type."""
        request = templates.compile(target.request, f"{where}.request")
        metadata = tuple(
            (name, templates.compile(value, f"{where}.metadata.{name}"))
            for name, value in target.metadata.items()
        )
        credentials = None if target.plaintext else _credentials(target.tls, where)
        resolved = None
        if target.descriptor_set is not None:
            field = f"{where}.descriptor_set"
            files = read_descriptor_set(target.descriptor_set, field)
            resolved = resolve_in(files, target, where, f"descriptor set {target.descriptor_set}")
            check_request(request, resolved, where)
        return cls(target, request, metadata, target.host, target.port, credentials, resolved)


def _credentials(settings: TlsConfig | None, where: str) -> GrpcCredentials:
    """The PEM bytes of ``settings`` for grpcio: the CAs to trust, the client's key and chain."""
    settings = settings or TlsConfig()
    field = f"{where}.tls"
    if not settings.verify:
        raise ConfigError(
            f"{field}.verify: grpcio cannot accept a certificate without checking it; trust the "
            "server's CA (or its self-signed certificate) with ca_file instead."
        )
    if settings.ca_file is not None:
        roots = "".join(
            block.text + "\n" for block in read_pem(settings.ca_file, f"{field}.ca_file")
        )
    else:
        import certifi

        roots = "".join(block.text + "\n" for block in read_pem(Path(certifi.where()), field))
    key = chain = None
    if settings.client_cert is not None:
        cert_blocks = read_pem(settings.client_cert, f"{field}.client_cert")
        key_path = settings.client_key or settings.client_cert
        key_blocks = read_pem(key_path, f"{field}.client_key")
        chain = "".join(b.text + "\n" for b in cert_blocks if b.label == "CERTIFICATE").encode()
        key = "".join(b.text + "\n" for b in key_blocks if b.label.endswith("PRIVATE KEY")).encode()
    return GrpcCredentials(roots.encode(), key, chain, settings.server_name)


def check_request(request: Template, resolved: Resolved, where: str) -> None:
    """A ConfigError naming ``where.request`` when its first render is not a message of the
    method's request type in protobuf's JSON mapping."""
    from google.protobuf import json_format

    try:
        json_format.Parse(request.render(), resolved.request_class())
    except json_format.ParseError as exc:
        shown = "" if request.sensitive else f" ({exc})"
        raise ConfigError(
            f"{where}.request: once rendered, it is not a {resolved.request_type} message in "
            f'JSON{shown}; write the fields by their JSON names, such as {{"id": 1}}.'
        ) from None


class GrpcDriver:
    """Calls one target's method over the target's own channel."""

    def __init__(
        self, name: str, plan: GrpcPlan, channel: grpc.aio.Channel, traffic: TrafficConfig
    ) -> None:
        self.name = name
        self._plan = plan
        self._target = plan.target
        self._where = f"target '{name}'"
        self._channel = channel
        self._timeout = plan.target.timeout
        marker = {MARKER[0]: MARKER[1], **{k.lower(): v for k, v in traffic.headers.items()}}
        self._fixed = tuple(marker.items())
        self._constant_metadata = all(isinstance(t, Constant) for _, t in plan.metadata)
        self._metadata = self._fixed + tuple((k, t.render()) for k, t in plan.metadata)
        self._call: Any = None
        self._payload: bytes | None = None
        self._serialized: dict[str, bytes] = {}
        self.resolved: Resolved | None = None
        if plan.resolved is not None:
            self._use(plan.resolved)

    @classmethod
    def open(cls, name: str, plan: GrpcPlan, traffic: TrafficConfig) -> GrpcDriver:
        """The driver with its one channel (closed by :meth:`aclose`)."""
        import grpc

        options: list[tuple[str, Any]] = [
            *CHANNEL_OPTIONS,
            ("grpc.primary_user_agent", traffic.user_agent),
        ]
        address = plan.target.address
        if plan.credentials is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            creds = plan.credentials
            if creds.server_name:
                options.append(("grpc.ssl_target_name_override", creds.server_name))
            credentials = grpc.ssl_channel_credentials(
                creds.root_certificates, creds.private_key, creds.certificate_chain
            )
            channel = grpc.aio.secure_channel(address, credentials, options=options)
        return cls(name, plan, channel, traffic)

    def _use(self, resolved: Resolved) -> None:
        """Make the method's callable once; serialize a constant request once."""
        self.resolved = resolved
        # No serializers: requests go as the bytes made here, answers come back as bytes.
        self._call = self._channel.unary_unary(resolved.path)
        if isinstance(self._plan.request, Constant):
            self._payload = self._serialize()

    def _serialize(self) -> bytes:
        """The rendered request as bytes; the bytes of a recent rendering are reused, since
        parsing JSON into a message costs more than the rest of the call's client work."""
        from google.protobuf import json_format

        assert self.resolved is not None  # noqa: S101 - called once resolved
        text = self._plan.request.render()
        data = self._serialized.get(text)
        if data is None:
            data = json_format.Parse(text, self.resolved.request_class()).SerializeToString()
            if len(text) <= CACHED_REQUEST_CHARS:
                if len(self._serialized) >= CACHED_REQUESTS:
                    self._serialized.clear()
                self._serialized[text] = data
        return data

    async def resolve(self) -> Resolved:
        """The method's types, asked of the server's reflection once (ConfigError if it lacks
        the method); :class:`Unreachable` while it cannot answer."""
        if self.resolved is None:
            where = f"{self._where}: grpc"
            resolved = await reflect(self._channel, self._target, where)
            check_request(self._plan.request, resolved, where)
            self._use(resolved)
        assert self.resolved is not None  # noqa: S101 - set by _use
        return self.resolved

    async def execute(self) -> Outcome:
        """Render the request, make the call, classify how it ended."""
        import grpc

        if self._call is None:  # the wait phase resolves; a call before it resolves here
            try:
                await self.resolve()
            except Unreachable as exc:
                return Outcome(CONNECTION_ERROR, detail=str(exc))
        payload = self._payload
        if payload is None:
            from google.protobuf import json_format

            try:
                payload = self._serialize()
            except json_format.ParseError:
                assert self.resolved is not None  # noqa: S101 - resolved above
                return Outcome(ERROR, detail=f"request is not a {self.resolved.request_type}")
        metadata = self._metadata
        if not self._constant_metadata:
            metadata = self._fixed + tuple((k, t.render()) for k, t in self._plan.metadata)
        try:
            await self._call(payload, timeout=self._timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return self._failed(exc.code(), exc.details() or "")
        return (
            Outcome(OK) if "OK" in self._target.expect else Outcome(UNEXPECTED_STATUS, "OK", "OK")
        )

    def _failed(self, code: grpc.StatusCode, details: str) -> Outcome:
        import grpc

        name = code.name
        if name in self._target.expect:
            return Outcome(OK)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(TIMEOUT, detail="timed out")
        if code == grpc.StatusCode.UNAVAILABLE:
            connection = connection_detail(details)
            if connection is not None:
                return Outcome(CONNECTION_ERROR, detail=connection)
        return Outcome(UNEXPECTED_STATUS, name, name)

    async def probe(self) -> Down | None:
        """Up when the port accepts a connection, the method is known and the health service
        answers SERVING (or is not offered)."""
        import grpc

        down = await tcp_probe(self._plan.host, self._plan.port)
        if down is not None:
            return down
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT * 2):
                await self.resolve()
        except (Unreachable, TimeoutError) as exc:
            return Down(Reach.BUSY, f"{self._target.address}: {str(exc) or 'reflection timed out'}")
        try:
            serving = await self._health()
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return None  # no health service: the port is all there is
            detail = connection_detail(exc.details() or "") or f"health check {code.name}"
            return Down(Reach.BUSY, f"{self._target.address}: {detail}")
        if serving is None:
            return None
        return Down(Reach.BUSY, f"{self._target.address}: health check answered {serving}")

    async def _health(self) -> str | None:
        """``None`` when the health service says SERVING, else the status it said: for the
        target's service, or the server's as a whole if it does not know that one."""
        import grpc
        from grpc_health.v1 import health_pb2

        check = self._channel.unary_unary(
            f"/{HEALTH_SERVICE}/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        for service in (self._target.service, ""):
            try:
                answer = await check(
                    health_pb2.HealthCheckRequest(service=service), timeout=HEALTH_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND and service:
                    continue  # the server does not track this service: ask about the server
                raise
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            return None if status == "SERVING" else status
        return None

    async def aclose(self) -> None:
        """Close the channel."""
        await self._channel.close()


async def describe_method(name: str, plan: GrpcPlan, traffic: TrafficConfig) -> str:
    """For ``validate``: the method and its types, from the descriptor set or, if the server
    answers now, its reflection (a ConfigError when it lacks the method); else a sentence
    saying they are asked for at start-up."""
    if plan.resolved is not None:
        return plan.resolved.describe()
    down = await tcp_probe(plan.host, plan.port)
    later = f"{plan.target.method}: types from server reflection at start-up"
    if down is not None:
        return f"{later} (the server does not answer now: {down.reason})"
    driver = GrpcDriver.open(name, plan, traffic)
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT * 2):
            return (await driver.resolve()).describe()
    except (Unreachable, TimeoutError) as exc:
        return f"{later} (reflection did not answer now: {str(exc) or 'timed out'})"
    finally:
        await driver.aclose()
