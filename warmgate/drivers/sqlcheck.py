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
privileges (``postgres.py``, ``mysql.py``) and a read-only role (docs/sql.md) cover that.

MySQL and MariaDB (``dialect=Dialect.MYSQL``) read differently, and write in more ways. Their
comments are ``#``, ``-- `` (with a space) and ``/* */``, except ``/*! ... */`` and
``/*M! ... */``, whose text the server *runs*: such a query is refused, since this check would
have to read it as code and as a comment at once. Strings take backslash escapes in either
quote, unless the server's SQL mode has ``NO_BACKSLASH_ESCAPES``, which this check cannot know:
a query with a backslash is checked both ways, so ``'a\\' ; DELETE ...`` is refused whichever mode
the server is in. Backquotes quote names, and a double-quoted name followed by ``(`` counts as a
call (it is one under ``ANSI_QUOTES``). On top of the common rules: ``REPLACE`` (as a statement),
``LOCK IN SHARE MODE``, ``SELECT ... INTO OUTFILE``/``DUMPFILE``/``@var``, and ``:=`` (a user
variable that outlives the query) are writes; the escape hatches are ``GET_LOCK`` (a user-level
lock held by the session, not the transaction), ``LOAD_FILE``, ``sys_exec``/``sys_eval``
(lib_mysqludf_sys), Spider's ``spider_*`` functions (statements on other servers), and the
sequence writers (``NEXTVAL``, ``SETVAL``, ``NEXT VALUE FOR``). ``TRUNCATE``, ``REPLACE`` and
``MERGE`` are also names of functions or engines there, so only a statement *starting* with one
is refused.
"""

from __future__ import annotations

import enum
import re


class Dialect(enum.Enum):
    """Which SQL a query is read as."""

    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    SQLITE = "sqlite"


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


def _mysql_noise(backslash_escapes: bool) -> re.Pattern[str]:
    """Comments, strings and quoted names of MySQL, read with or without backslash escapes
    (the ``NO_BACKSLASH_ESCAPES`` SQL mode turns them off)."""
    inside = r"[^'\\]|''|\\." if backslash_escapes else r"[^']|''"
    double = inside.replace("'", '"')
    return re.compile(
        # line comment; "--" only before an ASCII space or control character, as the server
        # reads it ("--" before a non-ASCII space is two minus signs and a name)
        r"(?:#|--(?=[\x00-\x20\x7f]|$))[^\n]*"
        r"|/\*(?!!|M!).*?\*/"  # block comment, not an executable /*! ... */
        rf"|'(?:{inside})*'"  # string literal
        rf'|"(?:{double})*"'  # string literal (a name under ANSI_QUOTES)
        r"|`(?:[^`]|``)*`",  # quoted name
        re.DOTALL,
    )


_MYSQL_READINGS = (_mysql_noise(backslash_escapes=True), _mysql_noise(backslash_escapes=False))
"""A query with a backslash in a string reads differently in the two SQL modes: both are checked."""


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
_MYSQL_ESCAPES = (
    (r"get_lock", "takes a user-level lock that the session holds past the query"),
    (r"load_file", "reads files on the database server"),
    (r"sys_(exec|eval)", "runs a command on the database server"),
    (r"spider_\w+", "runs statements on other servers, outside the read-only transaction"),
    (r"nextval|setval|next value for",
     "advances a sequence, which no rollback undoes"),
)  # fmt: skip
_MYSQL_ESCAPE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in _MYSQL_ESCAPES))
_MYSQL_FIRST_WRITES = frozenset({"REPLACE", "TRUNCATE", "LOAD"})
_MYSQL_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE"})


def write_problem(query: str, dialect: Dialect = Dialect.POSTGRESQL) -> str | None:
    """Why ``query`` is obviously not a read-only statement, or ``None`` if it may be one."""
    if dialect is Dialect.MYSQL:
        return _mysql_write_problem(query)
    code = _NOISE.sub(" ", query)
    words = [word.upper() for word in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", code)]
    writes = [word for word in words if word in _WRITE_WORDS]
    problem = _common_problem(code, words, _WRITE_WORDS)
    if problem is None and writes:
        problem = f"contains {writes[0]}, which writes data"
    elif problem is None and "INTO" in words:
        problem = "contains INTO (SELECT INTO creates a table)"
    return problem


def _common_problem(code: str, words: list[str], write_words: frozenset[str]) -> str | None:
    """The problems both dialects share: not one statement, not a read, a locking read."""
    problem = None
    if re.search(r";\s*\S", code):
        problem = "holds more than one statement"
    elif not words:
        problem = "has no statement"
    elif words[0] not in READ_STARTS:
        kind = "writes data" if words[0] in write_words else "is not a read-only query"
        problem = f"starts with {words[0]}, which {kind}"
    elif re.search(r"\bFOR\s+(NO\s+KEY\s+|KEY\s+)?(UPDATE|SHARE)\b", code, re.IGNORECASE):
        problem = "takes row locks (FOR UPDATE/SHARE), which would block the app's writes"
    return problem


_MYSQL_WRITES = (
    (r"\bLOCK\s+IN\s+SHARE\s+MODE\b",
     "takes row locks (LOCK IN SHARE MODE), which would block the app's writes"),
    (r"\b(INSERT|UPDATE|DELETE)\b", "contains {0}, which writes data"),
    (r"\b(OUTFILE|DUMPFILE)\b", "contains INTO {0}, which writes a file on the database server"),
    (r"\bINTO\b", "contains INTO (SELECT ... INTO sets variables that outlive the query)"),
    (r":=", "assigns a user variable (:=), which outlives the query in the session"),
)  # fmt: skip


def _mysql_readings(query: str) -> tuple[re.Pattern[str], ...]:
    return _MYSQL_READINGS if "\\" in query else _MYSQL_READINGS[:1]


def _mysql_write_problem(query: str) -> str | None:
    problems = (_mysql_write_problem_as(query, noise) for noise in _mysql_readings(query))
    return next((problem for problem in problems if problem is not None), None)


def _mysql_write_problem_as(query: str, noise: re.Pattern[str]) -> str | None:
    code = noise.sub(" ", query)
    if re.search(r"/\*M?!", code):
        return (
            "holds an executable comment (/*! ... */), whose text the server runs; write that "
            "text as plain SQL"
        )
    words = [word.upper() for word in re.findall(r"[A-Za-z_$][A-Za-z0-9_$]*", code)]
    problem = _common_problem(code, words, _MYSQL_WRITE_WORDS | _MYSQL_FIRST_WRITES)
    for pattern, why in _MYSQL_WRITES:
        match = re.search(pattern, code, re.IGNORECASE)
        if problem is None and match is not None:
            problem = why.format(*(group.upper() for group in match.groups()))
    return problem


def escape_problem(query: str, dialect: Dialect = Dialect.POSTGRESQL) -> str | None:
    """Why ``query`` reaches outside its read-only transaction, or ``None`` if no known escape
    hatch is named in it: ``calls dblink_exec, which opens a connection of its own...``."""
    if dialect is Dialect.MYSQL:
        return _mysql_escape_problem(query)
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


def _mysql_escape_problem(query: str) -> str | None:
    problems = (_mysql_escape_problem_as(query, noise) for noise in _mysql_readings(query))
    return next((problem for problem in problems if problem is not None), None)


def _mysql_escape_problem_as(query: str, noise: re.Pattern[str]) -> str | None:
    def names_kept(match: re.Match[str]) -> str:
        text = match.group(0)
        if text[0] == '"' and re.match(r"\s*\(", query[match.end() :]):
            # "name"( is a call under ANSI_QUOTES: keep it, as a backquoted name.
            return "`" + text[1:-1].replace('""', '"').replace("`", "``") + "`"
        return text if text[0] == "`" else " "

    code = noise.sub(names_kept, query)
    names = []
    for match in re.finditer(r"`((?:[^`]|``)*)`|([A-Za-z_$][\w$]*)", code):
        quoted, plain = match.groups()
        names.append((plain if quoted is None else quoted.replace("``", "`")).lower())
    names += [" ".join(names[i : i + 3]) for i in range(len(names) - 2) if names[i] == "next"]
    for name in names:
        if _MYSQL_ESCAPE.fullmatch(name):
            why = next(why for pattern, why in _MYSQL_ESCAPES if re.fullmatch(pattern, name))
            return f"calls {name.upper() if ' ' in name else name}, which {why}"
    return None
