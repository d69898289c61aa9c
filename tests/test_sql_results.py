"""What a warm-up query leaves behind on its pooled connection (nothing), and how much of its
answer is held (a chunk at a time, up to the row cap), against SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.helpers import cli_env
from tests.test_sql_driver import backends, plan_for, unchecked
from warmgate.decide.outcomes import OK, UNEXPECTED_STATUS, WRITE_REJECTED
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan, open_pool

MANY = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
    "SELECT x FROM c",
    "postgres": "SELECT g FROM generate_series(1, 200000) g",
}
"""200,000 rows, in each database's own words."""


def run_on_one_connection(plans: list[SqlPlan]) -> tuple[list[Any], list[str]]:
    """Each plan's query in turn on a pool of one connection, through one driver per distinct
    plan; outcomes and warnings."""
    warnings: list[str] = []

    async def scenario() -> list[Any]:
        pool = open_pool(plans[0], 1)
        drivers = {id(plan): SqlDriver("db", plan, pool, warnings.append) for plan in plans}
        try:
            return [await drivers[id(plan)].execute() for plan in plans]
        finally:
            await pool.aclose()

    return asyncio.run(scenario()), warnings


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("leftover", "left_outcome", "gone"),
    [
        ("SELECT pg_advisory_lock(4242)", OK,
         "NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"),
        ("PREPARE warmgate_left AS SELECT 1", OK,
         "NOT EXISTS (SELECT 1 FROM pg_prepared_statements)"),
        ("SELECT set_config('work_mem', '7MB', false)", OK, "current_setting('work_mem') <> '7MB'"),
        ("CREATE TEMP TABLE warmgate_left (x int)", WRITE_REJECTED,
         "to_regclass('pg_temp.warmgate_left') IS NULL"),
    ],
)  # fmt: skip
def test_nothing_a_query_leaves_in_the_session_survives_it(
    orders: pg.Scratch, leftover: str, left_outcome: str, gone: str
) -> None:
    """Advisory locks, prepared statements, settings and temporary tables of one query are gone
    before the next query on the same connection."""
    name = f"wg_reset_{orders.schema}"
    url = f"{pg.URL}?application_name={name}"
    outcomes, _ = run_on_one_connection(
        [
            unchecked(url, leftover),
            # The same backend, and what the first query left is gone.
            plan_for(url, f"SELECT pg_backend_pid() WHERE {gone}", rows={"min": 1, "max": 1}),
        ]
    )
    assert [outcome.outcome for outcome in outcomes] == [left_outcome, OK]


@pytest.mark.postgres
def test_the_pool_keeps_its_connection_across_the_reset(orders: pg.Scratch) -> None:
    """The reset keeps the connection: the next query runs on the same backend."""
    name = f"wg_kept_{orders.schema}"
    url = f"{pg.URL}?application_name={name}"

    async def scenario() -> tuple[list[tuple[int, str]], Any]:
        pool = open_pool(plan_for(url, "SELECT 1"), 1)
        try:
            await SqlDriver("db", unchecked(url, "SELECT pg_advisory_lock(4243)"), pool).execute()
            first = await asyncio.to_thread(backends, name)
            same = f"SELECT 1 WHERE pg_backend_pid() = {first[0][0]}"
            return first, await SqlDriver(
                "db", plan_for(url, same, rows={"min": 1}), pool
            ).execute()
        finally:
            await pool.aclose()

    first, outcome = asyncio.run(scenario())
    assert len(first) == 1
    assert outcome.outcome == OK


@pytest.mark.postgres
def test_another_session_can_take_the_lock_a_query_took(orders: pg.Scratch) -> None:
    """An advisory lock taken by a warm-up query is free for the app as soon as it ends."""
    key = 4000 + int(orders.schema[-4:], 16) % 1000

    async def scenario() -> bool:
        pool = open_pool(plan_for(pg.URL, "SELECT 1"), 1)
        try:
            taker = SqlDriver("db", unchecked(pg.URL, f"SELECT pg_advisory_lock({key})"), pool)
            await taker.execute()
            return await asyncio.to_thread(try_lock, key)
        finally:
            await pool.aclose()

    assert asyncio.run(scenario()) is True


def try_lock(key: int) -> bool:
    """Whether a new session gets advisory lock ``key`` at once (released again)."""
    with pg.connect() as connection:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        connection.execute("SELECT pg_advisory_unlock_all()")
    return row is not None and row[0] is True


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file with one small table, as a URL."""
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x INT)")
    connection.close()
    return f"sqlite:///{path}"


PEAK = """
import asyncio, sys
from warmgate.config.sql_target import SqlTarget
from warmgate.traffic.sql.driver import SqlPlan, open_pool
from warmgate.traffic.templating import Templates


def high_water_mark():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024


async def main(url, query):
    target = SqlTarget(url=url, query=query)
    pool = open_pool(SqlPlan.compile(target, Templates(), "t", "db"), 1)
    try:
        await pool.rows("SELECT 1", {}, 60, 10)  # imports and the connection, before measuring
        before = high_water_mark()
        count = (await pool.rows(query, {}, 60, 2_000_000)).rows
        print(count, high_water_mark() - before)
    finally:
        await pool.aclose()


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
"""Counts the rows of one query in a fresh interpreter; prints the count and how much the
process's peak memory grew meanwhile (libpq's own memory included, which tracemalloc misses)."""


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_large_result_is_counted_a_chunk_at_a_time(sqlite_url: str, database: str) -> None:
    """A million rows (about 70 MB) are counted exactly while the process grows by under 16 MiB."""
    if database == "postgres":
        pg.require_postgres()
        url, query = pg.URL, "SELECT g, repeat('x', 60) FROM generate_series(1, 1000000) g"
    else:
        url = sqlite_url
        query = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000) "
            "SELECT x, substr(hex(zeroblob(30)), 1, 60) FROM c"
        )
    result = subprocess.run(
        [sys.executable, "-c", PEAK, url, query],
        capture_output=True, text=True, timeout=120, check=True, env=cli_env(),
    )  # fmt: skip
    count, growth = (int(field) for field in result.stdout.split())
    assert count == 1_000_000
    assert growth < 16 * 2**20


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_past_the_row_cap_reading_stops_with_one_warning(sqlite_url: str, database: str) -> None:
    """A result longer than row_cap is read up to the cap and warned about once per target;
    rows.max still judges it; the next query on the pool runs normally."""
    url = sqlite_url if database == "sqlite" else pg.URL
    if database == "postgres":
        pg.require_postgres()
    capped = plan_for(url, MANY[database], row_cap=1000)
    judged = plan_for(url, MANY[database], row_cap=1000, rows={"min": 1, "max": 1000})
    small = plan_for(url, "SELECT 1", rows={"min": 1, "max": 1})
    outcomes, warnings = run_on_one_connection([capped, capped, judged, small])
    assert [outcome.outcome for outcome in outcomes] == [OK, OK, UNEXPECTED_STATUS, OK]
    assert outcomes[2].detail == "returned more than 1000 rows; expected 1 to 1000 rows"
    warning = (
        "target 'db': the query returned more than 1000 rows; warmgate stops reading there, "
        "which stops the query (on PostgreSQL and MySQL by closing its connection): add a LIMIT to the "
        "query, or raise row_cap."
    )
    assert warnings == [warning, warning]
