"""HTTPS targets against a real TLS server on port 0, with certificates made by trustme.

Each request goes the production way: config -> TLS files loaded -> client over the aiohttp
transport -> the HTTP driver -> an outcome with its reason.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.helpers import WarmgateProcess, http_get, poll
from tests.tls_server import APP_NAME, expired, self_signed, tls_server, write
from warmgate.config.advice import config_warnings
from warmgate.config.loader import load_config
from warmgate.config.model import Config, TrafficConfig
from warmgate.config.tls import TlsConfig
from warmgate.decide.outcomes import CONNECTION_ERROR, OK
from warmgate.decide.reach import Down
from warmgate.demo.simapp import Behavior, SimApp
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.driver import Outcome
from warmgate.traffic.targets import Compiled, compile_config, open_drivers
from warmgate.traffic.tls import load_tls
from warmgate.traffic.web.diagnosis import DIAGNOSE_EVERY, Diagnosis
from warmgate.traffic.web.driver import UrlProbe, make_client


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The internal CA that issues the servers' certificates."""
    return trustme.CA(organization_name="Internal CA")


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    """The CA that issues client certificates, which mTLS servers trust."""
    return trustme.CA(organization_name="Client CA")


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA, client_ca: trustme.CA) -> dict[str, Path]:
    """PEM files as a deployment would mount them."""
    client = client_ca.issue_cert("warmgate", common_name="warmgate")
    return {
        "ca": write(tmp_path / "ca.pem", ca.cert_pem.bytes()),
        "client_cert": write(tmp_path / "client.pem", client.cert_chain_pems[0].bytes()),
        "client_key": write(tmp_path / "client.key", client.private_key_pem.bytes()),
    }


def config_for(url: str, tls: dict[str, Any] | None = None, **extra: Any) -> Config:
    """A one-target config for ``url`` with ``tls`` settings."""
    http: dict[str, Any] = {"url": url}
    if tls is not None:
        http["tls"] = {key: str(value) for key, value in tls.items()}
    config, _ = load_config(None, {"targets": [{"name": "app", "http": http}], **extra})
    return config


def one_request(config: Config) -> tuple[Outcome, list[str]]:
    """Compile ``config``, open its driver and send one request; the outcome and the warnings."""
    warnings: list[str] = []
    compiled = compile_config(config, warnings.append)

    async def send() -> Outcome:
        async with AsyncExitStack() as stack:
            [driver] = await open_drivers(config, compiled.targets, stack)
            return await driver.execute()

    return asyncio.run(send()), warnings


def test_internal_ca_needs_ca_file(ca: trustme.CA, files: dict[str, Path]) -> None:
    """A certificate from an internal CA fails verification until ca_file names that CA."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, seen):
        url = f"https://127.0.0.1:{port}/"
        outcome, _ = one_request(config_for(url, {"server_name": APP_NAME}))
        assert outcome == Outcome(
            CONNECTION_ERROR,
            detail="certificate verify failed: unable to get local issuer certificate; set "
            "tls.ca_file to the CA that issued it",
        )
        tls = {"server_name": APP_NAME, "ca_file": files["ca"]}
        assert one_request(config_for(url, tls)) == (Outcome(OK, 200), [])
        assert seen.requests == 1


def test_self_signed_fails_verification_and_passes_with_verify_false(tmp_path: Path) -> None:
    """Self-signed fails with that reason; verify: false (warned) or ca_file of itself pass."""
    leaf = self_signed()
    with tls_server(leaf) as (port, seen):
        url = f"https://127.0.0.1:{port}/"
        outcome, _ = one_request(config_for(url, {"server_name": APP_NAME}))
        assert outcome.outcome == CONNECTION_ERROR
        assert outcome.detail.startswith("certificate verify failed: self-signed certificate; ")
        insecure = config_for(url, {"verify": "false"})
        assert one_request(insecure)[0] == Outcome(OK, 200)
        assert config_warnings(insecure) == [
            "targets[0].http.tls.verify is false: warmgate accepts any certificate from that "
            "server, so anyone on the path can answer in its place; trust its CA with ca_file "
            "instead"
        ]
        itself = write(tmp_path / "server.pem", leaf.cert_chain_pems[0].bytes())
        trusted = config_for(url, {"server_name": APP_NAME, "ca_file": itself})
        assert one_request(trusted)[0] == Outcome(OK, 200)
        assert seen.requests == 2


def test_wrong_name_fails_until_server_name_says_the_right_one(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """A name mismatch until server_name names the certificate's; then SNI carries it."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, seen):
        url = f"https://127.0.0.1:{port}/"
        outcome, _ = one_request(config_for(url, {"ca_file": files["ca"]}))
        assert outcome.detail == (
            "certificate verify failed: hostname mismatch, the certificate is not valid for "
            "'127.0.0.1'; set tls.server_name to a name it holds"
        )
        wrong = {"ca_file": files["ca"], "server_name": "other.internal"}
        outcome, _ = one_request(config_for(url, wrong))
        assert outcome.detail.startswith("certificate verify failed: hostname mismatch, ")
        assert "'other.internal'" in outcome.detail
        right = {"ca_file": files["ca"], "server_name": APP_NAME}
        assert one_request(config_for(url, right))[0] == Outcome(OK, 200)
        # IP literals are never sent in SNI; the names were, each as configured.
        assert seen.server_names == [None, "other.internal", APP_NAME]


def test_server_name_leaves_the_host_header_to_the_headers(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """server_name changes SNI and verification, not Host; a Host header set in headers is sent."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, seen):
        url = f"https://127.0.0.1:{port}/"
        tls = {"ca_file": files["ca"], "server_name": APP_NAME}
        assert one_request(config_for(url, tls))[0] == Outcome(OK, 200)
        config, _ = load_config(
            None,
            {"targets": [{"http": {"url": url, "tls": {k: str(v) for k, v in tls.items()},
                                   "headers": {"Host": APP_NAME}}}]},
        )  # fmt: skip
        assert one_request(config)[0] == Outcome(OK, 200)
        assert seen.hosts == [f"127.0.0.1:{port}", APP_NAME]


def test_expired_server_certificate_is_a_verify_failure(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """An expired server certificate fails with the reason, not a generic error."""
    with tls_server(expired(ca)) as (port, _):
        tls = {"ca_file": files["ca"], "server_name": APP_NAME}
        outcome, _ = one_request(config_for(f"https://127.0.0.1:{port}/", tls))
        assert outcome == Outcome(
            CONNECTION_ERROR,
            detail="certificate verify failed: certificate has expired; the server's "
            "certificate must be renewed",
        )


@pytest.mark.parametrize(
    ("version", "detail"),
    [
        (
            None,
            "handshake: the server asked for a client certificate; set tls.client_cert and tls.client_key",
        ),
        (
            ssl.TLSVersion.TLSv1_2,
            "handshake: the server refused the handshake: it may require a client certificate (tls.client_cert), or share no TLS version or cipher with warmgate",
        ),
    ],
    ids=["tls1.3", "tls1.2"],
)
def test_mutual_tls_needs_a_client_certificate(
    ca: trustme.CA,
    client_ca: trustme.CA,
    files: dict[str, Path],
    version: ssl.TLSVersion | None,
    detail: str,
) -> None:
    """mTLS: without a client certificate the reason says so; with one the server answers."""
    with tls_server(ca.issue_cert(APP_NAME), client_ca=client_ca, maximum_version=version) as (
        port,
        seen,
    ):
        url = f"https://127.0.0.1:{port}/"
        tls: dict[str, Any] = {"ca_file": files["ca"], "server_name": APP_NAME}
        assert one_request(config_for(url, tls))[0] == Outcome(CONNECTION_ERROR, detail=detail)
        mutual = {**tls, "client_cert": files["client_cert"], "client_key": files["client_key"]}
        assert one_request(config_for(url, mutual))[0] == Outcome(OK, 200)
        assert seen.client_subjects == ["warmgate"]


def test_client_certificate_the_server_does_not_trust(
    ca: trustme.CA, client_ca: trustme.CA, tmp_path: Path, files: dict[str, Path]
) -> None:
    """A client certificate from a CA the server does not trust: the server's alert, in words."""
    stranger = trustme.CA().issue_cert("stranger")
    combined = write(tmp_path / "stranger.pem", stranger.private_key_and_cert_chain_pem.bytes())
    server = ca.issue_cert(APP_NAME)
    with tls_server(server, client_ca=client_ca, maximum_version=ssl.TLSVersion.TLSv1_2) as (
        port,
        _,
    ):
        tls = {"ca_file": files["ca"], "server_name": APP_NAME, "client_cert": combined}
        outcome, _ = one_request(config_for(f"https://127.0.0.1:{port}/", tls))
        assert outcome.detail == (
            "handshake: the server does not trust the client certificate (unknown CA)"
        )


def test_targets_with_different_tls_each_use_their_own(
    ca: trustme.CA, files: dict[str, Path], tmp_path: Path
) -> None:
    """Two servers with different CAs, each target trusting its own: both answer."""
    other = self_signed()
    pinned = write(tmp_path / "other.pem", other.cert_chain_pems[0].bytes())
    with tls_server(ca.issue_cert(APP_NAME)) as (a, _), tls_server(other) as (b, _):
        targets = [
            {"name": "a", "http": {"url": f"https://127.0.0.1:{a}/",
                                   "tls": {"ca_file": str(files["ca"]), "server_name": APP_NAME}}},
            {"name": "b", "http": {"url": f"https://127.0.0.1:{b}/",
                                   "tls": {"ca_file": str(pinned), "server_name": APP_NAME}}},
        ]  # fmt: skip
        config, _ = load_config(None, {"targets": targets})
        compiled = compile_config(config)

        async def both() -> list[Outcome]:
            async with AsyncExitStack() as stack:
                drivers = await open_drivers(config, compiled.targets, stack)
                return [await driver.execute() for driver in drivers]

        assert asyncio.run(both()) == [Outcome(OK, 200), Outcome(OK, 200)]


def test_plain_http_port_under_an_https_url(sim_app: Callable[..., SimApp]) -> None:
    """An https URL on a plain-http port says the server did not answer in TLS."""
    app = sim_app()
    outcome, _ = one_request(config_for(f"https://127.0.0.1:{app.port}/healthz"))
    assert outcome.detail == "handshake: the server did not answer in TLS; is the port plain http?"


def test_wait_url_inherits_the_tls_of_the_target_on_the_same_server(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """wait.url on a target's host and port probes with that target's TLS, loaded once."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, seen):
        base = f"https://127.0.0.1:{port}"
        tls = {"ca_file": files["ca"], "server_name": APP_NAME}
        config = config_for(f"{base}/items", tls, wait={"url": f"{base}/healthz"})
        compiled = compile_config(config)
        assert compiled.wait is not None
        assert compiled.wait.tls is compiled.targets[0].tls
        assert probe(compiled) is None
        assert seen.server_names == [APP_NAME]
        elsewhere = config_for(f"https://127.0.0.2:{port}/", tls, wait={"url": f"{base}/"})
        down = probe(compile_config(elsewhere))
        assert down is not None
        assert down.reason.startswith("wait.url: certificate verify failed: unable to get local")


def probe(compiled: Compiled) -> Down | None:
    """One probe of the compiled wait.url."""
    wait = compiled.wait
    assert wait is not None

    async def once() -> Down | None:
        context = wait.tls.context if wait.tls is not None else None
        async with make_client(1, TrafficConfig(), context) as client:
            return await UrlProbe(wait.url, client, wait.tls).probe()

    return asyncio.run(once())


def test_wait_tls_is_explicit_when_targets_on_that_server_disagree(
    files: dict[str, Path],
) -> None:
    """Two targets on the wait.url's server with different TLS settings: wait.tls must choose."""
    targets = [
        {"http": {"url": "https://127.0.0.1:8443/a", "tls": {"ca_file": str(files["ca"])}}},
        {"http": {"url": "https://127.0.0.1:8443/b", "tls": {"verify": False}}},
    ]
    config, _ = load_config(None, {"targets": targets, "wait": {"url": "https://127.0.0.1:8443/"}})
    with pytest.raises(
        ConfigError, match=r"targets\[0\] and targets\[1\], whose tls settings differ; set wait.tls"
    ):
        compile_config(config)
    chosen = {"url": "https://127.0.0.1:8443/", "tls": {"ca_file": str(files["ca"])}}
    config, _ = load_config(None, {"targets": targets, "wait": chosen})
    wait = compile_config(config).wait
    assert wait is not None
    assert wait.tls is not None
    assert wait.tls.settings.ca_file == files["ca"]


def test_diagnosis_reads_the_alert_a_reset_hid(
    ca: trustme.CA, client_ca: trustme.CA, files: dict[str, Path]
) -> None:
    """A TLS 1.3 broken pipe becomes the server's alert, read by one reused quiet connection."""
    now = [100.0]
    with tls_server(ca.issue_cert(APP_NAME), client_ca=client_ca) as (port, seen):
        tls = load_tls(TlsConfig(ca_file=files["ca"], server_name=APP_NAME), "wait.tls")
        diagnosis = Diagnosis("127.0.0.1", port, tls, 10.0, clock=lambda: now[0])
        unclear = Outcome(CONNECTION_ERROR, detail="broken pipe")
        required = Outcome(
            CONNECTION_ERROR,
            detail="handshake: the server asked for a client certificate; set tls.client_cert "
            "and tls.client_key",
        )
        assert asyncio.run(diagnosis.explain(unclear)) == required
        assert seen.connections == 1
        assert asyncio.run(diagnosis.explain(unclear)) == required
        assert seen.connections == 1
        clear = Outcome(CONNECTION_ERROR, detail="connection refused")
        assert asyncio.run(diagnosis.explain(clear)) == clear
        now[0] += DIAGNOSE_EVERY
        assert asyncio.run(diagnosis.explain(unclear)) == required
        assert seen.connections == 2


def test_diagnosis_leaves_a_reset_alone_when_the_handshake_is_fine(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """Against a server whose handshake succeeds, a reset stays a reset."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, _):
        tls = load_tls(TlsConfig(ca_file=files["ca"], server_name=APP_NAME), "wait.tls")
        reset = Outcome(CONNECTION_ERROR, detail="connection reset by peer")
        assert asyncio.run(Diagnosis("127.0.0.1", port, tls, 10.0).explain(reset)) == reset


@pytest.mark.slow
def test_run_warms_an_https_app_with_mutual_tls_to_ready(
    sim_app: Callable[..., SimApp],
    tmp_path: Path,
    ca: trustme.CA,
    client_ca: trustme.CA,
    files: dict[str, Path],
) -> None:
    """run warms an mTLS app behind an internal CA and a server name to ready."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(APP_NAME).configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    client_ca.configure_trust(context)
    app = SimApp(Behavior(start_capacity=8, full_capacity=8))
    port = app.start(tls=context)
    try:
        config = tmp_path / "warmgate.yaml"
        config.write_text(
            f"""\
targets:
  - name: app
    http:
      url: "https://127.0.0.1:{port}/items/{{{{ randint(1, 100) }}}}"
      tls:
        ca_file: {files["ca"]}
        client_cert: {files["client_cert"]}
        client_key: {files["client_key"]}
        server_name: {APP_NAME}
wait:
  url: https://127.0.0.1:{port}/healthz
load: {{concurrency: 8}}
gate: {{window: 5s, hold: 1s, min_requests: 20, timeout: 1m, on_timeout: fail}}
"""
        )
        status_dir = tmp_path / "wg"
        args = ["run", "--config", str(config), "--status-dir", str(status_dir), "--port", "0"]
        with WarmgateProcess(*args) as gate:
            base = f"http://127.0.0.1:{gate.port()}"
            poll(lambda: http_get(f"{base}/readyz")[0] == 200, timeout=45, what="/readyz 200")
            assert app.stats.served >= 20
            assert gate.stop() == 0
        assert gate.stderr_text() == ""  # no warning, no error: the handshakes all passed
        assert any(event.get("event") == "up" for event in gate.events)
    finally:
        app.stop()


def journey_config(port: int, tls: list[dict[str, Any]]) -> Config:
    """A two-step journey to ``port``: step n has the settings ``tls[n]``."""
    steps = [
        {"name": f"page{n}", "http": {"url": f"https://127.0.0.1:{port}/{n}",
                                      "tls": {key: str(value) for key, value in settings.items()}}}
        for n, settings in enumerate(tls)
    ]  # fmt: skip
    config, _ = load_config(None, {"targets": [{"name": "walk", "journey": {"steps": steps}}]})
    return config


def test_journey_steps_use_their_tls(ca: trustme.CA, files: dict[str, Path]) -> None:
    """A journey's https steps verify with their CA and present their server name."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, seen):
        tls = {"ca_file": files["ca"], "server_name": APP_NAME}
        config = journey_config(port, [tls, tls])
        compiled = compile_config(config)

        async def walk() -> list[Outcome]:
            async with AsyncExitStack() as stack:
                [driver] = await open_drivers(config, compiled.targets, stack)
                return [await driver.execute() for _ in range(4)]

        assert asyncio.run(walk()) == [Outcome(OK, 200)] * 4
        assert seen.requests == 4
        assert set(seen.server_names) == {APP_NAME}


def test_journey_steps_with_different_tls_are_refused(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """The https steps of one journey share a client, so differing tls settings are a mistake."""
    config = journey_config(1, [{"ca_file": files["ca"]}, {"verify": False}])
    with pytest.raises(
        ConfigError, match=r"steps\[0\]\.http\.tls and .*steps\[1\]\.http\.tls differ"
    ):
        compile_config(config, lambda _: None)


def test_journey_against_mutual_tls_says_a_client_certificate_is_needed(
    ca: trustme.CA, client_ca: trustme.CA, files: dict[str, Path]
) -> None:
    """A journey's step refused for want of a client certificate says so, as a plain target's."""
    with tls_server(ca.issue_cert(APP_NAME), client_ca=client_ca) as (port, _):
        tls = {"ca_file": files["ca"], "server_name": APP_NAME}
        config = journey_config(port, [tls])
        compiled = compile_config(config)

        async def walk() -> list[Outcome]:
            async with AsyncExitStack() as stack:
                [driver] = await open_drivers(config, compiled.targets, stack)
                return [await driver.execute() for _ in range(3)]

        for outcome in asyncio.run(walk()):
            assert outcome.outcome == CONNECTION_ERROR
            assert outcome.detail == (
                "step 'page0': handshake: the server asked for a client certificate; set "
                "tls.client_cert and tls.client_key"
            )


def test_wait_url_inherits_the_tls_of_journey_steps_on_the_same_server(
    ca: trustme.CA, files: dict[str, Path]
) -> None:
    """wait.url on the server of a journey's https steps probes with their TLS."""
    with tls_server(ca.issue_cert(APP_NAME)) as (port, seen):
        tls = {"ca_file": str(files["ca"]), "server_name": APP_NAME}
        steps = [{"name": "page", "http": {"url": f"https://127.0.0.1:{port}/a", "tls": tls}}]
        config, _ = load_config(
            None,
            {
                "targets": [{"name": "walk", "journey": {"steps": steps}}],
                "wait": {"url": f"https://127.0.0.1:{port}/healthz"},
            },
        )
        compiled = compile_config(config)
        assert compiled.wait is not None
        assert compiled.wait.tls is compiled.targets[0].tls
        assert probe(compiled) is None
        assert seen.server_names == [APP_NAME]
