"""Secrets: what must never be shown, and how it is masked.

Values of environment variables with secret-looking names (``PASSWORD``, ``TOKEN``, ``KEY``,
...) used through ``${VAR}`` in the config, and passwords embedded in URLs, are collected while
the config loads. Every text warmgate shows — logs, status, reasons, errors, reports,
``validate`` — goes through :meth:`Secrets.redact` first.

Theory of operation: redaction works twice over, so that neither way alone has to be perfect.

1. Known values are replaced wherever they appear, in every spelling a surface may give them:
   as written, percent-encoded and -decoded (``%20`` and ``+`` for a space too), escaped for
   JSON and for HTML; in any letter case (a template's ``| upper``); and with any run of
   whitespace where the value has one, without its leading and trailing whitespace (a line
   re-flowed or collapsed, a value stripped).
2. Any ``scheme://user:password@`` is masked by its shape, whatever the password holds. The
   password runs from the first ``:`` after ``scheme://`` to the *last* ``@`` before the next
   whitespace, because a password may itself hold ``/``, ``@``, ``:`` or ``?`` unencoded
   (``http://bob:pa/ss@host/``). That may mask more than the password (a path with an ``@``
   after a port), never less. One pass over the text: each ``://`` is looked at once, and the
   whitespace and last ``@`` of a run of text are found once per run, so the cost is linear in
   the length of the text. In free text a URL ends at whitespace; a config field holds one URL,
   so there (:func:`mask_url`, :func:`url_passwords`) the password runs to the last ``@`` of
   the whole value, and may hold a space or a tab.

Text is redacted *before* it is shortened, always (:meth:`Secrets.shorten`): a secret cut in
two no longer matches, and the part before the cut would show. Whatever warmgate shortens
(a driver's error line, a reason, a warning) goes through that one method. A value that is not
known as a secret cannot be redacted, cut or not; only URL shapes catch unknown passwords.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Iterator
from urllib.parse import quote, quote_plus, unquote, unquote_plus

SECRET_NAME = re.compile(r"PASS|TOKEN|SECRET|KEY|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
"""Environment variable names whose values are treated as secrets."""
MASK = "***"
MIN_SECRET_LENGTH = 3
"""Shorter values are not replaced as text (every "a" would vanish); URL shapes still are."""
ELLIPSIS = "…"
"""Ends a shortened text."""

_WHITESPACE = re.compile(r"\s")
_END_OF_USER = re.compile(r"[:/@?#[]")  # "[" opens an IPv6 host: no user before it


def _password_spans(text: str, *, one_url: bool = False) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each password in a ``scheme://user:password@`` of ``text``.

    ``one_url``: ``text`` is one URL (a config field), so whitespace does not end it.
    """
    run_end = last_at = -1
    search = 0
    while (separator := text.find("://", search)) >= 0:
        start = search = separator + 3
        if start > run_end:
            space = None if one_url else _WHITESPACE.search(text, start)
            run_end = space.start() if space else len(text)
            last_at = text.rfind("@", start, run_end)
        end_of_user = _END_OF_USER.search(text, start, run_end)
        if end_of_user is None or end_of_user.group() != ":" or last_at < end_of_user.end():
            continue
        yield end_of_user.end(), last_at
        search = last_at


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``."""
    return _mask_spans(text, _password_spans(text))


def mask_url(url: str) -> str:
    """One URL (a config field's value) with its password replaced by ``***``, even when the
    password holds whitespace."""
    return _mask_spans(url, _password_spans(url, one_url=True))


def _mask_spans(text: str, spans: Iterator[tuple[int, int]]) -> str:
    pieces = []
    copied = 0
    for start, end in spans:
        pieces += [text[copied:start], MASK]
        copied = end
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def url_passwords(url: str) -> set[str]:
    """The passwords written in ``url``, one URL (of its ``scheme://user:password@`` parts;
    a password may hold whitespace)."""
    return {url[start:end] for start, end in _password_spans(url, one_url=True)}


def sql_url_secrets(url: str) -> set[str]:
    """The password of a database URL, and its ``password=`` query values, as written and
    decoded (a query value's ``+`` is a space)."""
    found = url_passwords(url)
    found.update(re.findall(r"[?&]password=([^&#]+)", url, re.IGNORECASE))
    return found | {unquote(value) for value in found} | {unquote_plus(value) for value in found}


def spellings(value: str) -> set[str]:
    """``value`` as the surfaces may spell it: as written, percent-decoded and -encoded (with
    ``%20`` or ``+`` for a space), and escaped for JSON and HTML."""
    forms = set()
    encoded = (quote(value, safe=""), quote_plus(value, safe=""))
    for form in (value, unquote(value), unquote_plus(value), *encoded):
        forms |= {form, html.escape(form), html.escape(form, quote=False)}
        forms |= {json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}
    return forms


def _pattern(form: str) -> str | None:
    """A regular expression for ``form`` without its leading and trailing whitespace, matching
    any run of whitespace where it has one; ``None`` when too short to replace as text."""
    core = form.strip()
    if len(core) < MIN_SECRET_LENGTH:
        return None
    return r"\s+".join(map(re.escape, core.split()))


def shorten(
    text: str, limit: int, secrets: Secrets | None = None, *, first_line: bool = False
) -> str:
    """:meth:`Secrets.shorten` with ``secrets``, or with URL shapes only when none are known."""
    return (secrets or Secrets()).shorten(text, limit, first_line=first_line)


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

    def shorten(self, text: str, limit: int, *, first_line: bool = False) -> str:
        """``text`` redacted, *then* cut to at most ``limit`` characters (the last one ``…``).

        In that order, always: cut first, a secret cut in two would no longer match and its
        first part would show. ``first_line`` keeps only the first line (the text stripped),
        which is cutting too, so it also comes after redacting.
        """
        text = self.redact(text)
        if first_line:
            text = text.strip()
            text = text.splitlines()[0] if text else ""
        return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS

    def holds(self, text: str) -> bool:
        """Whether ``text`` holds a known secret (in any of its spellings)."""
        pattern = self._compiled()
        return pattern is not None and pattern.search(text) is not None

    def including(self, values: set[str]) -> Secrets:
        """These secrets and ``values`` too (a new object: this one is shared)."""
        return Secrets(self.values | {value for value in values if value})

    def warn(self, message: str) -> None:
        """A warning line on stderr, redacted (a ``Warn`` for start-up checks)."""
        print(f"warmgate: warning: {self.redact(message)}", file=sys.stderr, flush=True)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._seen != self.values:
            self._seen = frozenset(self.values)
            forms = {form.strip() for value in self._seen for form in spellings(value)}
            # Longest first, so a secret that contains another is masked whole.
            ordered = [
                pattern
                for form in sorted(forms, key=len, reverse=True)
                if (pattern := _pattern(form)) is not None
            ]
            joined = "|".join(ordered)
            self._pattern = re.compile(joined, re.IGNORECASE) if ordered else None
        return self._pattern
