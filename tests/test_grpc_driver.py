"""The gRPC driver against real grpcio aio servers: resolution, calls, outcomes, probes, TLS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.grpc_servers import Cold, GrpcApp, grpc_app, write_descriptor_set
from tests.helpers import free_port
from warmgate.config.model import Config
from warmgate.decide.checks import describe_failures
from warmgate.decide.outcomes import CONNECTION_ERROR, OK, TIMEOUT, UNEXPECTED_STATUS
from warmgate.decide.reach import Reach
from warmgate.decide.window import Sample, Tally
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.driver import Driver
from warmgate.traffic.grpc.driver import GrpcDriver
from warmgate.traffic.targets import compile_config, open_drivers

GET = "warm.v1.Catalog/GetItem"


def config(port: int, **fields: Any) -> Config:
    """One gRPC target on ``port``: plaintext GetItem unless ``fields`` say otherwise."""
    grpc = {"address": f"127.0.0.1:{port}", "method": GET, "plaintext": True, **fields}
    return Config.model_validate({"targets": [{"name": "catalog", "grpc": grpc}]})


def with_driver(cfg: Config, body: Callable[[GrpcDriver], Awaitable[Any]]) -> Any:
    """Compile ``cfg``, open its driver and run ``body`` with it."""

    async def run() -> Any:
        compiled = compile_config(cfg)
        async with AsyncExitStack() as stack:
            drivers: list[Driver] = await open_drivers(cfg, compiled.targets, stack)
            driver = drivers[0]
            assert isinstance(driver, GrpcDriver)
            return await body(driver)

    return asyncio.run(run())


def test_reflection_resolves_the_method_and_calls_carry_the_rendered_request() -> None:
    """v1 reflection gives the types; each call renders the request and the metadata."""
    with grpc_app() as app:
        cfg = config(
            app.port,
            request='{"id": {{ randint(1, 9) }}, "tag": "t"}',
            metadata={"X-Tenant": "tenant-{{ randint(1, 1) }}"},
        )

        async def body(driver: GrpcDriver) -> list[Any]:
            assert await driver.probe() is None
            return [await driver.execute() for _ in range(20)]

        outcomes = with_driver(cfg, body)
    assert {o.outcome for o in outcomes} == {OK}
    assert app.seen.calls["GetItem"] == 20
    assert {request.id for request in app.seen.requests} <= set(range(1, 10))
    assert len({request.id for request in app.seen.requests}) > 1
    assert app.seen.metadata["x-tenant"] == "tenant-1"
    assert app.seen.metadata["x-warmgate"] == "1"
    assert app.seen.metadata["user-agent"].startswith("warmgate/")


def test_v1alpha_reflection_when_the_server_has_no_v1() -> None:
    """A server with only grpc.reflection.v1alpha is asked there."""
    with grpc_app(reflection_v1=False) as app:

        async def body(driver: GrpcDriver) -> str:
            assert await driver.probe() is None
            assert (await driver.execute()).outcome == OK
            return (await driver.resolve()).describe()

        described = with_driver(config(app.port), body)
    assert described.startswith(f"{GET} takes warm.v1.GetItemRequest, returns warm.v1.Item")
    assert "server reflection (v1alpha)" in described


def test_a_dependency_type_comes_through_reflection() -> None:
    """GetPing takes google.protobuf.Empty, from empty.proto, which reflection sends too."""
    with grpc_app() as app:

        async def body(driver: GrpcDriver) -> Any:
            assert await driver.probe() is None
            return await driver.execute()

        outcome = with_driver(config(app.port, method="warm.v1.Catalog/GetPing"), body)
    assert outcome.outcome == OK
    assert app.seen.calls["GetPing"] == 1


@pytest.mark.parametrize(("method", "message"), [
    ("warm.v1.Catalog/GetNothing", "has no method warm.v1.Catalog/GetNothing; it offers "
     "warm.v1.Catalog/AddItem, warm.v1.Catalog/GetItem, warm.v1.Catalog/GetPing"),
    ("warm.v2.Shop/GetItem", "has no service warm.v2.Shop, so no method warm.v2.Shop/GetItem; "
     "it offers the services grpc.health.v1.Health, grpc.reflection.v1alpha.ServerReflection, "
     "warm.v1.Catalog"),
    ("warm.v1.Catalog/ListWatch", "is a streaming method"),
])  # fmt: skip
def test_an_unknown_method_is_a_config_error_naming_what_the_server_offers(
    method: str, message: str
) -> None:
    """The first probe that reaches the server refuses the config."""
    with grpc_app() as app, pytest.raises(ConfigError) as caught:
        with_driver(config(app.port, method=method), lambda driver: driver.probe())
    assert "target 'catalog': grpc.method:" in str(caught.value)
    assert message in str(caught.value)


def test_a_server_without_reflection_needs_a_descriptor_set(tmp_path: Path) -> None:
    """Without reflection the error says to give descriptor_set; with one, calls work, and the
    well-known imports may be left out of the set."""
    with grpc_app(reflection_service=False) as app:
        with pytest.raises(ConfigError) as caught:
            with_driver(config(app.port), lambda driver: driver.probe())
        assert "offers no reflection service (v1 or v1alpha)" in str(caught.value)
        assert "set descriptor_set" in str(caught.value)
        for include in (True, False):
            path = write_descriptor_set(tmp_path / f"set-{include}.pb", include_imports=include)
            cfg = config(app.port, descriptor_set=str(path), request='{"id": 7}')
            resolved = compile_config(cfg).targets[0].grpc
            assert resolved is not None
            assert resolved.resolved is not None
            assert "descriptor set" in resolved.resolved.describe()

            async def body(driver: GrpcDriver) -> list[Any]:
                assert await driver.probe() is None
                return [await driver.execute() for _ in range(3)]

            assert {o.outcome for o in with_driver(cfg, body)} == {OK}
        assert app.seen.requests[0].id == 7


def test_descriptor_set_mistakes_are_config_errors(tmp_path: Path) -> None:
    """A missing file, a file that is no descriptor set, a method it lacks, a request that is
    not the method's type: each a sentence naming the field."""
    port = free_port()
    cases = [
        (str(tmp_path / "missing.pb"), GET, "{}", "grpc.descriptor_set: cannot read"),
        ("NOT_A_SET", GET, "{}", "is not a FileDescriptorSet"),
        ("SET", "warm.v1.Catalog/GetNone", "{}", "grpc.method: descriptor set"),
        ("SET", GET, '{"idd": 1}', "grpc.request: once rendered, it is not a warm.v1.GetItemRequest"),
    ]  # fmt: skip
    (tmp_path / "bad.pb").write_bytes(b"\xff\xff\xff garbage")
    good = write_descriptor_set(tmp_path / "good.pb")
    for given, method, request, message in cases:
        path = {"NOT_A_SET": str(tmp_path / "bad.pb"), "SET": str(good)}.get(given, given)
        cfg = config(port, descriptor_set=path, method=method, request=request)
        with pytest.raises(ConfigError) as caught:
            compile_config(cfg)
        assert "targets[0]." in str(caught.value)
        assert message in str(caught.value)


def test_status_codes_outside_expect_are_failures_named_by_code() -> None:
    """NOT_FOUND fails unless expected; the reason names the code with its share."""
    with grpc_app() as app:

        async def body(driver: GrpcDriver) -> Any:
            await driver.probe()
            return await driver.execute()

        failed = with_driver(config(app.port, request='{"id": -1}'), body)
        accepted = with_driver(
            config(app.port, request='{"id": -1}', expect=["OK", "NOT_FOUND"]), body
        )
    assert failed.outcome == UNEXPECTED_STATUS
    assert failed.status == "NOT_FOUND"
    assert accepted.outcome == OK


def test_describe_failures_names_grpc_codes_with_their_share() -> None:
    """``UNAVAILABLE 12%`` beside HTTP's ``3 answers 503``."""
    tally = Tally()
    for index in range(100):
        status: int | str | None = None
        outcome = OK
        if index < 12:
            outcome, status = UNEXPECTED_STATUS, "UNAVAILABLE"
        elif index < 15:
            outcome, status = UNEXPECTED_STATUS, 503
        tally.add(Sample(0.0, 0.01, 1, "t", outcome, status))
    assert describe_failures(tally.stats()) == "UNAVAILABLE 12%, 3 answers 503"


def test_a_deadline_is_a_timeout_and_slow() -> None:
    """A call past its deadline is a timeout outcome, after about the deadline."""
    with grpc_app(
        cold=Cold(start_capacity=8, full_capacity=8, cold_latency=2.0, warm_after=60)
    ) as app:

        async def body(driver: GrpcDriver) -> tuple[Any, float]:
            await driver.probe()
            loop = asyncio.get_running_loop()
            start = loop.time()
            outcome = await driver.execute()
            return outcome, loop.time() - start

        outcome, took = with_driver(config(app.port, timeout="200ms"), body)
    assert outcome.outcome == TIMEOUT
    assert took >= 0.19


def test_a_refused_connection_is_a_connection_error_and_the_probe_says_refused(
    tmp_path: Path,
) -> None:
    """Nothing listens: calls are connection errors, the probe says refused (which re-arms)."""
    port = free_port()

    async def body(driver: GrpcDriver) -> tuple[Any, Any]:
        return await driver.probe(), await driver.execute()

    down, outcome = with_driver(
        config(port, descriptor_set=str(write_descriptor_set(tmp_path / "set.pb"))),
        body,
    )
    assert down is not None
    assert down.reach is Reach.REFUSED
    assert outcome.outcome == CONNECTION_ERROR
    assert outcome.detail == "connection refused"


def test_the_probe_waits_for_the_health_service_to_say_serving() -> None:
    """NOT_SERVING is busy; SERVING is up; a server with no health service is up at its port."""
    with grpc_app(serving=False) as app:

        async def body(driver: GrpcDriver) -> tuple[Any, Any]:
            before = await driver.probe()
            await asyncio.to_thread(app.set_serving, True)
            return before, await driver.probe()

        before, after = with_driver(config(app.port), body)
    assert before is not None
    assert before.reach is Reach.BUSY
    assert "health check answered NOT_SERVING" in before.reason
    assert after is None
    with grpc_app(health=False) as bare:
        assert with_driver(config(bare.port), lambda driver: driver.probe()) is None


def tls_app(tmp_path: Path) -> tuple[GrpcApp, Path]:
    """A TLS server with a certificate for app.internal from an internal CA; the CA's file."""
    ca = trustme.CA()
    leaf = ca.issue_cert("app.internal")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return GrpcApp(tls=(leaf.private_key_pem.bytes(), chain)).start(), ca_file


def test_tls_with_an_internal_ca(tmp_path: Path) -> None:
    """Trusting the internal CA and naming the server works; the public roots refuse it;
    verify: false cannot be honoured by grpcio and is refused."""
    app, ca_file = tls_app(tmp_path)
    try:
        tls = {"ca_file": str(ca_file), "server_name": "app.internal"}

        async def body(driver: GrpcDriver) -> tuple[Any, Any]:
            return await driver.probe(), await driver.execute()

        down, outcome = with_driver(config(app.port, plaintext=False, tls=tls), body)
        assert down is None
        assert outcome.outcome == OK

        good = write_descriptor_set(tmp_path / "set.pb")
        public = config(app.port, plaintext=False, descriptor_set=str(good))
        _, refused = with_driver(public, body)
        assert refused.outcome == CONNECTION_ERROR
        assert refused.detail == "TLS handshake failed"
        # Through reflection, the wait phase says why it is not up yet.
        untrusted = config(app.port, plaintext=False)
        waiting = with_driver(untrusted, lambda driver: driver.probe())
        assert waiting is not None
        assert waiting.reach is Reach.BUSY
        assert waiting.reason == f"127.0.0.1:{app.port}: TLS handshake failed"
    finally:
        app.stop()
    with pytest.raises(ConfigError) as caught:
        compile_config(config(1, plaintext=False, tls={"verify": False}))
    assert "targets[0].grpc.tls.verify: grpcio cannot accept a certificate" in str(caught.value)


def test_mutual_tls_with_the_key_beside_or_inside_the_certificate(tmp_path: Path) -> None:
    """A server that requires a client certificate accepts warmgate's, whether its key is in
    client_key or in the client_cert file; without one the handshake fails."""
    ca = trustme.CA()
    leaf = ca.issue_cert("app.internal")
    client = ca.issue_cert("warmgate.internal")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file, both = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "both.pem"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    client.private_key_and_cert_chain_pem.write_to_path(str(both))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    app = GrpcApp(tls=(leaf.private_key_pem.bytes(), chain), client_ca=ca.cert_pem.bytes())
    app.start()
    try:
        base = {"ca_file": str(ca_file), "server_name": "app.internal"}

        async def body(driver: GrpcDriver) -> tuple[Any, Any]:
            return await driver.probe(), await driver.execute()

        for extra in (
            {"client_cert": str(cert_file), "client_key": str(key_file)},
            {"client_cert": str(both)},
        ):
            down, outcome = with_driver(
                config(app.port, plaintext=False, tls={**base, **extra}), body
            )
            assert down is None
            assert outcome.outcome == OK
        without = with_driver(config(app.port, plaintext=False, tls=base), body)[0]
        assert without is not None
        assert without.reach is Reach.BUSY
        assert without.reason == f"127.0.0.1:{app.port}: server disconnected"
    finally:
        app.stop()


@pytest.mark.parametrize("answer", ["garbage", "other file"])
def test_a_reflection_answer_protobuf_cannot_use_ends_in_a_sentence_not_a_loop(
    answer: str,
) -> None:
    """A reflection service that answers with bytes that are no file descriptor is a config
    error naming descriptor_set; one that answers a file request with another file is asked
    once, and the method's types are then missing from what it offered."""
    import grpc
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    asked: list[str] = []
    needs = descriptor_pb2.FileDescriptorProto(
        name="warm/needs.proto", package="warm.v1", dependency=["warm/missing.proto"]
    )

    async def reflect(request: Any, context: Any) -> Any:
        asked.append(request.WhichOneof("message_request"))
        files = [b"\xff\xff\xff"] if answer == "garbage" else [needs.SerializeToString()]
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=files
            )
        )

    async def run() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler(
                f"{service}.ServerReflection",
                {"ServerReflectionInfo": grpc.unary_unary_rpc_method_handler(
                    reflect,
                    request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                    response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                )},
            )
            for service in ("grpc.reflection.v1", "grpc.reflection.v1alpha")
        ])  # fmt: skip
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            cfg = config(port)
            async with AsyncExitStack() as stack:
                (driver,) = await open_drivers(cfg, compile_config(cfg).targets, stack)
                with pytest.raises(ConfigError) as caught:
                    await asyncio.wait_for(driver.probe(), 30)
        finally:
            await server.stop(None)
        message = str(caught.value)
        assert "Traceback" not in message
        if answer == "garbage":
            assert "answered with a file protobuf cannot read" in message
            assert "set descriptor_set" in message
        else:
            assert asked.count("file_by_filename") == 1, asked
            assert "target 'catalog'" in message

    asyncio.run(run())
