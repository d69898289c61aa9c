"""Secrets: what must never be shown, and how it is masked.

Values of environment variables with secret-looking names (``PASSWORD``, ``TOKEN``, ``KEY``,
...) used through ``${VAR}`` in the config, and passwords embedded in URLs, are collected while
the config loads. Every text warmgate shows — logs, status, reasons, errors, reports,
``validate`` — goes through :meth:`Secrets.redact` first.

Theory of operation: redaction works twice over, so that neither way alone has to be perfect.

1. Known values are replaced wherever they appear, in every spelling a surface may give them:
   as written, percent-encoded and -decoded, escaped for JSON and for HTML.
2. Any ``scheme://user:password@`` is masked by its shape, whatever the password holds. The
   password runs from the first ``:`` after ``scheme://`` to the *last* ``@`` before the next
   whitespace, because a password may itself hold ``/``, ``@``, ``:`` or ``?`` unencoded
   (``http://bob:pa/ss@host/``). That may mask more than the password (a path with an ``@``
   after a port), never less. One pass over the text: each ``://`` is looked at once, and the
   whitespace and last ``@`` of a run of text are found once per run, so the cost is linear in
   the length of the text.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Iterator
from urllib.parse import quote, unquote

SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
"""Environment variable names whose values are treated as secrets."""
MASK = "***"
MIN_SECRET_LENGTH = 3
"""Shorter values are not replaced as text (every "a" would vanish); URL shapes still are."""

_WHITESPACE = re.compile(r"\s")
_END_OF_USER = re.compile(r"[:/@?#[]")  # "[" opens an IPv6 host: no user before it


def _password_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each password in a ``scheme://user:password@`` of ``text``."""
    run_end = last_at = -1
    search = 0
    while (separator := text.find("://", search)) >= 0:
        start = search = separator + 3
        if start > run_end:
            space = _WHITESPACE.search(text, start)
            run_end = space.start() if space else len(text)
            last_at = text.rfind("@", start, run_end)
        end_of_user = _END_OF_USER.search(text, start, run_end)
        if end_of_user is None or end_of_user.group() != ":" or last_at < end_of_user.end():
            continue
        yield end_of_user.end(), last_at
        search = last_at


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``."""
    pieces = []
    copied = 0
    for start, end in _password_spans(text):
        pieces += [text[copied:start], MASK]
        copied = end
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def url_passwords(url: str) -> set[str]:
    """The passwords written in ``url`` (of its ``scheme://user:password@`` parts)."""
    return {url[start:end] for start, end in _password_spans(url)}


def sql_url_secrets(url: str) -> set[str]:
    """The password of a database URL, and its ``password=`` query values."""
    found = url_passwords(url)
    found.update(re.findall(r"[?&]password=([^&#\s]+)", url, re.IGNORECASE))
    return found | {unquote(value) for value in found}


def spellings(value: str) -> set[str]:
    """``value`` as the surfaces may spell it: as written, percent-decoded and -encoded, and
    escaped for JSON and HTML."""
    forms = set()
    for form in (value, unquote(value), quote(value, safe="")):
        forms |= {form, html.escape(form), html.escape(form, quote=False)}
        forms |= {json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}
    return forms


class Secrets:
    """Strings that must never be shown: values of secret-looking env vars used in the config,
    and passwords written in URLs."""

    def __init__(self, values: set[str] | None = None) -> None:
        self.values: set[str] = set(values or ())
        self._seen: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def redact(self, text: str) -> str:
        """``text`` with every secret and URL password replaced by ``***``."""
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return redact_url(text)

    def warn(self, message: str) -> None:
        """A warning line on stderr, redacted (a ``Warn`` for start-up checks)."""
        print(f"warmgate: warning: {self.redact(message)}", file=sys.stderr, flush=True)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._seen != self.values:
            self._seen = frozenset(self.values)
            forms = {form for value in self._seen for form in spellings(value)}
            forms = {form for form in forms if len(form) >= MIN_SECRET_LENGTH}
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        return self._pattern
