"""TLS settings and files: each mistake is one sentence naming the field and the fix (exit 2),
each doubtful setting a warning, checked once at start-up by `validate`, `prime` and `run`."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import run_cli
from tests.tls_server import expired, write
from warmgate.config.advice import config_warnings
from warmgate.config.describe import describe
from warmgate.config.loader import load_config
from warmgate.config.model import Config
from warmgate.config.tls import TlsConfig
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import Secrets
from warmgate.traffic.targets import compile_config
from warmgate.traffic.tls import load_tls

UTC = datetime.UTC
URL = "https://127.0.0.1:8443/items"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A CA for the files."""
    return trustme.CA()


def config_with(tls: dict[str, Any], url: str = URL, **extra: Any) -> Config:
    """A one-target config with ``tls``."""
    http = {"url": url, "tls": tls}
    config, _ = load_config(None, {"targets": [{"name": "app", "http": http}], **extra})
    return config


def compile_error(tls: dict[str, Any]) -> str:
    """The ConfigError compiling a config with ``tls`` raises."""
    with pytest.raises(ConfigError) as caught:
        compile_config(config_with(tls))
    return str(caught.value)


def test_missing_file_names_the_field(tmp_path: Path) -> None:
    """A path that does not exist says which field and what to do."""
    missing = tmp_path / "nope.pem"
    assert compile_error({"ca_file": str(missing)}) == (
        f"targets[0].http.tls.ca_file: {missing} does not exist; fix the path, or mount the "
        "file there."
    )


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    """A directory (a mounted secret's folder) asks for the file in it."""
    assert compile_error({"client_cert": str(tmp_path)}) == (
        f"targets[0].http.tls.client_cert: {tmp_path} is a directory; name the PEM file in it."
    )


def test_named_pipe_is_refused_without_waiting(tmp_path: Path) -> None:
    """A named pipe with no writer (or a device) is refused at once, not read forever."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    assert compile_error({"ca_file": str(fifo)}) == (
        f"targets[0].http.tls.ca_file: {fifo} is not a regular file; name a PEM file."
    )
    assert compile_error({"ca_file": "/dev/zero"}) == (
        "targets[0].http.tls.ca_file: /dev/zero is not a regular file; name a PEM file."
    )


def test_unreadable_file_says_permission_denied(tmp_path: Path, ca: trustme.CA) -> None:
    """A file warmgate's user cannot read says so, with the uid to grant."""
    # Root reads any file its mode forbids; a write-only sysctl is refused even to root.
    if os.geteuid() == 0:
        path = Path("/proc/sys/vm/compact_memory")
        if not path.exists():
            pytest.skip("no file here that root cannot read")
    else:
        path = write(tmp_path / "ca.pem", ca.cert_pem.bytes())
        path.chmod(0o000)
    with pytest.raises(ConfigError) as caught:
        load_tls(TlsConfig(ca_file=path), "wait.tls")
    assert str(caught.value) == (
        f"wait.tls.ca_file: {path} cannot be read (permission denied); make it readable by the "
        f"user warmgate runs as (uid {os.getuid()})."
    )


def test_binary_certificate_is_not_pem(tmp_path: Path, ca: trustme.CA) -> None:
    """A DER certificate (a .cer from Windows, a .p12) is named as such, with how to convert."""
    der = x509.load_pem_x509_certificate(ca.cert_pem.bytes()).public_bytes(
        serialization.Encoding.DER
    )
    path = write(tmp_path / "ca.cer", der)
    message = compile_error({"ca_file": str(path)})
    assert message.startswith(
        f"targets[0].http.tls.ca_file: {path} is not a PEM file (it looks binary DER or PKCS#12 "
        "(.der, .cer, .p12, .pfx)); convert it to PEM, such as with openssl x509 -inform der"
    )
    keystore = write(tmp_path / "app.jks", b"\xfe\xed\xfe\xed\x00\x00\x00\x02rest")
    assert "(it looks a Java keystore (JKS))" in compile_error({"ca_file": str(keystore)})


def test_file_of_the_wrong_kind(tmp_path: Path, ca: trustme.CA) -> None:
    """A key given as the CA, or a certificate with no key, is refused with what it holds."""
    leaf = ca.issue_cert("warmgate")
    key = write(tmp_path / "client.key", leaf.private_key_pem.bytes())
    cert = write(tmp_path / "client.pem", leaf.cert_chain_pems[0].bytes())
    assert compile_error({"ca_file": str(key)}) == (
        f"targets[0].http.tls.ca_file: {key} holds no certificate (only EC PRIVATE KEY); name "
        "the file with the PEM certificate (-----BEGIN CERTIFICATE-----)."
    )
    assert compile_error({"client_cert": str(cert)}) == (
        f"targets[0].http.tls.client_cert: {cert} holds no private key; set client_key to the "
        "PEM key (-----BEGIN PRIVATE KEY-----) issued with the certificate."
    )


def test_key_that_does_not_belong_to_the_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    """A key from another certificate is refused before any traffic, and never shown."""
    cert = write(tmp_path / "a.pem", ca.issue_cert("a").cert_chain_pems[0].bytes())
    other = ca.issue_cert("b").private_key_pem.bytes()
    key = write(tmp_path / "b.key", other)
    message = compile_error({"client_cert": str(cert), "client_key": str(key)})
    assert message == (
        f"targets[0].http.tls.client_key: the key in {key} does not belong to the certificate "
        f"in {cert}; give the key issued with that certificate."
    )
    body = other.decode().splitlines()[1]
    assert body not in message


def test_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, ca: trustme.CA) -> None:
    """An encrypted key would make OpenSSL prompt on the terminal; it is refused instead."""
    leaf = ca.issue_cert("warmgate")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    cert = write(tmp_path / "c.pem", leaf.cert_chain_pems[0].bytes())
    path = write(tmp_path / "c.key", encrypted)
    message = compile_error({"client_cert": str(cert), "client_key": str(path)})
    assert message.startswith(
        f"targets[0].http.tls.client_key: the key in {path} is encrypted and warmgate does not "
        "prompt for a passphrase; mount it decrypted"
    )


def test_certificate_and_key_in_one_file(tmp_path: Path, ca: trustme.CA) -> None:
    """client_cert may hold the key too (a PEM bundle), with no client_key."""
    both = write(tmp_path / "both.pem", ca.issue_cert("w").private_key_and_cert_chain_pem.bytes())
    tls = load_tls(TlsConfig(client_cert=both), "wait.tls")
    assert tls.warnings == ()


def test_expired_certificates_are_warnings_with_the_date(tmp_path: Path, ca: trustme.CA) -> None:
    """An expired client certificate or CA warns with its date; the server has the last word."""
    old = expired(ca, "warmgate")
    both = write(tmp_path / "old.pem", old.private_key_and_cert_chain_pem.bytes())
    tls = load_tls(TlsConfig(client_cert=both), "targets[2].http.tls")
    assert tls.warnings == (
        f"targets[2].http.tls.client_cert: the certificate (no common name) in {both} expired "
        "on 2021-01-01 00:00 UTC; TLS with it will likely fail until it is renewed",
    )
    old_ca = trustme.CA()
    future = old_ca.issue_cert("x")  # only to give the bundle a valid second certificate
    bundle = write(
        tmp_path / "bundle.pem",
        expired(old_ca, "a").cert_chain_pems[0].bytes() + future.cert_chain_pems[0].bytes(),
    )
    later = datetime.datetime(2019, 6, 1, tzinfo=UTC)
    [warning] = load_tls(TlsConfig(ca_file=bundle), "wait.tls", now=later).warnings
    assert warning.startswith(f"wait.tls.ca_file: the certificate (no common name) in {bundle} ")
    assert "is not valid before 2020-01-01 00:00 UTC" in warning


def test_settings_that_cannot_work_are_config_errors() -> None:
    """TLS settings that cannot work are each refused at load, with the fix."""
    cases = [
        ({"targets": [{"http": {"url": "http://a/", "tls": {"verify": False}}}]},
         "targets[0].http: tls is set but the URL starts with http://, so it would do nothing; "
         "write https:// or remove tls."),
        ({"targets": [{"http": {"url": URL}}], "wait": {"tls": {"verify": False}}},
         "wait: tls is set but url is not; set url, or remove tls."),
        ({"targets": [{"http": {"url": URL, "tls": {"client_key": "k.pem"}}}]},
         "targets[0].http.tls: client_key is set without client_cert; set client_cert to the "
         "certificate issued with that key."),
        ({"targets": [{"http": {"url": URL, "tls": {"server_name": "app.internal:8443"}}}]},
         "targets[0].http.tls.server_name: 'app.internal:8443' is not a host name; write the "
         "name alone, without scheme, port or path, such as app.internal."),
        ({"targets": [{"http": {"url": URL, "tls": {"ca_file": " "}}}]},
         "targets[0].http.tls.ca_file: is empty; write the path of a PEM file, or leave it out."),
        ({"targets": [{"http": {"url": URL, "tls": {"verfy": False}}}]},
         "targets[0].http.tls: unknown key 'verfy'; did you mean 'verify'?"),
    ]  # fmt: skip
    for data, message in cases:
        with pytest.raises(ConfigError) as caught:
            load_config(None, data)
        assert str(caught.value).endswith(f"  - {message}"), str(caught.value)


def test_each_distinct_setting_is_loaded_once(tmp_path: Path, ca: trustme.CA) -> None:
    """Targets with the same TLS settings share one loaded context (and so one HTTP client)."""
    path = write(tmp_path / "ca.pem", ca.cert_pem.bytes())
    tls = {"ca_file": str(path)}
    targets = [
        {"name": "a", "http": {"url": URL, "tls": tls}},
        {"name": "b", "http": {"url": "https://127.0.0.1:8443/b", "tls": tls}},
        {"name": "c", "http": {"url": "https://127.0.0.1:8443/c", "tls": {"verify": False}}},
        {"name": "d", "http": {"url": "http://127.0.0.1:8080/d"}},
    ]
    config, _ = load_config(None, {"targets": targets})
    a, b, c, d = compile_config(config).targets
    assert a.tls is b.tls
    assert a.tls is not None
    assert c.tls is not None
    assert c.tls is not a.tls
    assert d.tls is None


def test_verify_false_is_loud_in_warnings_and_in_the_plan(tmp_path: Path) -> None:
    """verify: false warns (and so does a ca_file it makes useless); the plan says NOT verified."""
    config = config_with({"verify": False, "ca_file": str(tmp_path / "unused.pem")})
    assert config_warnings(config) == [
        "targets[0].http.tls.verify is false: warmgate accepts any certificate from that server, "
        "so anyone on the path can answer in its place; trust its CA with ca_file instead",
        "targets[0].http.tls.ca_file is not used while verify is false",
    ]
    assert (
        f"{URL} (expect 2xx, timeout 5s), TLS certificate NOT verified (verify: false)"
        in describe(config, Secrets())
    )


def test_validate_prime_and_run_exit_2_on_a_bad_file(tmp_path: Path) -> None:
    """The same file mistake stops validate, prime and run alike, before any traffic."""
    bad = write(tmp_path / "ca.pem", b"not a certificate\n")
    config = tmp_path / "warmgate.yaml"
    config.write_text(
        f"targets:\n  - http:\n      url: {URL}\n      tls:\n        ca_file: {bad}\n"
    )
    for command in ("validate", "prime", "run"):
        result = run_cli(command, "--config", str(config), "--port", "0")
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr == (
            f"warmgate: targets[0].http.tls.ca_file: {bad} is not a PEM file (it looks not PEM); "
            "convert it to PEM, such as with openssl x509 -inform der -in FILE -out FILE.pem (a "
            "certificate), openssl pkcs12 -in FILE.p12 -nodes (a .p12 keystore) or keytool "
            "-exportcert -rfc (a Java keystore).\n"
        ), command


def test_validate_warns_about_verify_false_and_an_expired_certificate(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """validate prints the plan, and on stderr a warning for each doubtful TLS setting."""
    old = write(tmp_path / "old.pem", expired(ca, "w").private_key_and_cert_chain_pem.bytes())
    config = tmp_path / "warmgate.yaml"
    config.write_text(
        "targets:\n"
        f"  - http:\n      url: {URL}\n      tls: {{verify: false}}\n"
        f"  - http:\n      url: https://127.0.0.1:9443/\n      tls: {{client_cert: {old}}}\n"
    )
    result = run_cli("validate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "TLS certificate NOT verified (verify: false)" in result.stdout
    assert f"TLS trusting the public CAs, client certificate {old}" in result.stdout
    assert result.stderr.splitlines() == [
        "warmgate: warning: targets[0].http.tls.verify is false: warmgate accepts any "
        "certificate from that server, so anyone on the path can answer in its place; trust "
        "its CA with ca_file instead.",
        f"warmgate: warning: targets[1].http.tls.client_cert: the certificate (no common name) "
        f"in {old} expired on 2021-01-01 00:00 UTC; TLS with it will likely fail until it is "
        "renewed.",
    ]


def test_inject_starter_for_an_https_app_validates_and_says_what_to_choose(
    tmp_path: Path,
) -> None:
    """An HTTPS app's starter skips verification as the kubelet does, marked CHOOSE."""
    from warmgate.kube.starter import starter_config

    probe = {"httpGet": {"scheme": "HTTPS", "port": 8443, "path": "/ready"}}
    app = {"name": "app", "ports": [{"containerPort": 8443}], "readinessProbe": probe}
    text = starter_config({"spec": {"containers": [app]}}, "deployment/shop")
    assert "CHOOSE: the app speaks HTTPS" in text
    path = tmp_path / "warmgate.yaml"
    path.write_text(text)
    config, _ = load_config(path)
    compiled = compile_config(config, lambda _: None)
    assert compiled.wait is not None
    assert compiled.wait.url == "https://127.0.0.1:8443/ready"
    assert compiled.wait.tls is compiled.targets[0].tls
    assert config_warnings(config)[0].startswith("targets[0].http.tls.verify is false")


def test_wait_url_inherits_defaults_written_either_way() -> None:
    """No tls and an empty tls mean the same settings, so wait.url inherits without a conflict."""
    targets = [
        {"http": {"url": "https://127.0.0.1:8443/a"}},
        {"http": {"url": "https://127.0.0.1:8443/b", "tls": {}}},
    ]
    config, _ = load_config(None, {"targets": targets, "wait": {"url": "https://127.0.0.1:8443/"}})
    compiled = compile_config(config)
    assert compiled.wait is not None
    assert compiled.wait.tls is compiled.targets[0].tls is compiled.targets[1].tls


def test_wait_url_with_a_templated_port_is_a_sentence() -> None:
    """A wait.url port that is a template (never rendered) is refused with one sentence."""
    for scheme in ("https", "http"):
        data = {"targets": [{"http": {"url": URL}}], "wait": {"url": f"{scheme}://h:{{{{ 1 }}}}/"}}
        config, _ = load_config(None, data)
        with pytest.raises(
            ConfigError, match=rf"^wait.url: '{scheme}://h:\{{\{{ 1 \}}\}}/' has port"
        ):
            compile_config(config)
    result = run_cli("run", "--url", URL, "--wait-url", "http://h:{{ 1 }}/", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("warmgate: wait.url: 'http://h:{{ 1 }}/' has port '{{ 1 }}'")


def test_tls_on_a_url_set_of_http_urls_is_an_error(tmp_path: Path) -> None:
    """tls on a urls_file whose URLs are http:// would do nothing: an error, as for url."""
    urls = tmp_path / "urls.txt"
    urls.write_text("http://a:8080/x 2\nhttp://a:8080/y\n")
    data = {"targets": [{"http": {"urls_file": str(urls), "tls": {"verify": False}}}]}
    config, _ = load_config(None, data)
    with pytest.raises(ConfigError) as caught:
        compile_config(config, lambda _: None)
    assert str(caught.value) == (
        f"targets[0].http: tls is set but the URLs of {urls} start with http://, so it would do "
        "nothing; write https:// or remove tls."
    )
    urls.write_text("https://a:8443/x\n")
    assert compile_config(config, lambda _: None).targets[0].tls is not None
