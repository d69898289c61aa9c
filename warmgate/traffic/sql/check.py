"""The start-up check of a SQL query: is it one read-only statement that stays inside its
transaction, with its parameters where the server binds them?

Theory of operation. ``validate`` and start-up run this check, so that a mistake surfaces
before any traffic, with a sentence naming the target. It is the first of the layers listed
in ``driver.py``, not the guarantee: the read-only transaction is what stops a plain write. But
a check that reads a query differently from its server can be walked around (a comment that
ends earlier for the server than for the check hides a call from it), so it does not
approximate: it reads the query as its server will, or refuses it.

- PostgreSQL (``pgcheck.py``): the server's own scanner and grammar (pglast, libpg_query),
  over the query as warmgate sends it; the driver pins ``standard_conforming_strings`` so the
  server reads strings as the check did.
- MySQL and MariaDB (``mysqlcheck.py``): a tokenizer that follows the server's lexer, whose
  SQL-mode-dependent rules the driver pins (``ANSI_QUOTES``, ``NO_BACKSLASH_ESCAPES``...).
- SQLite: its tokenizer's rules, below. A read-only file guards SQLite whatever the query
  says, so this check only gives an early sentence there.

Every query is read *after* its ``:name`` parameters are rendered for the driver
(``binding.py``, the same function the drivers send the text of), and each parameter must sit
where its server reads a value: a ``:name`` inside a string, a quoted name or a comment is a
configuration error naming it (MySQL's driver would paste the value into the SQL text there).

What the check finds (:class:`~warmgate.traffic.sql.binding.Reading`): a query it cannot read
with certainty, a misplaced parameter, a write (INSERT, UPDATE, DELETE, MERGE, DDL, SELECT
INTO, a locking read, several statements, MySQL's REPLACE, LOAD DATA, INTO OUTFILE, ``:=``),
and a known *escape hatch*: a function that acts outside the read-only transaction, which
therefore cannot stop it (``dblink_exec`` writes and commits on a connection of its own,
``pg_read_file`` reads the server's files, a session-level advisory lock or MySQL's
``GET_LOCK`` outlives the transaction, ...). A function that hides an escape hatch in its own
body passes; the start-up check of the role's privileges and a read-only role cover that
(docs/sql.md).
"""

from __future__ import annotations

import enum
import functools
import re

from warmgate.traffic.sql import mysqlcheck
from warmgate.traffic.sql.binding import Binding, Reading, Style, bind, misplaced


class Dialect(enum.Enum):
    """Which SQL a query is read as."""

    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    SQLITE = "sqlite"


MAX_QUERY_CHARS = 100_000
"""The longest query the check reads; a longer one is refused."""
READ_STARTS = ("SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN")
"""The first words of a statement that may be a read."""

_STYLES = {
    Dialect.POSTGRESQL: Style.NUMERIC_DOLLAR,
    Dialect.MYSQL: Style.FORMAT,
    Dialect.SQLITE: Style.QMARK,
}


@functools.lru_cache(maxsize=64)
def binding(query: str, dialect: Dialect) -> Binding:
    """``query`` rendered for ``dialect``'s driver: the text it sends and the parameter names
    in order (``$1`` for PostgreSQL, ``%s`` for PyMySQL, ``?`` for sqlite3)."""
    return bind(query, _STYLES[dialect])


@functools.lru_cache(maxsize=64)
def read_query(query: str, dialect: Dialect) -> Reading:
    """What the check makes of ``query`` as ``dialect``'s server reads it."""
    if len(query) > MAX_QUERY_CHARS:
        return Reading(
            unreadable=f"is {len(query)} characters long, more than the {MAX_QUERY_CHARS} the "
            "check reads; a warm-up query is short"
        )
    try:
        query.encode()
    except UnicodeEncodeError as exc:
        return Reading(unreadable=f"holds {exc.object[exc.start]!r}, which is not a character")
    if "\x00" in query:
        # PostgreSQL cannot take one; in MySQL it ends a comment early
        return Reading(unreadable="holds a NUL character, which the server reads as an end")
    bound = binding(query, dialect)
    if dialect is Dialect.POSTGRESQL:
        from warmgate.traffic.sql import pgcheck  # pglast: only for PostgreSQL targets

        return pgcheck.read(bound)
    if dialect is Dialect.MYSQL:
        return mysqlcheck.read(bound, READ_STARTS)
    return _read_sqlite(bound)


def write_problem(query: str, dialect: Dialect = Dialect.POSTGRESQL) -> str | None:
    """Why ``query`` is not one read-only statement that the check can read, or ``None``."""
    reading = read_query(query, dialect)
    return reading.write or reading.unreadable or reading.parameter


def escape_problem(query: str, dialect: Dialect = Dialect.POSTGRESQL) -> str | None:
    """Why ``query`` reaches outside its read-only transaction, or ``None`` if it calls no
    known escape hatch: ``calls dblink_exec, which opens a connection of its own...``."""
    return read_query(query, dialect).escape


# SQLite's tokenizer (tokenize.c): comments end at a newline or run to the end; strings take
# doubled quotes and no backslash escapes; names are quoted with "", `` or [].
_SQLITE_TOKEN = re.compile(
    r"(?P<space>[ \t\n\f\r]+)"
    r"|(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))"
    r"|(?P<string>[xX]?'(?:[^']|'')*')"
    r'|(?P<name>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])'
    r"|(?P<word>[\w$]+)"
    r"|(?P<op>[^\x00-\x1f\w\s'\"`\[])",
    re.DOTALL,
)
_SQLITE_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT"})


def _read_sqlite(bound: Binding) -> Reading:
    text, position = bound.server, 0
    words: list[str] = []
    spans: dict[str, list[tuple[int, int]]] = {"comment": [], "string": [], "name": []}
    ended = more = False
    while position < len(text):
        match = _SQLITE_TOKEN.match(text, position)
        if match is None:
            return Reading(unreadable=f"is not valid SQLite at {text[position : position + 20]!r}")
        kind, position = match.lastgroup or "", match.end()
        if kind in spans:
            spans[kind].append(match.span())
        if kind not in {"space", "comment"}:
            more = more or (ended and match.group() != ";")
            ended = ended or match.group() == ";"
            words.append(match.group().upper() if kind == "word" else "")
    for site in bound.sites:
        for kind, found in spans.items():
            if any(start < site.start < end for start, end in found):
                where = {"comment": "a comment", "string": "a string literal"}.get(kind)
                return Reading(parameter=misplaced(site, f"inside {where or 'a quoted name'}",
                                                   "'%' || {name} || '%'"))  # fmt: skip
    first = next((word for word in words if word), None)
    writes = [word for word in words if word in _SQLITE_WRITES]
    write = None
    if more:
        write = "holds more than one statement"
    elif first is None:
        write = "has no statement"
    elif first not in READ_STARTS:
        kind = "writes data" if first in _SQLITE_WRITES else "is not a read-only query"
        write = f"starts with {first}, which {kind}"
    elif writes:
        write = f"contains {writes[0]}, which writes data"
    return Reading(write=write)
