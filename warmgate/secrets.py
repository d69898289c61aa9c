"""Secrets: what must never be shown, and how it is masked.

Values of environment variables with secret-looking names (``PASSWORD``, ``TOKEN``, ``KEY``,
...) used through ``${VAR}`` in the config, and passwords embedded in target URLs, are collected
while the config loads. Every text warmgate shows — logs, status, reasons, errors, ``validate``
— goes through :meth:`Secrets.redact` first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
"""Environment variable names whose values are treated as secrets."""


def redact_url(url: str) -> str:
    """``scheme://user:***@host/path``: never show a password embedded in a URL."""
    return re.sub(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", r"\g<head>:***@", url)


class Secrets:
    """Strings that must never be shown: values of secret-looking env vars used in the config."""

    def __init__(self, values: set[str] | None = None) -> None:
        self.values = {value for value in (values or set()) if len(value) >= 3}

    def redact(self, text: str) -> str:
        """``text`` with every secret and URL password replaced by ``***``."""
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, "***")
        return redact_url(text)


def sql_url_secrets(url: str) -> set[str]:
    """The password of a database URL as written and percent-decoded, and ``password=`` values."""
    found = url_passwords(url)
    found.update(re.findall(r"[?&]password=([^&#\s]+)", url, re.IGNORECASE))
    found.update({unquote(value) for value in found})
    return {value for value in found if len(value) >= 3}


def url_passwords(url: str) -> set[str]:
    match = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:([^@/\s]+)@", url)
    return {match.group(1)} if match and len(match.group(1)) >= 3 else set()
