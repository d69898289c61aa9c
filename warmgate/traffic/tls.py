"""TLS for HTTPS targets: the files behind the settings, and the SSL context.

Theory of operation:

- :class:`~warmgate.config.tls.TlsConfig` is what the config says (``targets[].http.tls``,
  ``wait.tls``): whether to verify, which CA to trust, the client certificate and key for mutual
  TLS, and the name to send in SNI and verify when the URL names another host.
- :func:`load_tls` reads the files once, at start-up, checks them (there, readable, PEM, a key
  that belongs to its certificate) and builds the ``ssl.SSLContext`` every connection of the
  target uses. A mistake is a :class:`ConfigError` naming the field and the fix (exit 2); a
  certificate outside its validity is a warning naming the date, since the server decides.
- Without ``ca_file`` the trusted roots are certifi's public bundle, as httpx's default; with
  it, only the CAs in that file (an internal CA, or a self-signed server certificate itself).
- ``handshake.py`` turns a failed handshake into the phrase a reason carries
  (``certificate verify failed: self-signed certificate; ...``), from OpenSSL's verify code or
  alert; the HTTP driver uses it, so a TLS failure never reads as a generic error.

The server name reaches the handshake per request: the driver sets httpx's ``sni_hostname``
extension, which the aiohttp transport passes on as aiohttp's ``server_hostname`` (SNI and the
name checked against the certificate). The Host header stays the URL's; set it in ``headers``
if the app routes by it.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from warmgate.config.tls import TlsConfig
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.certs import (
    CERTIFICATE,
    ENCRYPTED_KEY_MARKERS,
    PemBlock,
    certificate_dates,
    guess_format,
    pem_blocks,
)
from warmgate.traffic.handshake import words

MAX_PEM_BYTES = 4 * 1024 * 1024
"""A certificate, key or CA bundle larger than this is not one (a public bundle is ~300 KiB)."""


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS ready to use: the context built from the files, and the name to present."""

    settings: TlsConfig
    context: ssl.SSLContext
    warnings: tuple[str, ...] = ()

    @property
    def extensions(self) -> dict[str, str]:
        """The httpx request extensions that carry :attr:`TlsConfig.server_name`."""
        name = self.settings.server_name
        return {"sni_hostname": name} if name else {}


def load_tls(settings: TlsConfig | None, where: str, now: datetime | None = None) -> Tls:
    """Read and check the files of ``settings`` (``where`` names the field) and build the context.

    Raises :class:`ConfigError` naming the field and the fix. ``now`` is for the expiry check.
    """
    settings = settings or TlsConfig()
    now = now or datetime.now(UTC)
    warnings: list[str] = []
    if not settings.verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings.ca_file is not None:
        field = f"{where}.ca_file"
        blocks = _certificates(read_pem(settings.ca_file, field), settings.ca_file, field)
        warnings += _validity_warnings(blocks, settings.ca_file, field, now)
        try:
            context = ssl.create_default_context(cadata="".join(b.text + "\n" for b in blocks))
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{field}: OpenSSL cannot load the certificates in {settings.ca_file} "
                f"({words(exc.reason)}); re-export them as PEM."
            ) from None
    else:
        import certifi  # httpx's dependency, and its default trust

        context = ssl.create_default_context(cafile=certifi.where())
    if settings.client_cert is not None:
        warnings += _load_client_pair(context, settings, where, now)
    return Tls(settings, context, tuple(warnings))


def read_pem(path: Path, field: str) -> list[PemBlock]:
    """The PEM blocks of ``path``; a ConfigError naming ``field`` if it cannot be one."""
    try:
        # O_NONBLOCK: a named pipe with no writer must not hang start-up.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(
            f"{field}: {path} does not exist; fix the path, or mount the file there."
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{field}: {path} cannot be read (permission denied); make it readable by the user "
            f"warmgate runs as (uid {os.getuid()})."
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ConfigError(
            f"{field}: {path} cannot be read ({_reason(exc)}); fix the path."
        ) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{field}: {path} is a directory; name the PEM file in it.")
        raise ConfigError(f"{field}: {path} is not a regular file; name a PEM file.")
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(MAX_PEM_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{field}: {path} cannot be read ({_reason(exc)}).") from None
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(
            f"{field}: {path} is larger than {MAX_PEM_BYTES // (1024 * 1024)} MiB, too large "
            "for a certificate or key; name the PEM file itself."
        )
    try:
        blocks = pem_blocks(data)
    except ValueError as exc:
        raise ConfigError(
            f"{field}: {path} is not valid PEM ({exc}); fix or re-export it."
        ) from None
    if not blocks:
        raise ConfigError(
            f"{field}: {path} is not a PEM file (it looks {guess_format(data)}); convert it to "
            "PEM, such as with openssl x509 -inform der -in FILE -out FILE.pem (a certificate), "
            "openssl pkcs12 -in FILE.p12 -nodes (a .p12 keystore) or keytool -exportcert -rfc "
            "(a Java keystore)."
        )
    return blocks


def _reason(exc: Exception) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text.lower() or type(exc).__name__


def _certificates(blocks: list[PemBlock], path: Path, field: str) -> list[PemBlock]:
    certificates = [block for block in blocks if block.label == CERTIFICATE]
    if not certificates:
        labels = ", ".join(dict.fromkeys(block.label for block in blocks))
        raise ConfigError(
            f"{field}: {path} holds no certificate (only {labels}); name the file with the "
            "PEM certificate (-----BEGIN CERTIFICATE-----)."
        )
    return certificates


def _validity_warnings(
    certificates: list[PemBlock], path: Path, field: str, now: datetime
) -> list[str]:
    """A warning for the first certificate outside its validity, with how many more are."""
    outside = []
    for block in certificates:
        try:
            dates = certificate_dates(block.der)
        except ValueError as exc:
            raise ConfigError(
                f"{field}: {path} holds a certificate that cannot be read ({exc}); re-export it."
            ) from None
        if not dates.not_before <= now <= dates.not_after:
            outside.append(dates)
    if not outside:
        return []
    first = outside[0]
    if now > first.not_after:
        what = f"expired on {_date(first.not_after)}"
    else:
        what = f"is not valid before {_date(first.not_before)}"
    more = f" ({len(outside) - 1} more in the file too)" if len(outside) > 1 else ""
    return [
        f"{field}: the certificate {first.shown()} in {path} {what}{more}; TLS with it will "
        "likely fail until it is renewed"
    ]


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class _KeyIsEncryptedError(Exception):
    """Raised by the password callback: warmgate never prompts for a key's passphrase."""


def _load_client_pair(
    context: ssl.SSLContext, settings: TlsConfig, where: str, now: datetime
) -> list[str]:
    cert_path = settings.client_cert
    assert cert_path is not None  # noqa: S101 - the caller checked
    cert_field, key_field = f"{where}.client_cert", f"{where}.client_key"
    cert_blocks = read_pem(cert_path, cert_field)
    certificates = _certificates(cert_blocks, cert_path, cert_field)
    key_path = settings.client_key or cert_path
    key_blocks = cert_blocks if settings.client_key is None else read_pem(key_path, key_field)
    shown_field = key_field if settings.client_key is not None else cert_field
    if any(marker in block.text for block in key_blocks for marker in ENCRYPTED_KEY_MARKERS):
        raise ConfigError(
            f"{shown_field}: the key in {key_path} is encrypted and warmgate does not prompt "
            "for a passphrase; mount it decrypted (openssl pkey -in KEY -out KEY.pem), "
            "readable only by warmgate."
        )
    if not any(block.label.endswith("PRIVATE KEY") for block in key_blocks):
        raise ConfigError(
            f"{shown_field}: {key_path} holds no private key; set client_key to the PEM key "
            "(-----BEGIN PRIVATE KEY-----) issued with the certificate."
        )
    warnings = _validity_warnings(certificates[:1], cert_path, cert_field, now)

    def no_password() -> str:
        raise _KeyIsEncryptedError

    try:
        context.load_cert_chain(cert_path, settings.client_key, password=no_password)
    except _KeyIsEncryptedError:
        raise ConfigError(
            f"{shown_field}: the key in {key_path} is encrypted; mount it decrypted."
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{key_field}: the key in {key_path} does not belong to the certificate in "
                f"{cert_path}; give the key issued with that certificate."
            ) from None
        raise ConfigError(
            f"{cert_field}: OpenSSL cannot load {cert_path} with its key "
            f"({words(exc.reason)}); re-export the certificate and key as PEM."
        ) from None
    except OSError as exc:  # the file changed under us since it was read
        raise ConfigError(f"{cert_field}: {cert_path} cannot be read ({_reason(exc)}).") from None
    return warnings
