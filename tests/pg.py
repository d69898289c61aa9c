"""The real PostgreSQL on 127.0.0.1:5432 for tests: reachability, scratch data, counters.

Tests that need it call :func:`require_postgres` (usually from a module-scoped fixture): they
skip with the reason when the server is unreachable, unless ``REQUIRE_POSTGRES=1`` is set, in
which case they fail (``.ci/run`` sets it, so CI can never skip them silently). The name has no
``WARMGATE_`` prefix on purpose: the autouse fixture of ``conftest.py`` clears those for each test.

The server trusts every local connection, so a wrong password would pass unnoticed. Roles made
by :func:`password_role` belong to SCRAM_GROUP, which ``pg_hba.conf`` makes give their
password (``.ci/run`` adds the line :data:`HBA_LINE`); :func:`require_password_auth` skips or
fails, like :func:`require_postgres`, when that line is missing.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

HOST = "127.0.0.1"
PORT = 5432
DATABASE = "test"
DSN = f"host={HOST} port={PORT} user=postgres dbname={DATABASE} connect_timeout=3"
URL = f"postgresql+psycopg://postgres@{HOST}:{PORT}/{DATABASE}"
"""The SQLAlchemy URL warmgate connects with (trust authentication, no password)."""
REQUIRE_VARIABLE = "REQUIRE_POSTGRES"
ROWS = 200_000
"""Rows in the scratch table: enough that a query by key must go through the index."""
CUSTOMERS = 20_000
SCRAM_GROUP = "warmgate_scram_login"
"""Members of this role must give their password (see HBA_LINE)."""
HBA_LINE = f"host all +{SCRAM_GROUP} 127.0.0.1/32 scram-sha-256"
"""The pg_hba.conf line, above the trust lines, that makes SCRAM_GROUP's members log in with
their password."""


@functools.cache
def unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` when it answers."""
    try:
        with psycopg.connect(DSN) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL is not reachable at {HOST}:{PORT} ({first})"
    return None


def require_postgres() -> None:
    """Skip the test when PostgreSQL is unreachable; fail instead when it is required."""
    reason = unreachable()
    if reason is not None:
        _fail_or_skip(reason)


def connect() -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection as the superuser, for setting up and inspecting."""
    return psycopg.connect(DSN, autocommit=True)


@dataclass(frozen=True)
class Scratch:
    """A scratch schema holding ``orders`` (ROWS rows) and a function that deletes them."""

    schema: str

    @property
    def orders(self) -> str:
        """The table's qualified name, for queries in configs."""
        return f"{self.schema}.orders"

    def select(self, where: str) -> str:
        """``SELECT * FROM <schema>.orders <where>``."""
        return f"SELECT * FROM {self.orders} {where}"  # noqa: S608 - a scratch schema's name

    @property
    def purge(self) -> str:
        """A function that deletes every order: a write hidden behind a SELECT."""
        return f"{self.schema}.purge"

    def fingerprint(self) -> tuple[int, int]:
        """``(row count, checksum of every row)``: equal before and after means untouched."""
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(hashtext(id || ':' || customer_id || ':' || note)), 0)"
            " FROM {}.orders"
        ).format(sql.Identifier(self.schema))
        with connect() as connection:
            row = connection.execute(query).fetchone()
        assert row is not None
        return int(str(row[0])), int(str(row[1]))

    def reads(self) -> int:
        """Blocks of ``orders`` and its indexes read or found in cache, and scans, so far."""
        with connect() as connection:
            connection.execute("SELECT pg_stat_clear_snapshot()")
            row = connection.execute(
                "SELECT coalesce(s.heap_blks_read, 0) + coalesce(s.heap_blks_hit, 0)"
                " + coalesce(s.idx_blks_read, 0) + coalesce(s.idx_blks_hit, 0)"
                " + coalesce(t.seq_scan, 0) + coalesce(t.idx_scan, 0)"
                " FROM pg_statio_user_tables s JOIN pg_stat_user_tables t USING (relid)"
                " WHERE s.schemaname = %s AND s.relname = 'orders'",
                (self.schema,),
            ).fetchone()
        return 0 if row is None else int(str(row[0]))

    def transactions(self) -> int:
        """Transactions committed plus rolled back in the test database so far."""
        with connect() as connection:
            connection.execute("SELECT pg_stat_clear_snapshot()")
            row = connection.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                (DATABASE,),
            ).fetchone()
        return 0 if row is None else int(str(row[0]))


@contextmanager
def scratch_schema(rows: int = ROWS) -> Iterator[Scratch]:
    """Create a uniquely named schema with an ``orders`` table of ``rows`` rows; drop it after."""
    scratch = Scratch(f"warmgate_test_{secrets.token_hex(4)}")
    schema = sql.Identifier(scratch.schema)
    with connect() as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        try:
            connection.execute(
                sql.SQL(
                    "CREATE TABLE {}.orders (id bigint PRIMARY KEY, customer_id int NOT NULL,"
                    " amount numeric(10, 2) NOT NULL, placed date NOT NULL, note text NOT NULL)"
                ).format(schema)
            )
            connection.execute(
                sql.SQL(
                    "INSERT INTO {}.orders SELECT g, 1 + g %% %s, (g %% 1000) / 10.0,"
                    " date '2024-01-01' + g %% 365, md5(g::text) FROM generate_series(1, %s) g"
                ).format(schema),
                (CUSTOMERS, rows),
            )
            connection.execute(sql.SQL("CREATE INDEX ON {}.orders (customer_id)").format(schema))
            connection.execute(sql.SQL("ANALYZE {}.orders").format(schema))
            connection.execute(
                sql.SQL(
                    "CREATE FUNCTION {}.purge() RETURNS bigint LANGUAGE plpgsql AS"
                    " $$ BEGIN DELETE FROM {}.orders; RETURN 0; END $$"
                ).format(schema, schema)
            )
            yield scratch
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


@contextmanager
def login_role(scratch: Scratch, password: str) -> Iterator[str]:
    """A role that logs in with ``password`` and may read the scratch table; dropped after."""
    role = f"warmgate_app_{secrets.token_hex(4)}"
    name, schema = sql.Identifier(role), sql.Identifier(scratch.schema)
    with connect() as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(name, sql.Literal(password))
        )
        try:
            connection.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, name))
            connection.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, name)
            )
            yield role
        finally:
            connection.execute(sql.SQL("DROP OWNED BY {}").format(name))
            connection.execute(sql.SQL("DROP ROLE {}").format(name))


def connections_named(application_name: str) -> int:
    """Connections open to the server right now with this ``application_name``."""
    with connect() as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return 0 if row is None else int(str(row[0]))


def _fail_or_skip(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_VARIABLE}=1 says these tests must run")
    pytest.skip(f"{reason}; set {REQUIRE_VARIABLE}=1 to make this a failure")


@contextmanager
def password_role(password: str, *grants: str) -> Iterator[str]:
    """A role that must log in with ``password``, granted each SQL of ``grants`` (``{role}``
    stands for its name, already quoted); dropped after with what it owns."""
    role = f"warmgate_pw_{secrets.token_hex(4)}"
    name = sql.Identifier(role)
    with connect() as connection:
        connection.execute(
            "DO $$ BEGIN CREATE ROLE " + SCRAM_GROUP + " NOLOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                name, sql.Literal(password), sql.Identifier(SCRAM_GROUP)
            )
        )
        try:
            for grant in grants:
                connection.execute(sql.SQL(grant).format(role=name))
            yield role
        finally:
            connection.execute(sql.SQL("DROP OWNED BY {}").format(name))
            connection.execute(sql.SQL("DROP ROLE {}").format(name))


def require_password_auth(role: str) -> None:
    """Skip (or fail, when required) unless the server refuses ``role`` a wrong password."""
    dsn = f"host={HOST} port={PORT} user={role} dbname={DATABASE} connect_timeout=3"
    try:
        with psycopg.connect(f"{dsn} password=certainly-not-it"):
            pass
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            return
        raise
    _fail_or_skip(
        f"the server let {role} in with a wrong password; put '{HBA_LINE}' above the trust "
        "lines of pg_hba.conf and reload (.ci/run does)"
    )


def require_extension(connection: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Skip (or fail, when required) unless the server can install extension ``name``."""
    row = connection.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)
    ).fetchone()
    if row is None:
        _fail_or_skip(f"the server does not provide {name} (Debian: postgresql-contrib)")


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, empty database; its name. Dropped after, with its connections."""
    database = f"warmgate_test_{secrets.token_hex(4)}"
    with connect() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        yield database
    finally:
        with connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
            )


def connect_to(database: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to ``database`` as the superuser."""
    return psycopg.connect(DSN.replace(f"dbname={DATABASE}", f"dbname={database}"), autocommit=True)
