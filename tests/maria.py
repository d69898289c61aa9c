"""The real MariaDB on 127.0.0.1:3306 for tests: reachability, scratch data, accounts.

Tests that need it call :func:`require_mariadb` (usually from a module-scoped fixture): they skip
with the reason when the server is unreachable, unless ``REQUIRE_MARIADB=1`` is set, in which
case they fail (``.ci/run`` sets it, so CI can never skip them silently), as ``tests/pg.py`` does
for PostgreSQL. The server lets root in from 127.0.0.1 without a password; accounts made by
:func:`password_account` must give theirs.

Setting up and inspecting go through the ``mariadb`` command-line client, so the tests check
warmgate's driver against a client that is not warmgate's.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, poll

HOST = "127.0.0.1"
PORT = 3306
DATABASE = "test"
URL = f"mariadb://root@{HOST}:{PORT}/{DATABASE}"
"""The URL warmgate connects with (root, no password)."""
REQUIRE_VARIABLE = "REQUIRE_MARIADB"
ROWS = 100_000
"""Rows in the scratch table."""
CUSTOMERS = 10_000


def sql(statements: str, *, port: int = PORT, database: str = DATABASE) -> list[list[str]]:
    """Run ``statements`` as root with the ``mariadb`` client; the rows of the last result."""
    done = subprocess.run(
        ["mariadb", "-h", HOST, "-P", str(port), "-u", "root", "--batch", "--skip-column-names",
         "--connect-timeout=3", database, "-e", statements],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"mariadb: {done.stderr.strip()}")
    return [line.split("\t") for line in done.stdout.splitlines()]


@functools.cache
def unreachable() -> str | None:
    """Why MariaDB cannot be used, or ``None`` when it answers."""
    try:
        sql("SELECT 1")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"MariaDB is not reachable at {HOST}:{PORT} ({exc})"
    return None


def require_mariadb() -> None:
    """Skip the test when MariaDB is unreachable; fail instead when it is required."""
    reason = unreachable()
    if reason is not None:
        fail_or_skip(reason)


def fail_or_skip(reason: str) -> None:
    """Fail when ``REQUIRE_MARIADB=1`` says these tests must run, else skip with ``reason``."""
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_VARIABLE}=1 says these tests must run")
    pytest.skip(f"{reason}; set {REQUIRE_VARIABLE}=1 to make this a failure")


@dataclass(frozen=True)
class Scratch:
    """A uniquely named ``orders`` table in ``test`` (ROWS rows) and a function that deletes
    its rows, made for one test module."""

    prefix: str

    @property
    def orders(self) -> str:
        """The table's name, for queries in configs."""
        return f"{self.prefix}_orders"

    @property
    def purge(self) -> str:
        """A stored function that deletes every order: a write hidden behind a SELECT."""
        return f"{self.prefix}_purge"

    @property
    def lock(self) -> str:
        """A stored function that takes the user-level lock named after the scratch table."""
        return f"{self.prefix}_lock"

    def select(self, where: str) -> str:
        """``SELECT * FROM <orders> <where>``."""
        return f"SELECT * FROM {self.orders} {where}"  # noqa: S608 - a scratch table's name

    def fingerprint(self) -> tuple[int, int]:
        """``(row count, checksum of every row)``: equal before and after means untouched."""
        checksum = "COALESCE(SUM(CRC32(CONCAT_WS(':', id, customer_id, note))), 0)"
        rows = sql(f"SELECT COUNT(*), {checksum} FROM {self.orders}")  # noqa: S608 - scratch
        return int(rows[0][0]), int(rows[0][1])


@contextmanager
def scratch_table(rows: int = ROWS) -> Iterator[Scratch]:
    """Create ``<prefix>_orders`` with ``rows`` rows and the helper functions; drop them after."""
    scratch = Scratch(f"warmgate_test_{secrets.token_hex(4)}")
    table = scratch.orders
    columns = (
        "id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(10, 2) NOT NULL,"
        " placed DATE NOT NULL, note VARCHAR(40) NOT NULL, KEY (customer_id)"
    )
    values = (
        f"seq, 1 + seq % {CUSTOMERS}, (seq % 1000) / 10.0,"
        " DATE '2024-01-01' + INTERVAL seq % 365 DAY, MD5(seq)"
    )
    try:
        sql(f"CREATE TABLE {table} ({columns}) ENGINE=InnoDB")
        sql(f"INSERT INTO {table} SELECT {values} FROM seq_1_to_{rows}")  # noqa: S608 - scratch
        sql(f"ANALYZE TABLE {table}")
        # The client splits statements at ";", so the body with one is sent under another delimiter.
        body = f"BEGIN DELETE FROM {table}; RETURN 0; END"  # noqa: S608 - a scratch table's name
        sql(
            f"DELIMITER //\nCREATE FUNCTION {scratch.purge}() RETURNS INT MODIFIES SQL DATA {body}//"
        )
        sql(f"CREATE FUNCTION {scratch.lock}() RETURNS INT NO SQL RETURN GET_LOCK('{table}', 0)")
        yield scratch
    finally:
        sql(
            f"DROP FUNCTION IF EXISTS {scratch.purge}; DROP FUNCTION IF EXISTS {scratch.lock};"
            f" DROP TABLE IF EXISTS {table}"
        )


@contextmanager
def password_account(password: str, *grants: str) -> Iterator[str]:
    """An account ``name@'%'`` that logs in with ``password``, granted each of ``grants``
    (``{account}`` stands for it); dropped after."""
    name = f"warmgate_pw_{secrets.token_hex(4)}"
    account = f"'{name}'@'%'"
    sql(f"CREATE USER {account} IDENTIFIED BY '{password}'")
    try:
        for grant in grants:
            sql(grant.format(account=account))
        yield name
    finally:
        sql(f"DROP USER {account}")


class PrivateServer:
    """A mariadbd of the test's own, on its own data directory and port, that the test may
    kill and start again without touching the shared server."""

    def __init__(
        self, directory: Path, port: int, sql_mode: str | None = None, options: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.port = port
        self.sql_mode = sql_mode
        self.options = tuple(options)  # more mariadbd options, such as --max-allowed-packet
        self.process: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        """Make the data directory (``mariadb-install-db``, well under a second here)."""
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.directory / 'data'}",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        """Start mariadbd and wait until it answers."""
        log = (self.directory / "mariadbd.log").open("ab")
        self.process = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.directory / 'data'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
             f"--socket={self.directory / 'mariadbd.sock'}", "--skip-log-bin",
             "--innodb-buffer-pool-size=16M",
             *([f"--sql-mode={self.sql_mode}"] if self.sql_mode is not None else []),
             *self.options],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        poll(self._answers, timeout=60, what=f"the private mariadbd on port {self.port}")

    def _answers(self) -> bool:
        try:
            sql("SELECT 1", port=self.port, database="mysql")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def kill(self) -> None:
        """Kill mariadbd at once (SIGKILL), as a crash would, and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


@contextmanager
def private_server(
    directory: Path, sql_mode: str | None = None, options: Sequence[str] = ()
) -> Iterator[PrivateServer]:
    """A private MariaDB with database ``test`` (``sql_mode`` as its default SQL mode, when
    given, and ``options`` given to ``mariadbd``), started; killed after."""
    if shutil.which("mariadb-install-db") is None or not Path("/usr/sbin/mariadbd").exists():
        fail_or_skip("mariadb-install-db or /usr/sbin/mariadbd is missing (Debian: mariadb-server)")
    server = PrivateServer(directory, free_port(), sql_mode, options)
    server.install()
    try:
        server.start()
        sql("CREATE DATABASE test", port=server.port, database="mysql")
        yield server
    finally:
        server.kill()
