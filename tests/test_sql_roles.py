"""What the database role may do, against the real PostgreSQL: the start-up check of its
privileges, passwords that really are checked, and what a read-only role stops that the
read-only transaction alone does not (dblink)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests import pg
from tests.helpers import run_cli
from tests.test_sql_driver import plan_for, unchecked
from warmgate.decide.outcomes import CONNECTION_ERROR, ERROR, OK
from warmgate.decide.reach import Down, Reach
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan

PASSWORD = "pw-Only-4-tests"  # noqa: S105 - a test role's password
"""The password of the roles made here; never shown by warmgate."""
READ = (
    "GRANT USAGE ON SCHEMA {schema} TO {{role}}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {{role}}",
)
"""What a read-only role is granted on the scratch schema."""

pytestmark = pytest.mark.postgres


def url_of(role: str, password: str = PASSWORD, database: str = pg.DATABASE) -> str:
    """The SQLAlchemy URL of ``role`` logging in with ``password``."""
    return f"postgresql+psycopg://{role}:{password}@{pg.HOST}:{pg.PORT}/{database}"


def grants(scratch: pg.Scratch, *extra: str) -> tuple[str, ...]:
    """The read-only grants on ``scratch``, then ``extra``, as pg.password_role takes them."""
    schema = sql.Identifier(scratch.schema).as_string()
    return tuple(grant.format(schema=schema) for grant in (*READ, *extra))


def probe_once(plan: SqlPlan) -> tuple[Down | None, list[str]]:
    """Open a driver, probe it once, close it; the probe's answer and the warnings it gave."""
    warnings: list[str] = []

    async def scenario() -> Down | None:
        driver = SqlDriver.open("orders-db", plan, 1, warnings.append)
        try:
            return await driver.probe()
        finally:
            await driver.aclose()

    return asyncio.run(scenario()), warnings


def run_once(plan: SqlPlan) -> Any:
    """One query through a fresh driver; its outcome."""

    async def scenario() -> Any:
        driver = SqlDriver.open("db", plan, 1)
        try:
            return await driver.execute()
        finally:
            await driver.aclose()

    return asyncio.run(scenario())


def write_access(url: str) -> str | None:
    """What the role of ``url`` may write, as the start-up check says it."""

    async def scenario() -> str | None:
        from warmgate.traffic.sql.postgres import PostgresPool

        pool = PostgresPool(plan_for(url, "SELECT 1").url, 1, wait=5)
        try:
            return await pool.write_access()
        finally:
            await pool.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), None),
        (
            ("GRANT INSERT ON {schema}.orders TO {{role}}",),
            "may INSERT, UPDATE, DELETE or TRUNCATE",
        ),
        (("GRANT UPDATE (note) ON {schema}.orders TO {{role}}",), "may INSERT, UPDATE"),
        (("GRANT CREATE ON SCHEMA {schema} TO {{role}}",), "may CREATE tables in schema"),
    ],
)
def test_the_start_up_check_sees_what_a_role_may_write(
    orders: pg.Scratch, extra: tuple[str, ...], expected: str | None
) -> None:
    """A role granted only SELECT can only read; INSERT, a column's UPDATE or CREATE can write."""
    with pg.password_role(PASSWORD, *grants(orders, *extra)) as role:
        access = write_access(url_of(role))
    if expected is None:
        assert access is None
    else:
        assert access is not None
        assert access.startswith(f"{role} {expected}")
        assert orders.schema in access


def test_a_superuser_can_write() -> None:
    """The superuser is reported as one."""
    pg.require_postgres()
    assert write_access(pg.URL) == "postgres is a superuser"


def test_a_role_that_can_write_is_a_warning_or_refused(orders: pg.Scratch) -> None:
    """The first probe warns once about a role that can write, or refuses it when the target
    requires a read-only role; a read-only role passes silently."""
    with pg.password_role(PASSWORD, *grants(orders)) as reader:
        assert probe_once(plan_for(url_of(reader), "SELECT 1")) == (None, [])
    probe, warnings = probe_once(plan_for(pg.URL, "SELECT 1"))
    assert probe is None
    [warning] = warnings
    assert warning.startswith("target 'orders-db': the database role postgres is a superuser.")
    assert "require_read_only_role: true" in warning
    with pytest.raises(ConfigError) as refused:
        probe_once(plan_for(pg.URL, "SELECT 1", require_read_only_role=True))
    assert str(refused.value) == (
        "target 'orders-db': the database role postgres is a superuser, and "
        "require_read_only_role is true; connect as a role that can only read (docs/sql.md, "
        '"A read-only role"), or set require_read_only_role: false to only warn.'
    )


def test_a_wrong_password_fails_and_is_never_shown(orders: pg.Scratch) -> None:
    """With a password role, a wrong password is a reason in the wait phase without the
    password; the right one connects and queries."""
    with pg.password_role(PASSWORD, *grants(orders)) as role:
        pg.require_password_auth(role)
        wrong = plan_for(url_of(role, "Wrong-pw-99"), orders.select("WHERE id = 1"))
        probe, _ = probe_once(wrong)
        outcome = run_once(wrong)
        right = plan_for(url_of(role), orders.select("WHERE id = 1"), rows={"min": 1, "max": 1})
        right_probe, warnings = probe_once(right)
        answered = run_once(right)
    assert probe == Down(
        Reach.UNREACHABLE, f"{pg.HOST}:{pg.PORT}: password authentication failed for user {role}"
    )
    assert (outcome.outcome, outcome.detail) == (
        CONNECTION_ERROR, f"password authentication failed for user {role}"
    )  # fmt: skip
    assert "Wrong-pw-99" not in repr(wrong) + probe.reason + outcome.detail
    assert (right_probe, warnings, answered.outcome) == (None, [], OK)


@pytest.fixture(scope="module")
def dblink_db() -> Iterator[str]:
    """A scratch database with dblink installed and a table ``victim`` of 10 rows."""
    pg.require_postgres()
    with pg.scratch_database() as database:
        with pg.connect_to(database) as connection:
            pg.require_extension(connection, "dblink")
            connection.execute("CREATE EXTENSION dblink")
            connection.execute(
                "CREATE TABLE victim AS SELECT g AS id FROM generate_series(1, 10) g"
            )
        yield database


def victims(database: str) -> int:
    """Rows left in ``victim``."""
    with pg.connect_to(database) as connection:
        row = connection.execute("SELECT count(*) FROM victim").fetchone()
    assert row is not None
    return int(str(row[0]))


def test_dblink_escapes_the_read_only_transaction_so_it_is_refused_by_name(dblink_db: str) -> None:
    """dblink_exec writes and commits on a connection of its own whatever warmgate's
    transaction says, which is why the start-up check refuses it by name."""
    remote = f"host={pg.HOST} port={pg.PORT} user=postgres dbname={dblink_db}"
    query = f"SELECT dblink_exec('{remote}', 'DELETE FROM victim WHERE id = 1')"  # noqa: S608 - a scratch database
    url = f"postgresql+psycopg://postgres@{pg.HOST}:{pg.PORT}/{dblink_db}"
    assert run_once(unchecked(url, query)).outcome == OK
    assert victims(dblink_db) == 9
    with pytest.raises(ConfigError, match="calls dblink_exec, which opens a connection of its own"):
        plan_for(url, query)


def test_a_read_only_role_holds_where_a_function_hides_dblink(dblink_db: str) -> None:
    """A function that calls dblink passes the check by name; run as a read-only role, its
    write is refused on the other connection too, and the table is untouched."""
    before = victims(dblink_db)
    with pg.password_role(PASSWORD) as role:
        pg.require_password_auth(role)
        with pg.connect_to(dblink_db) as connection:
            for grant in (
                "GRANT SELECT ON victim TO {role}",
                "GRANT EXECUTE ON FUNCTION dblink_exec(text, text) TO {role}",
            ):
                connection.execute(sql.SQL(grant).format(role=sql.Identifier(role)))
            connection.execute(
                sql.SQL(
                    "CREATE FUNCTION tidy() RETURNS text LANGUAGE sql AS $$ SELECT dblink_exec("
                    "{}, 'DELETE FROM victim') $$"
                ).format(
                    sql.Literal(
                        f"host={pg.HOST} port={pg.PORT} dbname={dblink_db} user={role} "
                        f"password={PASSWORD}"
                    )
                )
            )
        try:
            plan = plan_for(url_of(role, database=dblink_db), "SELECT tidy()")
            access = write_access(url_of(role, database=dblink_db))
            outcome = run_once(plan)
        finally:
            with pg.connect_to(dblink_db) as connection:
                connection.execute("DROP FUNCTION tidy()")
                connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    assert access is None
    assert (outcome.outcome, outcome.detail) == (ERROR, "permission denied for table victim")
    assert victims(dblink_db) == before


@pytest.mark.slow
def test_prime_refuses_a_writing_role_when_a_read_only_one_is_required(tmp_path: Path) -> None:
    """`warmgate prime` as a superuser with require_read_only_role: true exits 2 with the
    sentence, before any warm-up traffic."""
    pg.require_postgres()
    config = tmp_path / "warmup.yaml"
    config.write_text(
        "targets:\n"
        "  - name: orders-db\n"
        f"    sql: {{url: '{pg.URL}', query: SELECT 1, require_read_only_role: true}}\n"
        "gate: {window: 2s, hold: 1s, min_requests: 5, timeout: 20s}\n"
    )
    result = run_cli("prime", "--config", str(config), timeout=60)
    assert result.returncode == 2
    assert "the database role postgres is a superuser, and require_read_only_role is true" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
