"""What a failed SQL query or connection means: the outcome, and a short reason.

The drivers raise their own errors (psycopg's, PyMySQL's through aiomysql, sqlite3's, sometimes
wrapped by SQLAlchemy); :func:`classify` turns each into an :class:`Outcome` —
``write_rejected`` when the database refused a write, ``timeout`` when it stopped the statement,
``connection_error`` when it could not be reached or the connection broke, ``error`` otherwise —
and :func:`message_phrase` turns the message of a connection failure into a short phrase without
secrets. The phrase is for people: whether a connection was refused is read from the socket's
error (``decide/reach.py``), never from these words.

A database's message may quote a secret (``invalid input syntax for type integer: "<the
bound value>"``): it is redacted with the target's secrets first, and only then cut to its first
line and :data:`DETAIL_CHARS` (:meth:`Secrets.shorten`), so no part of a secret survives the cut.
"""

from __future__ import annotations

import re

import sqlalchemy
from sqlalchemy.exc import DBAPIError

from warmgate.decide.outcomes import CONNECTION_ERROR, ERROR, TIMEOUT, WRITE_REJECTED
from warmgate.kernel.redaction import Secrets
from warmgate.traffic.driver import Outcome
from warmgate.traffic.sql.check import Dialect

DETAIL_CHARS = 160
"""The most of a database's message an outcome's detail keeps."""
_LEVEL = re.compile(r"^\s*(ERROR|FATAL):\s+")

_CONNECT_PHRASES = (
    (r"connection refused|\[Errno 111\]", "connection refused"),
    (r"access denied for user '([^']*)'@'([^']*)'", "access denied for user {}@{}"),
    (r"unknown database '([^']*)'", "database {} does not exist"),
    (r'password authentication failed for user "?([^"\s]+)',
     "password authentication failed for user {}"),
    (r"no password supplied|fe_sendauth", "no password supplied"),
    (r'role "?([^"\s]+)"? does not exist', "role {} does not exist"),
    (r'database "?([^"\s]+)"? does not exist', "database {} does not exist"),
    (r"no pg_hba\.conf entry", "pg_hba.conf has no entry for this connection"),
    (r"failed to resolve host|could not translate host name|name or service not known",
     "host name not found"),
    (r"timeout expired|timed out", "connect timed out"),
    (r"server shutdown in progress", "the database system is shutting down"),
    (r"the database system is (starting up|shutting down|in recovery mode|not yet accepting)",
     "the database system is {}"),
    (r"too many (?:clients|connections)|remaining connection slots", "too many connections"),
    (r"server closed the connection|terminating connection|connection is closed|"
     r"consuming input failed|lost connection to mysql server|mysql server has gone away|"
     r"connection was killed|not connected", "the server closed the connection"),
    (r"unable to open database file", "cannot open the database file"),
    (r"file is not a database", "the file is not a database"),
)  # fmt: skip


def message_phrase(message: str) -> str:
    """A short, secret-free reason from a driver's connection error message."""
    for pattern, phrase in _CONNECT_PHRASES:
        match = re.search(pattern, message, re.IGNORECASE)
        if match:
            return phrase.format(*match.groups())
    return "connection failed"


def _first_line(message: str, secrets: Secrets) -> str:
    """The first line of ``message``, redacted before it is cut, without ``ERROR:``."""
    return secrets.shorten(_LEVEL.sub("", message), DETAIL_CHARS, first_line=True)


def classify(exc: BaseException, *, dialect: Dialect, secrets: Secrets | None = None) -> Outcome:
    """The outcome of a query that raised ``exc``: a psycopg or PyMySQL error, or a SQLAlchemy
    error wrapping the database driver's. Its detail never shows ``secrets``."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return Outcome(TIMEOUT, detail="no free connection in the pool")
    secrets = secrets or Secrets()
    if dialect is Dialect.MYSQL:
        return _mysql_outcome(exc, secrets)
    return _outcome(exc, secrets, postgres=dialect is Dialect.POSTGRESQL)


def _outcome(exc: BaseException, secrets: Secrets, *, postgres: bool) -> Outcome:
    """The outcome of a psycopg or sqlite3 error, or a SQLAlchemy error wrapping one."""
    original: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    sqlstate = str(getattr(original, "sqlstate", None) or "")
    sqlite_error = str(getattr(original, "sqlite_errorname", None) or "")
    message = _message(original, secrets)
    if sqlstate == "25006" or sqlite_error.startswith("SQLITE_READONLY"):
        return Outcome(WRITE_REJECTED, detail=f"the database refused a write: {message}")
    if sqlstate == "57014" or sqlite_error == "SQLITE_INTERRUPT":
        return Outcome(TIMEOUT, detail="statement timeout")
    connection_lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
    refused = sqlstate[:2] in {"08", "28", "3D", "53"} or sqlstate.startswith("57P")
    unreachable = postgres and not sqlstate and _psycopg_operational(original)
    if (
        connection_lost
        or refused
        or unreachable
        or sqlite_error in {"SQLITE_CANTOPEN", "SQLITE_NOTADB"}
    ):
        return Outcome(CONNECTION_ERROR, detail=message_phrase(secrets.redact(str(original))))
    if isinstance(exc, OSError):
        return Outcome(CONNECTION_ERROR, detail=message_phrase(secrets.redact(str(exc))))
    return Outcome(ERROR, detail=message or type(original).__name__)


def _psycopg_operational(error: BaseException) -> bool:
    """Whether ``error`` is psycopg's OperationalError; without a SQLSTATE it comes from the
    client side: connecting failed, or the connection broke."""
    import psycopg  # loaded already: only PostgreSQL targets ask

    return isinstance(error, psycopg.OperationalError)


def _message(error: BaseException, secrets: Secrets) -> str:
    """The database's own one-line message (PostgreSQL's primary message when there is one)."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return _first_line(str(primary or error), secrets)


# MySQL and MariaDB error numbers (PyMySQL does not keep the SQLSTATE).
_MYSQL_READ_ONLY = frozenset({1792, 1290, 1036})
"""In a READ ONLY transaction; the server runs with --read-only; the table is read only."""
_MYSQL_TIMEOUT = frozenset({1969, 3024})
"""max_statement_time (MariaDB) or max_execution_time (MySQL) exceeded."""
_MYSQL_CONNECTION = frozenset(
    {0, 1040, 1044, 1045, 1049, 1053, 1129, 1130, 1152, 1158, 1159, 1160, 1161, 1184, 1203,
     1226, 1820, 1862, 1927, 2002, 2003, 2005, 2006, 2013, 2026, 2055, 2061, 4031}
)  # fmt: skip
"""Refused, denied, unknown database, too many connections, lost, killed, shut down..."""


def _mysql_outcome(exc: BaseException, secrets: Secrets) -> Outcome:
    """The outcome of a PyMySQL error (``args`` are the error number and the message)."""
    args: tuple[object, ...] = exc.args
    number = args[0] if args and isinstance(args[0], int) else None
    message = _first_line(str(args[1]) if len(args) > 1 else str(exc), secrets)
    if number in _MYSQL_READ_ONLY:
        return Outcome(WRITE_REJECTED, detail=f"the database refused a write: {message}")
    if number in _MYSQL_TIMEOUT:
        return Outcome(TIMEOUT, detail="statement timeout")
    if number in _MYSQL_CONNECTION or isinstance(exc, OSError):
        # aiomysql keeps the socket's own error (refused, host not found) as the cause.
        cause = (
            f" ({secrets.redact(str(exc.__cause__))})" if isinstance(exc.__cause__, OSError) else ""
        )
        return Outcome(CONNECTION_ERROR, detail=message_phrase(message + cause))
    return Outcome(ERROR, detail=message or type(exc).__name__)
