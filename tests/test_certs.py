"""The pure parts of TLS: PEM blocks, certificate dates, and the words for failed handshakes."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable

import pytest
import trustme
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from tests.tls_server import expired, self_signed
from warmgate.traffic.certs import certificate_dates, guess_format, pem_blocks
from warmgate.traffic.handshake import alert_reason, verify_reason

UTC = datetime.UTC
CERT = trustme.CA().issue_cert("app.internal").cert_chain_pems[0].bytes()


def dates_by_cryptography(pem: bytes) -> tuple[str | None, datetime.datetime, datetime.datetime]:
    """What the reference implementation reads from the same certificate."""
    certificate = x509.load_pem_x509_certificate(pem)
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else None
    return name, certificate.not_valid_before_utc, certificate.not_valid_after_utc


@pytest.mark.parametrize(
    "make",
    [
        lambda ca: ca.issue_cert("app.internal").cert_chain_pems[0].bytes(),
        lambda ca: (
            ca.issue_cert("app.internal", common_name="Tomcat demo").cert_chain_pems[0].bytes()
        ),
        lambda ca: ca.cert_pem.bytes(),
        lambda ca: expired(ca).cert_chain_pems[0].bytes(),
        lambda ca: self_signed().cert_chain_pems[0].bytes(),
        # Up to 2049 a date is a two-digit UTCTime; from 2050 a GeneralizedTime (RFC 5280).
        lambda ca: (
            ca.issue_cert("a", not_after=datetime.datetime(2049, 12, 31, 23, 59, tzinfo=UTC))
            .cert_chain_pems[0]
            .bytes()
        ),
        lambda ca: (
            ca.issue_cert("a", not_after=datetime.datetime(2050, 1, 2, tzinfo=UTC))
            .cert_chain_pems[0]
            .bytes()
        ),
        lambda ca: (
            ca.issue_cert("a", not_before=datetime.datetime(1999, 6, 1, tzinfo=UTC))
            .cert_chain_pems[0]
            .bytes()
        ),
    ],
    ids=["leaf", "common-name", "ca", "expired", "self-signed", "2049", "2050", "1999"],
)
def test_certificate_dates_agree_with_cryptography(make: Callable[[trustme.CA], bytes]) -> None:
    """The name and validity read from the DER are the ones cryptography reads."""
    pem = make(trustme.CA())
    [block] = pem_blocks(pem)
    dates = certificate_dates(block.der)
    assert (dates.common_name, dates.not_before, dates.not_after) == dates_by_cryptography(pem)


@given(st.binary(max_size=300))
def test_certificate_dates_of_garbage_is_a_value_error(data: bytes) -> None:
    """Any bytes either parse or raise ValueError, never anything else."""
    with contextlib.suppress(ValueError):
        certificate_dates(data)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_a_damaged_certificate_parses_or_is_a_value_error(where: int, value: int) -> None:
    """One byte changed anywhere in a real certificate never raises anything but ValueError."""
    [block] = pem_blocks(CERT)
    der = bytearray(block.der)
    der[where % len(der)] = value
    with contextlib.suppress(ValueError):
        certificate_dates(bytes(der))


@given(st.integers(min_value=0, max_value=500))
def test_truncated_certificates_are_value_errors(cut: int) -> None:
    """A certificate cut short anywhere is a ValueError, not an IndexError."""
    [block] = pem_blocks(CERT)
    with pytest.raises(ValueError, match=r"."):
        certificate_dates(block.der[: min(cut, len(block.der) - 1)])


def test_pem_blocks_finds_each_block_and_ignores_text_around_them() -> None:
    """Blocks come back in order with their labels; comments between them do not matter."""
    key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    blocks = pem_blocks(b"subject=CN = app\n" + CERT + b"\n# the key\n" + key)
    assert [block.label for block in blocks] == ["CERTIFICATE", "PRIVATE KEY"]
    assert blocks[1].der == b"\x00\x00\x00"
    assert pem_blocks(b"no armour here") == []


def test_pem_block_with_bad_base64_is_a_value_error() -> None:
    """A block whose body is not base64 says so."""
    with pytest.raises(ValueError, match="CERTIFICATE block is not valid base64"):
        pem_blocks(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"\xfe\xed\xfe\xed\x00\x00\x00\x02", "a Java keystore (JKS)"),
        (b"\x30\x82\x01\x0a", "binary DER or PKCS#12 (.der, .cer, .p12, .pfx)"),
        (b"  \n", "empty"),
        (b"hello", "not PEM"),
    ],
)
def test_guess_format_names_what_a_file_probably_is(data: bytes, phrase: str) -> None:
    """A file that is not PEM is named for what it looks like, so the fix can be specific."""
    assert guess_format(data) == phrase


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        (
            18,
            "self-signed certificate",
            "certificate verify failed: self-signed certificate; trust it with tls.ca_file (the certificate itself), or set tls.verify: false",
        ),
        (
            20,
            "unable to get local issuer certificate",
            "certificate verify failed: unable to get local issuer certificate; set tls.ca_file to the CA that issued it",
        ),
        (
            10,
            "certificate has expired",
            "certificate verify failed: certificate has expired; the server's certificate must be renewed",
        ),
        (
            62,
            "Hostname mismatch, certificate is not valid for 'app'.",
            "certificate verify failed: hostname mismatch, the certificate is not valid for 'app'; set tls.server_name to a name it holds",
        ),
        (
            64,
            "IP address mismatch, certificate is not valid for '127.0.0.1'.",
            "certificate verify failed: hostname mismatch, the certificate is not valid for '127.0.0.1'; set tls.server_name to a name it holds",
        ),
        (
            26,
            "Unsupported certificate purpose",
            "certificate verify failed: unsupported certificate purpose",
        ),
    ],
)
def test_verify_reason_says_which_check_failed_and_the_fix(
    code: int, message: str, reason: str
) -> None:
    """OpenSSL's verify code picks the words and the hint; unknown codes keep OpenSSL's words."""
    assert verify_reason(code, message) == reason


@pytest.mark.parametrize(
    ("reason", "phrase"),
    [
        (
            "TLSV13_ALERT_CERTIFICATE_REQUIRED",
            "handshake: the server asked for a client certificate; set tls.client_cert and tls.client_key",
        ),
        (
            "TLSV1_ALERT_UNKNOWN_CA",
            "handshake: the server does not trust the client certificate (unknown CA)",
        ),
        (
            "WRONG_VERSION_NUMBER",
            "handshake: the server did not answer in TLS; is the port plain http?",
        ),
        ("TLSV1_ALERT_INTERNAL_ERROR", "handshake: tlsv1 alert internal error"),
        (None, "handshake failed"),
    ],
)
def test_alert_reason_names_the_alert(reason: str | None, phrase: str) -> None:
    """Known alerts read as what they mean; others as OpenSSL's reason in words."""
    assert alert_reason(reason) == phrase
