"""Real grpcio aio servers on port 0 for the gRPC tests: a catalog service built from a
descriptor made here (no protoc), with health, reflection (v1 and v1alpha) and a cold mode.

The cold catalog takes ``warm_after`` seconds from its first call to warm: its capacity (calls
served at once) grows from ``start_capacity`` to ``full_capacity`` and its latency falls from
``cold_latency`` to ``base_latency``, both linearly; a call beyond the capacity of the moment
answers UNAVAILABLE at once, as an overloaded server sheds load.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

PACKAGE = "warm.v1"
SERVICE = f"{PACKAGE}.Catalog"
FILE_NAME = "warm/v1/catalog.proto"
_F = descriptor_pb2.FieldDescriptorProto


def catalog_file() -> descriptor_pb2.FileDescriptorProto:
    """The catalog's .proto, as protoc would describe it."""
    file = descriptor_pb2.FileDescriptorProto(
        name=FILE_NAME, package=PACKAGE, syntax="proto3",
        dependency=["google/protobuf/empty.proto"],
    )  # fmt: skip
    request = file.message_type.add(name="GetItemRequest")
    request.field.add(name="id", number=1, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    request.field.add(name="tag", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    item = file.message_type.add(name="Item")
    item.field.add(name="id", number=1, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    item.field.add(name="name", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    service = file.service.add(name="Catalog")
    for name, input_type, output_type in (
        ("GetItem", "GetItemRequest", "Item"),
        ("ListItems", "GetItemRequest", "Item"),
        ("AddItem", "Item", "Item"),
    ):
        service.method.add(
            name=name,
            input_type=f".{PACKAGE}.{input_type}",
            output_type=f".{PACKAGE}.{output_type}",
        )
    service.method.add(
        name="GetPing", input_type=".google.protobuf.Empty", output_type=".google.protobuf.Empty"
    )
    service.method.add(
        name="ListWatch", input_type=f".{PACKAGE}.GetItemRequest",
        output_type=f".{PACKAGE}.Item", server_streaming=True,
    )  # fmt: skip
    return file


def write_descriptor_set(path: Path, *, include_imports: bool = True) -> Path:
    """A FileDescriptorSet of the catalog (with empty.proto unless ``include_imports`` is
    false), as ``protoc --descriptor_set_out`` writes it."""
    files = []
    if include_imports:
        empty = descriptor_pb2.FileDescriptorProto()
        empty_pb2.DESCRIPTOR.CopyToProto(empty)
        files.append(empty)
    files.append(catalog_file())
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
    return path


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    empty = descriptor_pb2.FileDescriptorProto()
    empty_pb2.DESCRIPTOR.CopyToProto(empty)
    pool.Add(empty)
    pool.Add(catalog_file())
    return pool


@dataclass
class Cold:
    """How the catalog warms, from its first call."""

    start_capacity: int = 1
    full_capacity: int = 8
    warm_after: float = 4.0
    cold_latency: float = 0.2
    base_latency: float = 0.002

    def at(self, elapsed: float) -> tuple[int, float]:
        """``(capacity, latency)`` ``elapsed`` seconds after the first call."""
        done = min(1.0, elapsed / self.warm_after) if self.warm_after > 0 else 1.0
        capacity = self.start_capacity + (self.full_capacity - self.start_capacity) * done
        return int(capacity), self.cold_latency + (self.base_latency - self.cold_latency) * done


@dataclass
class Seen:
    """What the server saw."""

    calls: Counter[str] = field(default_factory=Counter)
    unavailable: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)
    first_call: float | None = None
    warm_at: float | None = None
    """When (time.time()) the cold catalog reached full capacity and base latency."""


class GrpcApp:
    """A grpcio aio server in a thread of its own, on 127.0.0.1 ``port`` (0: a free one)."""

    def __init__(
        self,
        *,
        reflection_service: bool = True,
        reflection_v1: bool = True,
        health: bool = True,
        cold: Cold | None = None,
        tls: tuple[bytes, bytes] | None = None,
        serving: bool = True,
        port: int = 0,
        client_ca: bytes | None = None,
    ) -> None:
        self.reflection = reflection_service
        self.reflection_v1 = reflection_v1
        self.health = health
        self.cold = cold
        self.tls = tls
        self.client_ca = client_ca
        self.serving = serving
        self.seen = Seen()
        self.port = port
        self._in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._health: HealthServicer | None = None
        self._error: BaseException | None = None

    def start(self) -> GrpcApp:
        """Start serving; returns once the port is bound."""
        self._thread.start()
        if not self._started.wait(20) or self._error is not None:
            raise RuntimeError(f"the gRPC server did not start: {self._error}")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (again: nothing)."""
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def set_serving(self, serving: bool) -> None:
        """Say SERVING (or NOT_SERVING) through the health service."""
        self.serving = serving
        if self._health is not None:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else (health_pb2.HealthCheckResponse.NOT_SERVING)
            )
            health = self._health
            asyncio.run_coroutine_threadsafe(health.set("", status), self._loop).result(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._started.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        pool = _pool()
        classes = {
            name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in ("GetItemRequest", "Item")
        }
        server = grpc.aio.server()
        handlers = {}
        for method in ("GetItem", "ListItems", "AddItem"):
            request_class = classes["Item" if method == "AddItem" else "GetItemRequest"]
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._handler(method, classes["Item"]),
                request_deserializer=request_class.FromString,
                response_serializer=classes["Item"].SerializeToString,
            )
        handlers["GetPing"] = grpc.unary_unary_rpc_method_handler(
            self._ping,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        names = [SERVICE]
        if self.health:
            self._health = HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if self.serving
                else (health_pb2.HealthCheckResponse.NOT_SERVING)
            )
            await self._health.set("", status)
            names.append("grpc.health.v1.Health")
        if self.reflection:
            servicer = ReflectionServicer([*names, reflection.SERVICE_NAME], pool=pool)
            reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server, pool)
        if self.reflection and self.reflection_v1:
            # grpc.reflection.v1 is the same protocol under another package name.
            v1 = grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                "grpc.reflection.v1.ServerReflection", {"ServerReflectionInfo": v1}
            ),))  # fmt: skip
        if self.tls is None:
            self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        else:
            key, chain = self.tls
            credentials = grpc.ssl_server_credentials(
                [(key, chain)],
                root_certificates=self.client_ca,
                require_client_auth=self.client_ca is not None,
            )
            self.port = server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        await server.start()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await server.stop(0)

    def _handler(self, method: str, item_class: Any) -> Any:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.seen.calls[method] += 1
            self.seen.metadata = {key: str(value) for key, value in context.invocation_metadata()}
            if len(self.seen.requests) < 50:
                self.seen.requests.append(request)
            latency = 0.0
            if self.cold is not None:
                now = time.time()
                if self.seen.first_call is None:
                    self.seen.first_call = now
                capacity, latency = self.cold.at(now - self.seen.first_call)
                if self.seen.warm_at is None and now - self.seen.first_call >= self.cold.warm_after:
                    self.seen.warm_at = now
                if self._in_flight >= capacity:
                    self.seen.unavailable += 1
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            self._in_flight += 1
            try:
                if latency:
                    await asyncio.sleep(latency)
            finally:
                self._in_flight -= 1
            if method == "GetItem" and getattr(request, "id", 0) < 0:
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such item")
            return item_class(id=getattr(request, "id", 0), name="item")

        return handle

    async def _ping(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.seen.calls["GetPing"] += 1
        return empty_pb2.Empty()


@contextmanager
def grpc_app(**options: Any) -> Iterator[GrpcApp]:
    """A started :class:`GrpcApp`, stopped afterwards."""
    app = GrpcApp(**options).start()
    try:
        yield app
    finally:
        app.stop()
