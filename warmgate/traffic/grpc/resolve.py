"""Finding a gRPC method's message types: from a descriptor set file, or by server reflection.

Theory of operation. A gRPC call needs the method's request type (to turn the configured JSON
into bytes) and nothing else: answers are dropped unread, like HTTP bodies. The types come from

- a ``descriptor_set`` file (a ``FileDescriptorSet``, as ``protoc --descriptor_set_out
  --include_imports`` writes), read when targets compile, so ``validate`` resolves the method
  without the server; or
- the server's reflection service, asked once when the first probe reaches the port:
  ``grpc.reflection.v1`` first, then ``grpc.reflection.v1alpha`` (the same messages under another
  package, so one set of client-side protos from grpcio-reflection speaks both). The file that
  holds the service is asked for, then any dependency the answers did not bring; each question
  is a call of its own (one request, one answer), which the stream allows.

Either way the files go into a private ``DescriptorPool`` (dependencies first; the well-known
types come from protobuf itself when a set leaves them out) and the request's class comes from
``message_factory.GetMessageClass``. A method that is not there is a :class:`ConfigError` naming
it and what the server (or file) offers; a streaming method is refused, since one call must be
one outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from warmgate.config.grpc_target import GrpcTarget
from warmgate.kernel.errors import ConfigError

if TYPE_CHECKING:
    import grpc.aio

MAX_DESCRIPTOR_SET_BYTES = 64 * 1024 * 1024
"""A descriptor set larger than this is not one (a large API's is a few MiB)."""
REFLECTION_TIMEOUT = 5.0
"""Seconds the whole reflection exchange may take."""
REFLECTION_SERVICES = ("grpc.reflection.v1", "grpc.reflection.v1alpha")
SHOWN_METHODS = 20
"""The most methods an error lists as what the server offers."""
_WELL_KNOWN = (
    "any_pb2", "api_pb2", "duration_pb2", "empty_pb2", "field_mask_pb2", "source_context_pb2",
    "struct_pb2", "timestamp_pb2", "type_pb2", "wrappers_pb2",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Resolved:
    """A method found: its full path, its request's type and class, its response's type."""

    path: str
    """``/package.Service/Method``, as sent on the wire."""
    request_type: str
    response_type: str
    request_class: type[Message]
    source: str
    """Where the types came from, in words: ``server reflection (v1)``, ``descriptor set x.pb``."""

    def describe(self) -> str:
        """``shop.v1.Catalog/GetItem takes shop.v1.GetItemRequest, returns shop.v1.Item``."""
        return (
            f"{self.path[1:]} takes {self.request_type}, returns {self.response_type} "
            f"(types from {self.source})"
        )


class Unreachable(Exception):  # noqa: N818 - a state of the server, not a mistake
    """Reflection could not be asked now (the server is not serving yet); try again later."""


def read_descriptor_set(path: Path, where: str) -> list[descriptor_pb2.FileDescriptorProto]:
    """The files of the descriptor set at ``path``; a ConfigError naming ``where`` otherwise."""
    fix = "write one with protoc --descriptor_set_out=FILE --include_imports"
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_DESCRIPTOR_SET_BYTES + 1)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"{where}: cannot read {path} ({reason}); {fix}.") from None
    if len(data) > MAX_DESCRIPTOR_SET_BYTES:
        raise ConfigError(f"{where}: {path} is larger than 64 MiB, so not a descriptor set; {fix}.")
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    try:
        descriptor_set.ParseFromString(data)
    except DecodeError:
        raise ConfigError(f"{where}: {path} is not a FileDescriptorSet; {fix}.") from None
    if not descriptor_set.file:
        raise ConfigError(f"{where}: {path} holds no files; {fix}.")
    return list(descriptor_set.file)


def resolve_in(
    files: Sequence[descriptor_pb2.FileDescriptorProto],
    target: GrpcTarget,
    where: str,
    source: str,
) -> Resolved:
    """The method of ``target`` among ``files``; a ConfigError naming it and what is offered."""
    pool = _pool(files, where, source)
    offered = _methods(files)
    try:
        service = pool.FindServiceByName(target.service)
        method = service.methods_by_name[target.method_name]
    except KeyError:
        raise ConfigError(
            f"{where}.method: {source} has no method {target.method}; {_offers(offered, source)}."
        ) from None
    if method.client_streaming or method.server_streaming:
        raise ConfigError(
            f"{where}.method: {target.method} is a streaming method and warmgate calls unary "
            "methods only, one answer per call; choose a unary method."
        )
    request_class = message_factory.GetMessageClass(method.input_type)
    return Resolved(
        f"/{target.method}",
        method.input_type.full_name,
        method.output_type.full_name,
        request_class,
        source,
    )


def _methods(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> list[str]:
    found = []
    for file in files:
        prefix = f"{file.package}." if file.package else ""
        for service in file.service:
            found += [f"{prefix}{service.name}/{method.name}" for method in service.method]
    return found


def _offers(offered: Sequence[str], source: str) -> str:
    if not offered:
        return f"{source} offers no methods"
    shown = ", ".join(sorted(offered)[:SHOWN_METHODS])
    more = f" and {len(offered) - SHOWN_METHODS} more" if len(offered) > SHOWN_METHODS else ""
    return f"it offers {shown}{more}"


def _pool(
    files: Sequence[descriptor_pb2.FileDescriptorProto], where: str, source: str
) -> descriptor_pool.DescriptorPool:
    """A private pool holding ``files``, each added after its dependencies."""
    by_name = {file.name: file for file in files}
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str, chain: tuple[str, ...]) -> None:
        if name in added or name in chain:
            return
        file = by_name.get(name) or _well_known(name)
        if file is None:
            raise ConfigError(
                f"{where}: {source} lacks {name}, which {chain[-1] if chain else 'it'} imports; "
                "include the imports (protoc --include_imports)."
            )
        for dependency in file.dependency:
            add(dependency, (*chain, name))
        try:
            pool.Add(file)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {source} holds a file protobuf refuses: {exc}.") from None
        added.add(name)

    for name in by_name:
        add(name, ())
    return pool


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto | None:
    """The protobuf library's own copy of a well-known file (google/protobuf/empty.proto)."""
    if not name.startswith("google/protobuf/"):
        return None
    import importlib

    for module in _WELL_KNOWN:
        importlib.import_module(f"google.protobuf.{module}")
    try:
        found = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(proto)
    return proto


async def reflect(channel: grpc.aio.Channel, target: GrpcTarget, where: str) -> Resolved:
    """The method of ``target`` as the server's reflection describes it.

    Raises :class:`Unreachable` while the server cannot answer (try again), and ConfigError
    when it answers without the method, or offers no reflection at all.
    """
    import grpc

    for service in REFLECTION_SERVICES:
        try:
            async with asyncio.timeout(REFLECTION_TIMEOUT):
                files, offered = await _ask(channel, service, target.service)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                continue
            why = connection_detail(exc.details() or "") or f"reflection answered {exc.code().name}"
            raise Unreachable(why) from None
        except TimeoutError:
            raise Unreachable("reflection did not answer in time") from None
        except DecodeError:
            raise ConfigError(
                f"{where}: the reflection service of {target.address} answered with a file "
                "protobuf cannot read; set descriptor_set to a FileDescriptorSet of its protos "
                "(protoc --descriptor_set_out=FILE --include_imports)."
            ) from None
        source = f"server reflection ({service.rpartition('.')[2]}) of {target.address}"
        if files is None:
            raise ConfigError(
                f"{where}.method: the server at {target.address} has no service "
                f"{target.service}, so no method {target.method}; it offers the services "
                f"{', '.join(sorted(offered)) or '(none)'}."
            )
        return resolve_in(files, target, where, source)
    raise ConfigError(
        f"{where}: the server at {target.address} offers no reflection service (v1 or v1alpha), "
        f"so the types of {target.method} are unknown; set descriptor_set to a "
        "FileDescriptorSet of its protos (protoc --descriptor_set_out=FILE --include_imports)."
    )


async def _ask(
    channel: grpc.aio.Channel, service: str, symbol: str
) -> tuple[list[descriptor_pb2.FileDescriptorProto] | None, list[str]]:
    """The files that define ``symbol`` and their dependencies, through the reflection
    ``service``; ``None`` and the services offered when the server does not know it."""
    from grpc_reflection.v1alpha import reflection_pb2 as pb

    # Each question is its own call of one request and one answer: the stream allows that, and
    # a server without the service then ends the call with UNIMPLEMENTED reliably (writing to a
    # stream the server has already ended races with its status, which grpcio then reports as
    # INTERNAL).
    call: Any = channel.unary_unary(
        f"/{service}.ServerReflection/ServerReflectionInfo",
        request_serializer=pb.ServerReflectionRequest.SerializeToString,
        response_deserializer=pb.ServerReflectionResponse.FromString,
    )

    async def ask(**request: str) -> Any:
        return await call(pb.ServerReflectionRequest(**request), timeout=REFLECTION_TIMEOUT)

    answer = await ask(file_containing_symbol=symbol)
    if answer.HasField("error_response"):
        listing = await ask(list_services="")
        return None, [item.name for item in listing.list_services_response.service]
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    _collect(files, answer)
    while missing := _missing(files):
        for name in missing:
            answer = await ask(file_by_filename=name)
            if not answer.HasField("error_response"):
                _collect(files, answer)
            if name not in files:  # not offered, or answered with other files: asked once only
                files[name] = _well_known(name) or descriptor_pb2.FileDescriptorProto(name=name)
    return list(files.values()), []


def _collect(files: dict[str, descriptor_pb2.FileDescriptorProto], answer: Any) -> None:
    for data in answer.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(data)
        files.setdefault(file.name, file)


def _missing(files: dict[str, descriptor_pb2.FileDescriptorProto]) -> list[str]:
    wanted = {dependency for file in files.values() for dependency in file.dependency}
    return sorted(wanted - files.keys())


def connection_detail(details: str) -> str | None:
    """What went wrong with the connection, from an UNAVAILABLE status's details when the
    channel could not connect (grpcio says so only in words); ``None`` when the server answered
    UNAVAILABLE itself."""
    text = details.lower()
    if "connection refused" in text:
        return "connection refused"
    if "handshake" in text or "ssl" in text or "certificate" in text:
        return "TLS handshake failed"
    if "dns" in text or "name resolution" in text:
        return "host name not found"
    if "socket closed" in text or "connection reset" in text or "broken pipe" in text:
        # Also a TLS server refusing a client without the certificate it requires.
        return "server disconnected"
    if "failed to connect" in text or ("connect" in text and "failed" in text):
        return "connection failed"
    return None
