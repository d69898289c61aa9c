"""The TLS settings of an https URL (``targets[].http.tls``, ``wait.tls``), as the config says.

:class:`TlsConfig` is what the config holds: whether to verify, which CA to trust, the client
certificate and key for mutual TLS, and the name to send in SNI and verify when the URL names
another host (``https://127.0.0.1:8443/``). Its validators check what can be checked without
reading a file; reading the files and building the ``ssl.SSLContext`` is
:mod:`warmgate.traffic.tls`, at start-up. :func:`needs_https` refuses settings that would do
nothing (TLS for an http:// URL).

A config model: pydantic and ``kernel/`` only, no file or network I/O.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from warmgate.config.fields import StrictModel

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


class TlsConfig(StrictModel):
    """How warmgate speaks TLS to an https URL."""

    verify: bool = Field(
        True,
        description=(
            "Check the server's certificate and name. false: accept any certificate, "
            "warned about at start-up and by validate."
        ),
    )
    ca_file: Path | None = Field(
        None,
        description=(
            "PEM file of the CA certificates to trust instead of the public ones: an internal "
            "CA, or a self-signed server certificate itself."
        ),
    )
    client_cert: Path | None = Field(
        None,
        description=(
            "PEM client certificate for mutual TLS, with its chain (and its key, if in one file)."
        ),
    )
    client_key: Path | None = Field(
        None, description="PEM private key of client_cert, unencrypted; unset: in client_cert."
    )
    server_name: str | None = Field(
        None,
        description=(
            "Name sent in SNI and checked against the certificate, when the URL names another "
            "host (such as 127.0.0.1). The Host header is not changed."
        ),
    )

    @field_validator("ca_file", "client_cert", "client_key", mode="before")
    @classmethod
    def _path(cls, path: object) -> object:
        if isinstance(path, str) and not path.strip():
            raise ValueError("is empty; write the path of a PEM file, or leave it out")
        return path

    @field_validator("server_name")
    @classmethod
    def _server_name(cls, name: str | None) -> str | None:
        if name is None:
            return None
        name = name.strip()
        if not _HOST_NAME.fullmatch(name) and not _is_ip(name):
            raise ValueError(
                f"'{name}' is not a host name; write the name alone, without scheme, port or "
                "path, such as app.internal"
            )
        return name

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError(
                "client_key is set without client_cert; set client_cert to the certificate "
                "issued with that key"
            )
        return self


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def needs_https(url: str | None, tls: TlsConfig | None) -> None:
    """ValueError if TLS settings come without an https:// URL, where they would do nothing."""
    if tls is not None and url is None:
        raise ValueError("tls is set but url is not; set url, or remove tls")
    if tls is not None and url is not None and not url.lower().startswith("https://"):
        raise ValueError(
            "tls is set but the URL starts with http://, so it would do nothing; write "
            "https:// or remove tls"
        )
