"""The words for a failed TLS handshake: which check failed, and what to do about it.

Pure functions over what OpenSSL reports: a failed certificate check carries a verify code
(``X509_V_ERR_*``) and message, any other failure a reason code (mostly the alert the server
sent). The HTTP driver puts the phrase into the request's outcome, so a gate's reason reads
``certificate verify failed: self-signed certificate; ...`` rather than "connection failed".
"""

from __future__ import annotations

import re
import ssl

_VERIFY_HINTS = {
    2: "set tls.ca_file to the CA that issued it",
    9: "the server's certificate is not valid yet (check the clocks)",
    10: "the server's certificate must be renewed",
    18: "trust it with tls.ca_file (the certificate itself), or set tls.verify: false",
    19: "trust that CA with tls.ca_file, or set tls.verify: false",
    20: "set tls.ca_file to the CA that issued it",
    21: "set tls.ca_file to the CA that issued it",
}
"""OpenSSL's X509_V_ERR codes, with what to do about each."""
_NAME_MISMATCH = {62, 64}
"""X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH."""
_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server asked for a client certificate; set "
    "tls.client_cert and tls.client_key",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the handshake: it may require a "
    "client certificate (tls.client_cert), or share no TLS version or cipher with warmgate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate (unknown CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused the client certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server refused the client certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "the server refused the client certificate (access denied)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says the client certificate has expired",
    "WRONG_VERSION_NUMBER": "the server did not answer in TLS; is the port plain http?",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (the server may offer only TLS "
    "1.0 or 1.1, which warmgate refuses)",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common (the server may offer only TLS 1.0 or "
    "1.1, which warmgate refuses)",
}
"""OpenSSL reasons of failed handshakes that are not a certificate check, by what they mean."""


def verify_reason(code: int, message: str) -> str:
    """``certificate verify failed: ...`` for OpenSSL's verify ``code`` and ``message``."""
    message = message.strip().rstrip(".")
    if code in _NAME_MISMATCH:
        name = re.search(r"'([^']*)'", message)
        which = f" for '{name.group(1)}'" if name else ""
        return (
            f"certificate verify failed: hostname mismatch, the certificate is not valid{which}; "
            "set tls.server_name to a name it holds"
        )
    text = f"certificate verify failed: {message[:1].lower()}{message[1:]}"
    hint = _VERIFY_HINTS.get(code)
    return f"{text}; {hint}" if hint else text


def alert_reason(reason: str | None) -> str:
    """``handshake: ...`` for OpenSSL's reason code of a failed handshake (an alert, mostly)."""
    if not reason:
        return "handshake failed"
    return f"handshake: {_ALERTS.get(reason) or words(reason)}"


def handshake_reason(error: ssl.SSLError) -> str:
    """Why a handshake failed, in the words a reason carries."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return verify_reason(error.verify_code, error.verify_message or "")
    return alert_reason(error.reason)


def words(reason: str | None) -> str:
    """``TLSV1_ALERT_INTERNAL_ERROR`` as ``tlsv1 alert internal error``."""
    return (reason or "unknown").replace("_", " ").lower()
