"""MySQL and MariaDB for the SQL driver: a small pool of aiomysql connections.

Theory of operation. Each query is one read-only transaction on a pooled connection, then the
session is reset. MySQL's protocol answers commands in order, so commands that are safe whatever
the one before did are written at once and their answers read after (a pipeline); the query
itself is only sent once the server has said OK to the transaction around it. So the next
query's transaction is opened as the last one ends, and its OK read with the last answers::

    START TRANSACTION READ ONLY, SET SESSION sql_mode = <pinned>
                                                (one write, on a new connection only; MySQL:
                                                 and SET SESSION max_execution_time)
    SET STATEMENT max_statement_time = <s> FOR <the query>, ROLLBACK, COM_RESET_CONNECTION,
    START TRANSACTION READ ONLY, SET SESSION sql_mode = <pinned>
                                                (one write a query; MySQL: the query alone,
                                                 and SET SESSION max_execution_time at the end)

One round trip per query, as on PostgreSQL (libpq's pipeline skips the rest of the transaction
when a statement fails; MySQL's protocol would run the query regardless, hence the OK first).
A transaction opened this way has read nothing while its connection waits in the pool, so it
holds no lock and no snapshot; but MariaDB closes a session that waits in a transaction past
its ``idle_transaction_timeout`` or ``idle_readonly_transaction_timeout``, so when either is set
(read once per connection) the transaction is opened only when the query comes, one round trip
before it (a timeout set globally while warmgate runs reaches its sessions at their next reset:
a connection the server then closes fails one query, and the pool opens a new one).

This keeps every guarantee listed in ``driver.py``:

- START TRANSACTION READ ONLY is sent before every query, whatever the session says, and the
  query is only sent once the server said OK to it (and to the SQL mode after it): the server
  then refuses every write to a table, a sequence included (error 1792, SQLSTATE 25006),
  whatever function makes it;
- the server lexes the query as the statement check did (``mysqlcheck.py``): before every
  query the session's ``sql_mode`` is set to the server's own (read once per connection)
  without the flags that change lexing (``ANSI_QUOTES``, ``NO_BACKSLASH_ESCAPES``, MariaDB's
  ``ORACLE``...), so ``"..."`` is a string and a backslash escapes, whatever the server's
  default or an earlier query said; PyMySQL then escapes values for that reading too;
- one statement per query: the connection is opened without ``CLIENT_MULTI_STATEMENTS``
  (aiomysql asks for it; warmgate clears the flag before the handshake), so the server refuses
  ``SELECT 1; DELETE ...`` whole as a syntax error before running any of it;
- the timeout is the server's own: MariaDB's ``SET STATEMENT max_statement_time=... FOR``
  binds it to the statement, so no earlier query can lift it; MySQL has no such prefix, and its
  ``max_execution_time`` (which covers read-only SELECTs, the only statements that pass the
  check) is set in the session before each query. Which server it is, the handshake says;
- nothing outlives the query: the transaction is rolled back, and ``COM_RESET_CONNECTION``
  then resets the session as a new one would be: user variables, session variables, temporary
  tables, prepared statements and user-level locks (``GET_LOCK``, even one taken inside a
  stored function) are gone, while the login and the character set stay. If either fails, the
  connection is closed instead of reused;
- rows are read unbuffered, packet by packet, and counted without being decoded: a packet is
  read a piece of at most ``PIECE`` bytes at a time, and a row is never held whole, so a row
  wider than the target's ``row_bytes`` costs no more memory than a narrow one (it is counted
  as wide); past the row cap the rest is left unread and the connection closed, which stops the
  query;
- aiomysql reads and writes through asyncio streams on the event loop, so nothing waits on it.

Why aiomysql (PyMySQL's protocol code on asyncio streams) rather than asyncmy (a Cython
rewrite of the same): both reached the same throughput here (docs/benchmarks.md, "MariaDB"),
since a query's cost is its round trips and the load generator, not parsing three small
packets; aiomysql and PyMySQL are two pure-Python wheels of about 120 kB that install on any
platform without a compiler, where asyncmy is 36 MB installed (compiled modules and their C
sources) and needs a compiler wherever it has no wheel.

aiomysql has no public call for ``COM_RESET_CONNECTION``, for turning multi-statements off,
for writing several commands at once or for reading a packet in pieces; warmgate uses the
connection's own stream reader, byte writer, packet counter, encoding and status
(``_reader``, ``_write_bytes``, ``_next_seq_id``, ``_encoding``, ``server_status``), as its
``begin``, ``rollback`` and unbuffered cursor do, and its ``client_flag`` before the
handshake; values are escaped with its ``literal``, as its cursor does. The answers are read
from the stream as much as has arrived at once (``_Packets``), not a few bytes at a time.
pyproject.toml pins the aiomysql releases this is tested with, and the tests fail if any of
these stops working.
SQLAlchemy turns the URL into connection arguments, as its aiomysql dialect does;
``binding.py`` turns ``:name`` into ``%s`` exactly where the statement check found each
parameter in code.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiomysql
import pymysql.err
import sqlalchemy
from pymysql.constants import CR, SERVER_STATUS
from pymysql.constants.CLIENT import MULTI_STATEMENTS
from pymysql.constants.COMMAND import COM_QUERY
from pymysql.protocol import MysqlPacket
from sqlalchemy.engine import URL

from warmgate.config.sql_target import DEFAULT_ROW_BYTES
from warmgate.traffic.sql.check import Dialect, binding
from warmgate.traffic.sql.mysqlcheck import pinned_mode
from warmgate.traffic.sql.pool import Slots
from warmgate.traffic.sql.rows import Counted

PROGRAM_NAME = "warmgate"
"""What the server shows as the ``program_name`` connection attribute of warm-up connections."""
PIECE = 1 << 16
"""Most bytes of a packet read at once: a longer row is read and dropped a piece at a time."""
_LONGEST_PACKET = 0xFFFFFF
"""A payload this long goes on in the next packet (a row of 16 MiB or more)."""
COM_RESET_CONNECTION = 0x1F
"""The protocol command that resets a session (MySQL 5.7.3, MariaDB 10.2.4 and later)."""


@dataclass
class _Session:
    """A pooled connection, the server it talks to, and whether its last query ended cleanly."""

    connection: Any  # aiomysql.Connection
    mariadb: bool
    sql_mode: bytes
    """The statement that sets the session's SQL mode the statement check lexes with."""
    packets: _Packets
    keep_open: bool = True
    """Whether the next query's transaction is opened as the last one ends (the server does not
    close a session that sits in a transaction, which MariaDB's idle transaction timeouts do)."""
    clean: bool = False
    opened: bytes | None = None
    """What the transaction opened for the next query was opened with (its ``SET`` of the
    timeout, or empty), confirmed by the server; ``None`` when none is open."""


class MysqlPool:
    """At most ``size`` connections, opened when first needed, each running one query at a time.

    A connection goes back to the pool only when its query ended with the rollback and the
    session reset; otherwise (a broken connection, a query the client gave up on, more rows than
    the cap) it is closed and the next query opens a new one.
    """

    errors: tuple[type[Exception], ...] = (
        pymysql.err.MySQLError,
        sqlalchemy.exc.TimeoutError,
        OSError,
    )
    """What :meth:`rows` raises when the database or the connection fails."""

    def __init__(self, url: URL, size: int, wait: float) -> None:
        _, arguments = url.get_dialect()().create_connect_args(url)
        arguments.pop("client_flag", None)
        if isinstance(arguments.get("password"), str):
            # aiomysql sends the password encoded as Latin-1, which fails on any other character:
            # give it the UTF-8 bytes spelt as Latin-1, so that it sends those.
            arguments["password"] = arguments["password"].encode().decode("latin-1")
        # Without a charset aiomysql speaks Latin-1 and returns bytes.
        arguments.setdefault("charset", "utf8mb4")
        arguments.setdefault("program_name", PROGRAM_NAME)
        # LOAD DATA LOCAL would let the server read the client's files; the session's
        # autocommit is the server's (warmgate opens its own transactions).
        arguments.update(local_infile=False, autocommit=None)
        self._arguments = arguments
        self._wait = wait
        self._slots = Slots(size)
        self._idle: list[_Session] = []
        self._closed = False

    async def rows(
        self,
        query: str,
        params: Mapping[str, int | str],
        statement_timeout: float,
        cap: int,
        row_bytes: int = DEFAULT_ROW_BYTES,
    ) -> Counted:
        """Run ``query`` once in a read-only transaction, rolled back; the rows it returned,
        counted up to ``cap + 1`` (more than ``cap``: reading stopped there), and those wider
        than ``row_bytes``, read in pieces and dropped."""
        text, names = _positional(query)
        if not self._slots.take():
            await self._slots.wait(self._wait)
        try:
            session = self._idle.pop() if self._idle else await self._connect()
            try:
                values = [params[name] for name in names]
                return await read_only(
                    session, text, values, statement_timeout, cap, row_bytes=row_bytes
                )
            finally:
                if session.clean and not session.connection.closed and not self._closed:
                    self._idle.append(session)
                else:
                    session.connection.close()
        finally:
            self._slots.give_back()

    async def aclose(self) -> None:
        """Close the idle connections now, and the ones in use when their query ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for session in idle:
            # A polite goodbye (COM_QUIT) when the server still listens; a closed socket if not.
            with contextlib.suppress(pymysql.err.MySQLError, OSError):
                await session.connection.ensure_closed()
            session.connection.close()

    async def write_access(self) -> str | None:
        """How the connecting account can write (``app@% may INSERT ... in every database``),
        or ``None`` when it can only read; on a connection of its own, closed after."""
        session = await self._connect()
        try:
            cursor = await session.connection.cursor()
            await cursor.execute(_ACCOUNT_QUERY)
            row = await cursor.fetchone()
            await cursor.close()
        finally:
            session.connection.close()
        if row is None:
            return None
        account, everywhere, schema, table, tables = row
        if everywhere:
            return f"{account} may {_either(everywhere)} in every database (global privileges)"
        if schema is not None:
            return (
                f"{account} may INSERT, UPDATE, DELETE, CREATE, DROP or ALTER in database {schema}"
            )
        if table is not None:
            more = f" and {tables - 1} more tables" if tables > 1 else ""
            return f"{account} may INSERT, UPDATE or DELETE {table}{more}"
        return None

    async def _connect(self) -> _Session:
        connection = aiomysql.Connection(**self._arguments)
        # Before the handshake: the server then runs one statement per query, never more.
        connection.client_flag &= ~MULTI_STATEMENTS
        try:
            await connection._connect()
            mariadb = "MariaDB" in connection.get_server_info()
            cursor = await connection.cursor()
            await cursor.execute(_SESSION_QUERY if mariadb else _MYSQL_SESSION_QUERY)
            mode, idle_timeouts = await cursor.fetchone()
            await cursor.close()
        except BaseException:
            connection.close()  # a handshake cut short (refused, denied, the client's timeout)
            raise
        return _Session(
            connection, mariadb, set_sql_mode(str(mode)), _Packets(connection), not idle_timeouts
        )


# The session's SQL mode, and how many of MariaDB's timeouts for a session idle in a transaction
# are on (MySQL has none): the session's own, and the global ones the session takes at each
# COM_RESET_CONNECTION.
_SESSION_QUERY = """
SELECT @@SESSION.sql_mode,
    (SELECT COUNT(*) FROM information_schema.SESSION_VARIABLES
     WHERE VARIABLE_NAME IN ('IDLE_TRANSACTION_TIMEOUT', 'IDLE_READONLY_TRANSACTION_TIMEOUT')
       AND VARIABLE_VALUE <> '0')
  + (SELECT COUNT(*) FROM information_schema.GLOBAL_VARIABLES
     WHERE VARIABLE_NAME IN ('IDLE_TRANSACTION_TIMEOUT', 'IDLE_READONLY_TRANSACTION_TIMEOUT')
       AND VARIABLE_VALUE <> '0')
"""
_MYSQL_SESSION_QUERY = "SELECT @@SESSION.sql_mode, 0"


# Privileges that write data, the schema or files (FILE: SELECT ... INTO OUTFILE, which a
# read-only transaction does not stop), for the account itself. Privileges that come through
# roles are not followed (docs/sql.md, "A read-only role").
_ACCOUNT_QUERY = """
SELECT a.account,
    (SELECT GROUP_CONCAT(DISTINCT p.PRIVILEGE_TYPE ORDER BY p.PRIVILEGE_TYPE SEPARATOR ', ')
     FROM information_schema.USER_PRIVILEGES p
     WHERE p.GRANTEE = a.grantee AND p.PRIVILEGE_TYPE IN
        ('INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'ALTER', 'FILE', 'SUPER')),
    (SELECT MIN(s.TABLE_SCHEMA) FROM information_schema.SCHEMA_PRIVILEGES s
     WHERE s.GRANTEE = a.grantee AND s.PRIVILEGE_TYPE IN
        ('INSERT', 'UPDATE', 'DELETE', 'CREATE', 'DROP', 'ALTER', 'FILE', 'SUPER')),
    (SELECT MIN(CONCAT(t.TABLE_SCHEMA, '.', t.TABLE_NAME))
     FROM information_schema.TABLE_PRIVILEGES t
     WHERE t.GRANTEE = a.grantee AND t.PRIVILEGE_TYPE IN ('INSERT', 'UPDATE', 'DELETE')),
    (SELECT COUNT(DISTINCT t.TABLE_SCHEMA, t.TABLE_NAME)
     FROM information_schema.TABLE_PRIVILEGES t
     WHERE t.GRANTEE = a.grantee AND t.PRIVILEGE_TYPE IN ('INSERT', 'UPDATE', 'DELETE'))
FROM (SELECT CURRENT_USER() AS account,
        CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''',
               SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''') AS grantee) a
"""


def _either(privileges: str) -> str:
    """``INSERT, DELETE or FILE`` from ``INSERT, DELETE, FILE``."""
    head, _, last = privileges.rpartition(", ")
    return f"{head} or {last}" if head else last


def set_sql_mode(mode: str) -> bytes:
    """The statement that sets the session's SQL mode to ``mode`` without the flags that change
    how the server lexes a query (``mysqlcheck.pinned_mode``)."""
    pinned = pinned_mode(mode)
    if not re.fullmatch(r"[A-Za-z0-9_,]*", pinned):
        raise pymysql.err.InterfaceError(f"the server reported an SQL mode of {mode!r}")
    return f"SET SESSION sql_mode = '{pinned}'".encode()


@functools.lru_cache(maxsize=64)
def timed(query: str, mariadb: bool, statement_timeout: float) -> tuple[bytes | None, str]:
    """``(statement to send first or None, the query to send)`` so that the server stops the
    query after ``statement_timeout`` seconds."""
    if mariadb:
        seconds = max(0.001, statement_timeout)  # 0 would mean no limit at all
        return None, f"SET STATEMENT max_statement_time={seconds:.3f} FOR {query}"
    milliseconds = max(1, round(statement_timeout * 1000))
    return b"SET SESSION max_execution_time = %d" % milliseconds, query


Command = tuple[int, bytes]
"""A protocol command and its payload."""
_BEGIN: Command = (COM_QUERY, b"START TRANSACTION READ ONLY")
_ROLLBACK: Command = (COM_QUERY, b"ROLLBACK")
_RESET: Command = (COM_RESET_CONNECTION, b"")


async def read_only(
    session: _Session,
    query: str,
    values: Sequence[int | str],
    statement_timeout: float,
    cap: int,
    *,
    row_bytes: int = DEFAULT_ROW_BYTES,
) -> Counted:
    """One read-only transaction around ``query``, rolled back, then the session reset; the
    rows it returned, counted up to ``cap + 1``, and those wider than ``row_bytes``.

    ``session.clean`` says afterwards whether the connection may be used again: only when the
    rollback and the reset both succeeded (and the next query's transaction opened, when it is
    opened ahead: ``session.opened``). Raises the PyMySQL error of the first command that
    failed.
    """
    connection = session.connection
    session.clean = False
    before, text = timed(query, session.mariadb, statement_timeout)
    setting = before or b""
    begin = [_BEGIN, (COM_QUERY, session.sql_mode)]
    if before is not None:
        begin.append((COM_QUERY, before))
    packets = session.packets
    if session.opened != setting:
        # The query is sent only once the server said OK to its transaction (and timeout).
        session.opened = None
        await _pipeline(packets, begin)
    session.opened = None
    # PyMySQL's escaping, as its cursor's execute does it (a literal % is written %%).
    literals = tuple(connection.literal(value) for value in values)
    statement = (COM_QUERY, (text % literals).encode(connection._encoding))
    # The rollback and the reset follow whatever the query did: written with it, read after;
    # then the next query's transaction is opened, and its OK read before that query is sent.
    ahead = begin if session.keep_open else []
    first, *answers = _write(connection, [statement, _ROLLBACK, _RESET, *ahead])
    try:
        counted = await _count(packets, first, cap, row_bytes)
    except pymysql.err.MySQLError as exc:
        if connection.closed:
            raise
        failed: pymysql.err.MySQLError | None = exc
    else:
        if counted.rows > cap:
            return counted  # the rest is left unread: the connection is closed
        failed = None
    ended: pymysql.err.MySQLError | None = None
    for number in answers[:2]:
        ended = ended or await _answer(packets, number)
    session.clean = ended is None
    if session.clean and ahead:
        # A transaction that failed to open is the next query's concern, not this one's: the
        # connection is closed instead of reused.
        session.clean = await _opened_ahead(packets, answers[2:])
        session.opened = setting if session.clean else None
    if failed is not None:
        raise failed
    if ended is not None:
        raise ended
    return counted


async def _opened_ahead(packets: _Packets, numbers: Sequence[int]) -> bool:
    """Whether the server said OK to each command that opened the next query's transaction
    ahead (``numbers``: the first packet number of each answer)."""
    for number in numbers:
        try:
            refused = await _answer(packets, number)
        except pymysql.err.MySQLError:
            return False
        if refused is not None:
            return False
    return True


async def _answer(packets: _Packets, number: int) -> pymysql.err.MySQLError | None:
    """Read one command's OK (its first packet numbered ``number``); the server's error
    instead, when it refused the command."""
    _, head = await packets.next(number)
    if head[:1] == b"\xff":
        return _error(packets, head)
    if head[:1] != b"\x00" or len(head) < 7:
        packets.connection.close()
        raise pymysql.err.OperationalError(CR.CR_COMMANDS_OUT_OF_SYNC, "Command Out of Sync")
    packets.connection.server_status = _ok_status(head)
    return None


def _error(packets: _Packets, head: bytes) -> pymysql.err.MySQLError:
    """The PyMySQL error an error packet stands for."""
    try:
        MysqlPacket(head, packets.connection._encoding).raise_for_error()
    except pymysql.err.MySQLError as exc:
        return exc.with_traceback(None)
    raise AssertionError("not an error packet")  # pragma: no cover - checked by the caller


def _ok_status(head: bytes) -> int:
    """The server status flags of an OK packet (after its two length-encoded integers)."""
    at = 1
    for _ in range(2):
        first = head[at]
        at += 1 if first < 0xFB else _LENGTHS.get(first, 1)
    return int.from_bytes(head[at : at + 2], "little")


_LENGTHS = {0xFC: 3, 0xFD: 4, 0xFE: 9}
"""Bytes of a length-encoded integer by its first byte (below 0xFB: that byte alone)."""


async def _count(packets: _Packets, number: int, cap: int, row_bytes: int) -> Counted:
    """Read the query's answer (its first packet numbered ``number``) and count its rows as
    they arrive, up to ``cap + 1``, and those wider than ``row_bytes``; no more than a piece of
    a row (or of a column's definition) is ever held."""
    connection = packets.connection
    size, head = await packets.next(number)
    if head[:1] == b"\xff":
        raise _error(packets, head)
    if head[:1] == b"\x00" and len(head) >= 7:
        connection.server_status = _ok_status(head)
        return Counted(0)  # no result set
    columns = MysqlPacket(head, connection._encoding).read_length_encoded_integer()
    for _ in range(columns + 1):  # the definitions, then an EOF (no CLIENT_DEPRECATE_EOF)
        size, head = await packets.next()
    if not (head[:1] == b"\xfe" and size < 9):
        connection.close()
        raise pymysql.err.OperationalError(CR.CR_COMMANDS_OUT_OF_SYNC, "Command Out of Sync")
    count = wide = 0
    while True:
        size, head = await packets.next()
        if (head[:1] == b"\xfe" and size < 9) or head[:1] == b"\xff":
            # The end of the rows, or an error (a timeout while sending them).
            if head[:1] == b"\xff":
                raise _error(packets, head)
            status = int.from_bytes(head[3:5], "little")  # after 0xFE and the warnings
            if status & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS:
                connection.close()  # one statement per query: a second result is out of step
                raise pymysql.err.OperationalError(
                    CR.CR_COMMANDS_OUT_OF_SYNC, "the query returned more than one result"
                )
            connection.server_status = status
            return Counted(count, wide)
        count += 1
        wide += size > row_bytes
        if count > cap:
            return Counted(cap + 1, wide)


class _Packets:
    """The server's packets on one connection, numbers checked, read from the connection's
    stream whatever has arrived at once (a query's answers usually come in one segment),
    instead of a few bytes at a time: that took a fifth of the client's CPU for a query."""

    __slots__ = ("_at", "_buffer", "_reader", "connection")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._reader = connection._reader
        self._buffer = b""
        self._at = 0

    async def next(self, number: int | None = None) -> tuple[int, bytes]:
        """The size of the next packet and its first piece (all of it when it fits in a piece);
        the rest is read a piece at a time and dropped. Packets that go on in the next (a
        payload of 2**24 - 1 bytes) count as one. ``number`` starts a new exchange: the number
        the packet must have."""
        connection = self.connection
        if number is not None:
            connection._next_seq_id = number
        size, head = 0, b""
        while True:
            # Taken from the buffer inline: a coroutine per packet would cost more than
            # reading it, and an answer is usually there whole.
            at = self._at
            if at + 4 > len(self._buffer):
                await self._fill(4)
                at = self._at
            buffer = self._buffer
            length, number = int.from_bytes(buffer[at : at + 3], "little"), buffer[at + 3]
            if number != connection._next_seq_id:
                connection.close()  # out of step, as aiomysql's own reader would say
                if number == 0:
                    raise pymysql.err.OperationalError(
                        CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
                    )
                raise pymysql.err.InternalError(
                    f"Packet sequence number wrong - got {number} expected "
                    f"{connection._next_seq_id}"
                )
            connection._next_seq_id = (number + 1) % 256
            at += 4
            count = min(length, PIECE)
            if at + count > len(buffer):
                self._at = at
                await self._fill(count)
                at, buffer = self._at, self._buffer
            piece = buffer[at : at + count]
            self._at = at + count
            if length > PIECE:
                await self._skip(length - PIECE)
            head = head or piece
            size += length
            if length < _LONGEST_PACKET:
                return size, head

    async def _fill(self, count: int) -> None:
        """Read until the buffer holds the next ``count`` bytes (at most a piece and a
        header), keeping only what is still unread."""
        buffer = self._buffer[self._at :]
        while len(buffer) < count:
            buffer += await self._read(PIECE)
        self._buffer, self._at = buffer, 0

    async def _skip(self, count: int) -> None:
        """Drop the next ``count`` bytes, holding at most a piece of them at once."""
        held = len(self._buffer) - self._at
        if count <= held:
            self._at += count
            return
        count -= held
        self._buffer, self._at = b"", 0
        while count:
            count -= len(await self._read(min(count, PIECE)))

    async def _read(self, most: int) -> bytes:
        """What has arrived, up to ``most`` bytes (waiting for at least one)."""
        try:
            data: bytes = await self._reader.read(most)
        except OSError as exc:
            self.connection.close()
            raise pymysql.err.OperationalError(
                CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})"
            ) from exc
        if not data:
            self.connection.close()
            raise pymysql.err.OperationalError(
                CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
            )
        return data


def _write(connection: Any, commands: Sequence[Command]) -> list[int]:
    """Write ``commands`` at once; the number each answer starts with.

    A command is one packet numbered 0 (3 bytes of length, the number, the command byte, the
    payload), or several when it is 2**24 - 1 bytes or longer; its answer is numbered on.
    """
    frames: list[bytes] = []
    numbers = []
    for command, payload in commands:
        data, number = bytes((command,)) + payload, 0
        while True:
            chunk, data = data[:_LONGEST_PACKET], data[_LONGEST_PACKET:]
            frames.append(len(chunk).to_bytes(3, "little") + bytes((number,)) + chunk)
            number = (number + 1) % 256
            if len(chunk) < _LONGEST_PACKET:
                break
        numbers.append(number)
    connection._write_bytes(b"".join(frames))
    return numbers


async def _pipeline(packets: _Packets, commands: Sequence[Command]) -> None:
    """Write ``commands`` at once, then read the OK of each in order.

    The first error is raised, and the answers after it are left unread: the connection is then
    out of step, and the pool closes it (``clean`` stays false).
    """
    for number in _write(packets.connection, commands):
        error = await _answer(packets, number)
        if error is not None:
            raise error


@functools.lru_cache(maxsize=64)
def _positional(query: str) -> tuple[str, tuple[str, ...]]:
    """``query`` with ``%s`` for its ``:name`` parameters (a literal ``%`` doubled), and the
    names in order, as the statement check read it (``binding.py``)."""
    bound = binding(query, Dialect.MYSQL)
    return bound.text, bound.names
