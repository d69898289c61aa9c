"""The statement check for MySQL and MariaDB: a tokenizer that follows the server's lexer.

Theory of operation. No parser of MySQL's grammar exists for Python, so this module lexes the
query as ``sql_lex.cc`` (``lex_one_token``) does, and refuses whatever it cannot place with
certainty; the rules of a read are then applied to the tokens (:func:`read`). The lexer's
rules, as this module follows them:

- whitespace is ASCII only (space, ``\\t \\n \\v \\f \\r``); ``#`` and ``--`` followed by
  whitespace, a control character or the end start a comment that only ``\\n`` ends (``\\r``
  does not). A NUL also ends one in the server, so a NUL anywhere is refused;
- ``/* */`` does not nest and must be closed; ``/*!...*/`` and ``/*M!...*/`` are *executable*
  comments, whose text the server runs (MariaDB) or may run (by version): refused. ``/*+ */``
  (MySQL's optimizer hints) hold no SQL and are read as comments;
- ``'...'`` and ``"..."`` are strings, with backslash escapes and doubled quotes; backquotes
  quote names (doubled inside); ``X'..'``, ``B'..'`` and ``N'..'`` take their one-letter prefix
  only when it starts a word (``ax'..'`` is the name ``ax`` and a string), and ``X''`` and
  ``B''`` hold only their digits; ``_charset'..'`` is a name and a string, as the lexer reads it;
- names are runs of ASCII letters, digits, ``_``, ``$`` and non-ASCII characters, and may start
  with a digit (``1e``, ``0x1g`` and ``x$$`` are names); ``\\N`` is NULL; a backslash or a
  control character anywhere else is refused.

Two SQL modes change the lexer: ``NO_BACKSLASH_ESCAPES`` (a backslash is a plain character)
and ``ANSI_QUOTES`` (``"..."`` is a name); MariaDB's ``ORACLE`` and ``MSSQL`` modes change the
grammar. The driver *pins* them: before every query it sets the session's ``sql_mode`` to the
server's own without these flags (``mysql.py``), so the server always lexes as this module
does, and PyMySQL escapes values for that reading. A double-quoted string followed by ``(``
still counts as a call, should that ever fail.

Parameters: the driver formats each value into the text as a quoted, escaped literal (or the
digits of an integer). A parameter must therefore sit in code, never in a string, name or
comment, and never touch a character that would run into the value (a name, a quote, ``@``
or ``.``): the value then is one token, whatever it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from warmgate.traffic.sql.binding import Binding, Reading, Site, misplaced

WHITESPACE = " \t\n\v\f\r"
EXAMPLE = "CONCAT('%', {name}, '%')"
"""How to write a parameter into a LIKE pattern, with ``{name}`` for ``:name``."""


LEXING_MODES = frozenset(
    {"ANSI_QUOTES", "NO_BACKSLASH_ESCAPES", "ORACLE", "MSSQL", "ANSI", "DB2", "MAXDB", "POSTGRESQL"}
)
"""SQL mode flags that change how the server lexes a query (``ANSI``, ``DB2``, ``MAXDB`` and
``POSTGRESQL`` imply ``ANSI_QUOTES``), which the driver turns off."""


def pinned_mode(mode: str) -> str:
    """The SQL mode ``mode`` (``@@sql_mode``) without the flags that change lexing."""
    return ",".join(flag for flag in mode.split(",") if flag and flag.upper() not in LEXING_MODES)


class LexError(ValueError):
    """The query cannot be lexed with certainty; the message is a sentence fragment."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ``word``, ``string``, ``dq`` (a double-quoted string), ``name``
    (backquoted, ``text`` unquoted), ``comment``, ``param`` or ``op`` (one character)."""

    kind: str
    text: str
    start: int
    end: int


def _is_name_char(char: str) -> bool:
    return not char.isascii() or char.isalnum() or char in "_$"


def tokens(text: str, sites: tuple[Site, ...] = ()) -> list[Token]:
    """The tokens of ``text`` as MySQL lexes it with the pinned SQL mode; a parameter is a
    ``param`` token whose text is its name.

    Raises :class:`LexError` for what the check cannot place with certainty, and
    :class:`MisplacedError` for a parameter inside a string, a quoted name or a comment.
    """
    if "\x00" in text:
        raise LexError("holds a NUL character, which ends a comment early in the server")
    at = {site.start: site for site in sites}
    found: list[Token] = []
    i = 0
    while i < len(text):
        if text[i] in WHITESPACE:
            i += 1
        elif i in at:
            found.append(Token("param", at[i].name, i, at[i].end))
            _check_neighbours(text, at[i])
            i = at[i].end
        else:
            i = _comment(text, i, found) or _literal(text, i, found) or _plain(text, i, found, at)
    _no_site_inside(found, at)
    return found


def _comment(text: str, i: int, found: list[Token]) -> int:
    """Read the comment that starts at ``i``, if one does; where it ends, or 0."""
    if text[i] == "#" or (text.startswith("--", i) and _ends_dashes(text, i + 2)):
        stop = text.find("\n", i)
        stop = len(text) if stop < 0 else stop
    elif text.startswith(("/*!", "/*M!"), i):
        raise LexError(
            "holds an executable comment (/*! ... */), whose text the server runs; write that "
            "text as plain SQL"
        )
    elif text.startswith("/*", i):
        stop = text.find("*/", i + 2) + 2
        if stop < 2:
            raise LexError("has a /* comment that is never closed")
    else:
        return 0
    found.append(Token("comment", text[i:stop], i, stop))
    return stop


def _literal(text: str, i: int, found: list[Token]) -> int:
    """Read the string or quoted name that starts at ``i``, if one does; where it ends, or 0.
    ``X'..'``, ``B'..'`` and ``N'..'`` count only at the start of a word, which ``i`` is."""
    char = text[i]
    if char in "'\"`":
        return _quoted(text, i, char, found)
    if char in "nN" and text.startswith("'", i + 1):
        return _quoted(text, i + 1, "'", found)
    if char in "xXbB" and text.startswith("'", i + 1):
        digits = "0-9a-fA-F" if char in "xX" else "01"
        match = re.compile(f"'[{digits}]*'").match(text, i + 1)
        if match is None:
            raise LexError(f"has a {char}'...' literal that holds more than its digits")
        found.append(Token("string", match.group(), i, match.end()))
        return match.end()
    return 0


def _plain(text: str, i: int, found: list[Token], at: dict[int, Site]) -> int:
    """Read the name, ``\\N`` or operator character at ``i``; where it ends."""
    char = text[i]
    if _is_name_char(char):
        stop = i
        while stop < len(text) and _is_name_char(text[stop]) and stop not in at:
            stop += 1
        found.append(Token("word", text[i:stop], i, stop))
        return stop
    if text.startswith("\\N", i):
        found.append(Token("word", "\\N", i, i + 2))
        return i + 2
    if char == "\\" or not char.isprintable():
        raise LexError(f"holds {char!r} outside quotes, which the check does not read")
    found.append(Token("op", char, i, i + 1))
    return i + 1


class MisplacedError(ValueError):
    """A parameter sits where the server does not read a value; the message says where."""

    def __init__(self, site: Site, where: str) -> None:
        super().__init__(misplaced(site, where, EXAMPLE))


def _ends_dashes(text: str, after: int) -> bool:
    """Whether ``--`` followed by ``text[after]`` starts a comment: before whitespace, a
    control character, or the end."""
    return (
        after >= len(text)
        or text[after] in WHITESPACE
        or ord(text[after]) < 32
        or (text[after] == "\x7f")
    )


def _quoted(text: str, i: int, quote: str, found: list[Token]) -> int:
    """Read the string or name that opens with ``quote`` at ``i``; where it ends."""
    j, end = i + 1, len(text)
    while True:
        if j >= end:
            what = "name" if quote == "`" else "string"
            raise LexError(f"has a quoted {what} that is never closed")
        if (text[j] == "\\" and quote != "`") or text.startswith(quote * 2, j):
            j += 2
        elif text[j] == quote:
            break
        else:
            j += 1
    body = text[i + 1 : j]
    kind = {"`": "name", '"': "dq"}.get(quote, "string")
    found.append(Token(kind, body.replace("``", "`") if kind == "name" else body, i, j + 1))
    return j + 1


_INSIDE = {"comment": "a comment", "string": "a string literal", "dq": "a string literal",
           "name": "a quoted name"}  # fmt: skip


def _no_site_inside(found: list[Token], at: dict[int, Site]) -> None:
    """Raise :class:`Misplaced` for the first parameter inside a comment, string or name."""
    for token in found:
        for offset in range(token.start + 1, token.end) if token.kind in _INSIDE else ():
            if offset in at:
                raise MisplacedError(at[offset], f"inside {_INSIDE[token.kind]}")


def _check_neighbours(text: str, site: Site) -> None:
    before = text[site.start - 1] if site.start > 0 else " "
    after = text[site.end] if site.end < len(text) else " "
    for char in (before, after):
        if _is_name_char(char) or char in "'\"`@.\\":
            raise LexError(
                f"has :{site.name} right beside {char!r}, which would run into its value; "
                f"put a space or an operator between them"
            )


_WRITES = (
    (r"\bLOCK IN SHARE MODE\b",
     "takes row locks (LOCK IN SHARE MODE), which would block the app's writes"),
    (r"\bFOR (UPDATE|SHARE)\b",
     "takes row locks (FOR UPDATE/SHARE), which would block the app's writes"),
    (r"\b(INSERT|UPDATE|DELETE)\b", "contains {0}, which writes data"),
    (r"\b(OUTFILE|DUMPFILE)\b", "contains INTO {0}, which writes a file on the database server"),
    (r"\bINTO\b", "contains INTO (SELECT ... INTO sets variables that outlive the query)"),
)  # fmt: skip
_FIRST_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "TRUNCATE", "LOAD"})
_ESCAPES = (
    (r"get_lock", "takes a user-level lock that the session holds past the query"),
    (r"load_file", "reads files on the database server"),
    (r"sys_(exec|eval)", "runs a command on the database server"),
    (r"spider_\w+", "runs statements on other servers, outside the read-only transaction"),
    (r"nextval|setval|next value for",
     "advances a sequence, which no rollback undoes"),
)  # fmt: skip
_ESCAPE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in _ESCAPES))


def read(binding: Binding, read_starts: tuple[str, ...]) -> Reading:
    """What MySQL or MariaDB would make of ``binding.server``: see the module docstring."""
    try:
        found = tokens(binding.server, binding.sites)
    except MisplacedError as exc:
        return Reading(parameter=str(exc))
    except LexError as exc:
        return Reading(unreadable=str(exc))
    code = [token for token in found if token.kind != "comment"]
    words = " ".join(token.text.upper() for token in code if token.kind == "word")
    calls = {t.text.lower() for t in code if t.kind in {"word", "name"}}
    calls |= {t.text.lower() for t, n in pairwise(code)
              if t.kind == "dq" and n.text == "("}  # fmt: skip
    calls |= {m.group().lower() for m in re.finditer(r"\bNEXT VALUE FOR\b", words)}
    return Reading(
        write=_write(code, words, read_starts), escape=_escape(calls), calls=frozenset(calls)
    )


def _write(code: list[Token], words: str, read_starts: tuple[str, ...]) -> str | None:
    """Why the statement is not one read-only query, or ``None``."""
    ends = [i for i, token in enumerate(code) if token.text == ";" and token.kind == "op"]
    first = next((token.text.upper() for token in code if token.kind == "word"), None)
    if ends and ends[0] < len(code) - 1:
        return "holds more than one statement"
    if first is None:
        return "has no statement"
    if first not in read_starts:
        kind = "writes data" if first in _FIRST_WRITES else "is not a read-only query"
        return f"starts with {first}, which {kind}"
    if any(a.text == ":" and b.text == "=" and b.start == a.start + 1 for a, b in pairwise(code)):
        return "assigns a user variable (:=), which outlives the query in the session"
    for pattern, why in _WRITES:
        match = re.search(pattern, words)
        if match is not None:
            return why.format(*match.groups())
    return None


def _escape(calls: set[str]) -> str | None:
    for name in sorted(calls):
        if _ESCAPE.fullmatch(name):
            why = next(why for pattern, why in _ESCAPES if re.fullmatch(pattern, name))
            return f"calls {name.upper() if ' ' in name else name}, which {why}"
    return None
