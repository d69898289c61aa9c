"""Reading certificate files without trusting them: PEM blocks and a certificate's dates.

Pure functions over bytes, so the checks ``tls.py`` makes at start-up (is this PEM, does it
hold a certificate, has it expired) are tested with plain data. Only what those checks need is
parsed: the PEM armour, and in each certificate's DER the subject's common name and the
validity dates. Everything else (signatures, extensions, chains) is OpenSSL's, when the SSL
context loads the same files.

Theory of operation: X.509 is DER, a tree of tag-length-value triples. A certificate is
``SEQUENCE { tbsCertificate, signatureAlgorithm, signature }`` and ``tbsCertificate`` is
``SEQUENCE { [0] version (optional), serialNumber, signature, issuer, validity, subject, ... }``
with ``validity = SEQUENCE { notBefore, notAfter }``, each a UTCTime or a GeneralizedTime.
Walking those few nodes needs no ASN.1 library; anything malformed is a ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
CERTIFICATE = "CERTIFICATE"
ENCRYPTED_KEY_MARKERS = ("ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED")
"""PKCS#8 encrypted keys, and the older OpenSSL form with an encryption header."""
_SEQUENCE, _INTEGER, _SET, _OID = 0x30, 0x02, 0x31, 0x06
_UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x17, 0x18, 0xA0
_COMMON_NAME = bytes([0x55, 0x04, 0x03])
"""OID 2.5.4.3, the subject's common name."""
_STRING_TAGS = {0x0C, 0x13, 0x14, 0x16, 0x1E}
"""UTF8String, PrintableString, T61String, IA5String, BMPString."""


@dataclass(frozen=True, slots=True)
class PemBlock:
    """One ``-----BEGIN LABEL-----`` block: its label and the text of the whole block."""

    label: str
    text: str
    der: bytes


@dataclass(frozen=True, slots=True)
class CertificateDates:
    """What the start-up checks read from a certificate."""

    common_name: str | None
    not_before: datetime
    not_after: datetime

    def shown(self) -> str:
        """``'app.internal'`` or ``(no common name)``, for messages."""
        return f"'{self.common_name}'" if self.common_name else "(no common name)"


def pem_blocks(data: bytes) -> list[PemBlock]:
    """The PEM blocks in ``data``, in order; text around them is ignored, as OpenSSL does.

    A block whose body is not base64 raises ``ValueError``.
    """
    blocks = []
    for match in _BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        body = match.group(2)
        if b":" in body:  # an old encrypted key: headers precede the base64
            der = b""
        else:
            try:
                der = base64.b64decode(b"".join(body.split()), validate=True)
            except binascii.Error:
                raise ValueError(f"its {label} block is not valid base64") from None
        blocks.append(PemBlock(label, match.group(0).decode("ascii", "replace"), der))
    return blocks


def guess_format(data: bytes) -> str:
    """What a file that is not PEM probably is, as a phrase for an error message."""
    if data.startswith(b"\xfe\xed\xfe\xed"):
        return "a Java keystore (JKS)"
    if data[:1] == b"\x30":
        return "binary DER or PKCS#12 (.der, .cer, .p12, .pfx)"
    if not data.strip():
        return "empty"
    return "not PEM"


def certificate_dates(der: bytes) -> CertificateDates:
    """The subject's common name and the validity of a DER certificate; ValueError if malformed."""
    _, (start, _), _ = _node(der, 0, _SEQUENCE)
    _, (position, tbs_end), _ = _node(der, start, _SEQUENCE)
    if position < tbs_end and der[position] == _VERSION:
        position = _skip(der, position)
    position = _skip(der, position, _INTEGER)  # serial number
    position = _skip(der, position, _SEQUENCE)  # signature algorithm
    position = _skip(der, position, _SEQUENCE)  # issuer
    _, (validity, validity_end), subject_at = _node(der, position, _SEQUENCE)
    before_tag, before, after_at = _node(der, validity)
    after_tag, after, _ = _node(der, after_at)
    if after[1] > validity_end:
        raise ValueError("the validity runs past its sequence")
    _, subject, _ = _node(der, subject_at, _SEQUENCE)
    return CertificateDates(
        _common_name(der, *subject),
        _time(before_tag, der[before[0] : before[1]]),
        _time(after_tag, der[after[0] : after[1]]),
    )


def _node(der: bytes, position: int, tag: int | None = None) -> tuple[int, tuple[int, int], int]:
    """``(tag, (content start, content end), next position)`` of the node at ``position``."""
    if position + 2 > len(der):
        raise ValueError("the certificate ends early")
    found = der[position]
    if tag is not None and found != tag:
        raise ValueError(f"expected tag {tag:#04x} at byte {position}, found {found:#04x}")
    length = der[position + 1]
    start = position + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or start + size > len(der):
            raise ValueError(f"bad length at byte {position}")
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    end = start + length
    if end > len(der):
        raise ValueError(f"the node at byte {position} runs past the end")
    return found, (start, end), end


def _skip(der: bytes, position: int, tag: int | None = None) -> int:
    return _node(der, position, tag)[2]


def _common_name(der: bytes, position: int, end: int) -> str | None:
    """The first common name in a Name (``SEQUENCE OF SET OF SEQUENCE {OID, value}``)."""
    while position < end:
        _, (rdn, rdn_end), position = _node(der, position, _SET)
        while rdn < rdn_end:
            _, (pair, _), rdn = _node(der, rdn, _SEQUENCE)
            _, oid, value_at = _node(der, pair, _OID)
            value_tag, value, _ = _node(der, value_at)
            if der[oid[0] : oid[1]] == _COMMON_NAME and value_tag in _STRING_TAGS:
                raw = der[value[0] : value[1]]
                return raw.decode("utf-16-be" if value_tag == 0x1E else "utf-8", "replace")
    return None


def _time(tag: int, raw: bytes) -> datetime:
    """A UTCTime (``YYMMDDHHMMSSZ``) or GeneralizedTime (``YYYYMMDDHHMMSSZ``), in UTC."""
    text = raw.decode("ascii", "replace")
    if tag == _UTC_TIME and re.fullmatch(r"\d{12}Z", text):
        year = int(text[:2])
        # RFC 5280: two-digit years from 50 are 19xx, below 50 are 20xx.
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif not (tag == _GENERALIZED_TIME and re.fullmatch(r"\d{14}Z", text)):
        raise ValueError(f"'{text}' is not a certificate time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
