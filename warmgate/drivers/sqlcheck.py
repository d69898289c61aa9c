"""The start-up check of a SQL query: is it one read-only statement that stays inside its
transaction?

Theory of operation. This is a syntactic check, run by ``validate`` and at start-up, so that a
mistake surfaces before any traffic with a sentence naming the target. It is the first of the
layers listed in ``sql.py``, not the guarantee: the read-only transaction is what stops a plain
write. Two kinds of problem are caught here:

- :func:`write_problem`: the statement obviously writes, locks rows, or is not one query
  (INSERT, UPDATE, DELETE, MERGE, DDL, SELECT INTO, FOR UPDATE/SHARE, several statements);
- :func:`escape_problem`: it calls a known *escape hatch*, a function that acts outside the
  read-only transaction, which therefore cannot stop it: ``dblink*`` and ``postgres_fdw``'s
  functions open connections of their own (a ``dblink_exec`` writes and commits there), the
  large-object writers and the server-file readers reach the server's disk, the
  ``pg_terminate_backend`` family stops the app's sessions, a session-level advisory lock
  outlives the transaction, and ``COPY ... PROGRAM`` runs a command on the server.

Both look at the query without its comments and quoted text, so a name inside a string is not a
call. Quoted identifiers are names, though: ``"dblink_exec"(...)`` is caught like
``dblink_exec(...)``, and Unicode-escaped ones (``U&"..."``) are decoded first. A function that
hides an escape hatch inside its own body passes this check; the start-up check of the role's
privileges (``postgres.py``) and a read-only role (docs/sql.md) cover that.
"""

from __future__ import annotations

import re

READ_STARTS = ("SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN")
"""The first words of a statement that may be a read."""

_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "TRUNCATE"})
_NOISE = re.compile(
    r"--[^\n]*"  # line comment
    r"|/\*.*?\*/"  # block comment
    r"|[Ee]'(?:[^'\\]|''|\\.)*'"  # string literal with backslash escapes
    r"|'(?:[^']|'')*'"  # string literal
    r'|"(?:[^"]|"")*"'  # quoted identifier
    r"|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$",  # dollar-quoted string
    re.DOTALL,
)
_QUOTED_NAME = re.compile(r'(U&)?"((?:[^"]|"")*)"', re.IGNORECASE)
_UNICODE_ESCAPE = re.compile(r"\\(?:\+([0-9A-Fa-f]{6})|([0-9A-Fa-f]{4}))")
_ESCAPES = (
    (r"dblink\w*", "opens a connection of its own, outside the read-only transaction"),
    (r"postgres_fdw\w*", "manages postgres_fdw's connections to other servers"),
    (r"lo_(import|export|creat|create|unlink|put|from_bytea|truncate|truncate64)|lowrite",
     "writes large objects or files on the database server"),
    (r"pg_(terminate|cancel)_backend", "stops or interrupts other sessions, such as the app's"),
    (r"pg_read_(binary_)?file|pg_ls_\w+|pg_stat_file|pg_file_\w+",
     "reads or writes files on the database server"),
    (r"pg_(try_)?advisory_lock(_shared)?",
     "takes a session-level lock that outlives the query (pg_advisory_xact_lock does not)"),
)  # fmt: skip
_ESCAPE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in _ESCAPES))


def write_problem(query: str) -> str | None:
    """Why ``query`` is obviously not a read-only statement, or ``None`` if it may be one."""
    code = _NOISE.sub(" ", query)
    words = [word.upper() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", code)]
    writes = [word for word in words if word in _WRITE_WORDS]
    problem = None
    if re.search(r";\s*\S", code):
        problem = "holds more than one statement"
    elif not words:
        problem = "has no statement"
    elif words[0] not in READ_STARTS:
        kind = "writes data" if words[0] in _WRITE_WORDS else "is not a read-only query"
        problem = f"starts with {words[0]}, which {kind}"
    elif re.search(r"\bFOR\s+(NO\s+KEY\s+|KEY\s+)?(UPDATE|SHARE)\b", code, re.IGNORECASE):
        problem = "takes row locks (FOR UPDATE/SHARE), which would block the app's writes"
    elif writes:
        problem = f"contains {writes[0]}, which writes data"
    elif "INTO" in words:
        problem = "contains INTO (SELECT INTO creates a table)"
    return problem


def escape_problem(query: str) -> str | None:
    """Why ``query`` reaches outside its read-only transaction, or ``None`` if no known escape
    hatch is named in it: ``calls dblink_exec, which opens a connection of its own...``."""
    code = _NOISE.sub(" ", query)
    names = [word.lower() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", code)]
    for match in _QUOTED_NAME.finditer(_comments_and_strings_removed(query)):
        name = match.group(2).replace('""', '"')
        if match.group(1):
            if re.search(r"\bUESCAPE\b", query[match.end() :], re.IGNORECASE):
                return "names an identifier with UESCAPE, which hides names from this check"
            name = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), name)
        names.append(name.lower())
    if "copy" in names and "program" in names:
        return "runs COPY ... PROGRAM, which runs a command on the database server"
    for name in names:
        if _ESCAPE.fullmatch(name):
            why = next(why for pattern, why in _ESCAPES if re.fullmatch(pattern, name))
            return f"calls {name}, which {why}"
    return None


def _comments_and_strings_removed(query: str) -> str:
    """``query`` with comments and quoted text blanked, quoted identifiers kept."""
    return _NOISE.sub(lambda m: m.group(0) if m.group(0).startswith('"') else " ", query)
