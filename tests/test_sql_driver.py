"""The SQL driver against real databases: SQLite files and the PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import sqlite3
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import pg
from tests.helpers import poll
from warmgate.config.sql_target import SqlTarget
from warmgate.decide.outcomes import (
    CONNECTION_ERROR,
    ERROR,
    OK,
    TIMEOUT,
    UNEXPECTED_STATUS,
    WRITE_REJECTED,
)
from warmgate.decide.reach import Down, Reach
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan, open_pool
from warmgate.traffic.templating import Templates

SLOW_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000000) "
    "SELECT count(*) FROM c"
)
"""A read that keeps SQLite busy for many seconds."""


def plan_for(url: str, query: str, params: dict[str, str] | None = None, **fields: Any) -> SqlPlan:
    """The checked plan of one SQL target."""
    target = SqlTarget(url=url, query=query, params=params or {}, **fields)
    return SqlPlan.compile(target, Templates(), "targets[0].sql", "db")


def unchecked(url: str, query: str) -> SqlPlan:
    """A plan whose write slipped past the start-up check: only the database stands guard."""
    return dataclasses.replace(plan_for(url, "SELECT 1"), query=query)


def execute_many(plan: SqlPlan, count: int, concurrency: int = 4) -> tuple[list[Any], str | None]:
    """Open a driver, run ``count`` queries ``concurrency`` at a time, close; outcomes, probe."""

    async def scenario() -> tuple[list[Any], str | None]:
        driver = SqlDriver.open("db", plan, concurrency)
        try:
            probe = await driver.probe()
            remaining = list(range(count))
            outcomes = []

            async def worker() -> None:
                while remaining:
                    remaining.pop()
                    outcomes.append(await driver.execute())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return outcomes, probe
        finally:
            await driver.aclose()

    return asyncio.run(scenario())


@pytest.fixture
def orders_db(tmp_path: Path) -> Path:
    """A SQLite file with 1000 orders."""
    path = tmp_path / "orders.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INT, note TEXT)"
        )
        connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 100, f"n{i}") for i in range(1, 1001)]
        )
    connection.close()
    return path


def sqlite_fingerprint(path: Path) -> tuple[int, int]:
    """``(rows, sum of ids)`` of the orders table."""
    connection = sqlite3.connect(path)
    try:
        count, total = connection.execute("SELECT count(*), sum(id) FROM orders").fetchone()
    finally:
        connection.close()
    return int(count), int(total or 0)


def test_sqlite_queries_with_rendered_params(orders_db: Path) -> None:
    """Each request renders its params; rows within the expected range are a success."""
    plan = plan_for(
        f"sqlite:///{orders_db}",
        "SELECT * FROM orders WHERE customer_id = :cid LIMIT :n",
        {"cid": "{{ randint(0, 99) }}", "n": "5"},
        rows={"min": 5, "max": 5},
    )
    outcomes, probe = execute_many(plan, 40)
    assert probe is None
    assert [outcome.outcome for outcome in outcomes] == [OK] * 40


def test_rows_outside_the_range_fail(orders_db: Path) -> None:
    """Too few or too many rows is a failure with a clear detail."""
    few = plan_for(f"sqlite:///{orders_db}", "SELECT * FROM orders WHERE id < 0", rows={"min": 1})
    (outcome,), _ = execute_many(few, 1, 1)
    assert (outcome.outcome, outcome.detail) == (
        UNEXPECTED_STATUS, "returned 0 rows; expected at least 1 row"
    )  # fmt: skip
    many = plan_for(f"sqlite:///{orders_db}", "SELECT * FROM orders", rows={"min": 1, "max": 10})
    (outcome,), _ = execute_many(many, 1, 1)
    assert (outcome.outcome, outcome.detail) == (
        UNEXPECTED_STATUS, "returned 1000 rows; expected 1 to 10 rows"
    )  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM orders",
        "UPDATE orders SET note = 'x'",
        "INSERT INTO orders VALUES (5000, 1, 'x')",
        "DROP TABLE orders",
        "CREATE TABLE other (x INT)",
    ],
)
def test_sqlite_refuses_writes(orders_db: Path, query: str) -> None:
    """A write that slipped past the check is refused by SQLite; the data is untouched."""
    before = sqlite_fingerprint(orders_db)
    outcomes, _ = execute_many(unchecked(f"sqlite:///{orders_db}", query), 3, 1)
    assert {outcome.outcome for outcome in outcomes} == {WRITE_REJECTED}
    assert (
        outcomes[0].detail == "the database refused a write: attempt to write a readonly database"
    )
    assert sqlite_fingerprint(orders_db) == before


def run_in_order(plans: list[SqlPlan]) -> list[Any]:
    """Run one query of each plan in turn over a single pooled connection."""

    async def scenario() -> list[Any]:
        pool = open_pool(plans[0], 1)
        try:
            return [await SqlDriver("db", plan, pool).execute() for plan in plans]
        finally:
            await pool.aclose()

    return asyncio.run(scenario())


def test_sqlite_stays_read_only_when_a_query_turns_query_only_off(orders_db: Path) -> None:
    """The file is opened read-only: lifting PRAGMA query_only on the connection changes nothing."""
    url = f"sqlite:///{orders_db}"
    before = sqlite_fingerprint(orders_db)
    lifted, deleted = run_in_order(
        [unchecked(url, "PRAGMA query_only = OFF"), unchecked(url, "DELETE FROM orders")]
    )
    assert lifted.outcome == OK
    assert deleted.outcome == WRITE_REJECTED
    assert sqlite_fingerprint(orders_db) == before


async def while_ticking(work: Coroutine[Any, Any, Any]) -> tuple[Any, float, int]:
    """``(result, seconds, ticks)``: await ``work`` while a task ticks every 5 ms; ``ticks`` is
    how many ticks ran before ``work`` returned."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)  # the ticker's period, not a synchronisation
            ticks += 1

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        result = await work
    finally:
        seen = ticks
        tick.cancel()
    return result, time.monotonic() - started, seen


def test_sqlite_is_interrupted_at_the_deadline_without_blocking_the_loop(
    orders_db: Path,
) -> None:
    """A slow SQLite query stops at the timeout, which only a free event loop can fire."""

    async def scenario() -> tuple[Any, float, int, Any]:
        driver = SqlDriver.open(
            "db", plan_for(f"sqlite:///{orders_db}", SLOW_SQLITE, timeout="300ms"), 2
        )
        outcome, elapsed, ticks = await while_ticking(driver.execute())
        after = await driver.probe()
        await driver.aclose()
        return outcome, elapsed, ticks, after

    outcome, elapsed, ticks, probe = asyncio.run(scenario())
    # The interrupt is a timer on the event loop: had the query held the loop, it would have run
    # its many seconds to the end and succeeded. The 5 ms ticks are timers due before it.
    assert (outcome.outcome, outcome.detail) == (TIMEOUT, "statement timeout")
    assert elapsed >= 0.3
    assert ticks >= 1
    assert probe is None


def test_missing_sqlite_file_is_the_wait_phase(tmp_path: Path) -> None:
    """Until the file exists the probe says why and queries fail softly; then all is well."""
    path = tmp_path / "later.db"
    plan = plan_for(f"sqlite:///{path}", "SELECT count(*) FROM t", rows={"min": 1, "max": 1})

    async def scenario() -> tuple[str | None, Any, str | None, Any]:
        driver = SqlDriver.open("db", plan, 2)
        try:
            down, failed = await driver.probe(), await driver.execute()
            with sqlite3.connect(path) as connection:
                connection.execute("CREATE TABLE t (x INT)")
            connection.close()
            return down, failed, await driver.probe(), await driver.execute()
        finally:
            await driver.aclose()

    down, failed, up, ok = asyncio.run(scenario())
    assert down == Down(Reach.UNREACHABLE, f"{path}: cannot open the database file")
    assert (failed.outcome, failed.detail) == (CONNECTION_ERROR, "cannot open the database file")
    assert up is None
    assert ok.outcome == OK


@pytest.mark.postgres
def test_priming_does_real_work_in_postgres(orders: pg.Scratch) -> None:
    """Queries by key at concurrency 8 succeed and move the server's own counters."""
    reads, transactions = orders.reads(), orders.transactions()
    plan = plan_for(
        pg.URL,
        orders.select("WHERE customer_id = :cid"),
        {"cid": f"{{{{ randint(1, {pg.CUSTOMERS}) }}}}"},
        rows={"min": 1, "max": 100},
    )
    outcomes, probe = execute_many(plan, 400, concurrency=8)
    assert probe is None
    assert {outcome.outcome for outcome in outcomes} == {OK}
    # Backends report their statistics shortly after going idle; poll for them.
    poll(lambda: orders.reads() >= reads + 400, timeout=10, what="pg_statio_user_tables to move")
    poll(
        lambda: orders.transactions() >= transactions + 400,
        timeout=10,
        what="pg_stat_database.xact_rollback to move",
    )


@pytest.mark.postgres
def test_each_query_runs_read_only_with_a_server_side_timeout(orders: pg.Scratch) -> None:
    """Inside the query's transaction: read only, statement_timeout set, marked as warmgate."""
    plan = plan_for(
        pg.URL,
        "SELECT 1 WHERE current_setting('transaction_read_only') = 'on'"
        " AND current_setting('statement_timeout') = '1500ms'"
        " AND current_setting('application_name') = 'warmgate'",
        timeout="1500ms",
        rows={"min": 1, "max": 1},
    )
    outcomes, _ = execute_many(plan, 3, 1)
    assert [outcome.outcome for outcome in outcomes] == [OK] * 3


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "refused"),
    [
        ("DELETE FROM {orders}", "cannot execute DELETE in a read-only transaction"),
        ("UPDATE {orders} SET note = 'x'", "cannot execute UPDATE in a read-only transaction"),
        ("TRUNCATE {orders}", "cannot execute TRUNCATE TABLE in a read-only transaction"),
        ("DROP TABLE {orders}", "cannot execute DROP TABLE in a read-only transaction"),
        ("SELECT {purge}()", "cannot execute DELETE in a read-only transaction"),
        ("SELECT * FROM {orders} WHERE id = 1 FOR UPDATE", "cannot execute SELECT FOR UPDATE"),
    ],
)
def test_postgres_refuses_writes(orders: pg.Scratch, query: str, refused: str) -> None:
    """A write that slipped past the check is refused by PostgreSQL; the table is untouched."""
    before = orders.fingerprint()
    sql = query.format(orders=orders.orders, purge=orders.purge)
    outcomes, _ = execute_many(unchecked(pg.URL, sql), 4, 2)
    assert {outcome.outcome for outcome in outcomes} == {WRITE_REJECTED}
    assert outcomes[0].detail.startswith(f"the database refused a write: {refused}")
    assert orders.fingerprint() == before == (pg.ROWS, before[1])


@pytest.mark.postgres
@pytest.mark.parametrize(
    "tamper",
    [
        "SELECT set_config('default_transaction_read_only', 'off', false),"
        " set_config('statement_timeout', '0', false)",
        "SET default_transaction_read_only = off",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET transaction_read_only = off",
        "BEGIN READ WRITE",
        "COMMIT",
        "COMMIT AND CHAIN",
    ],
)
def test_postgres_stays_read_only_whatever_a_query_did_before(
    orders: pg.Scratch, tamper: str
) -> None:
    """A query that changes session defaults or ends its transaction cannot make the next
    query on the same connection writable."""
    before = orders.fingerprint()
    delete = unchecked(pg.URL, f"DELETE FROM {orders.orders}")  # noqa: S608 - scratch schema
    tampered, deleted = run_in_order([unchecked(pg.URL, tamper), delete])
    assert tampered.outcome == OK
    assert (deleted.outcome, deleted.detail) == (
        WRITE_REJECTED,
        "the database refused a write: cannot execute DELETE in a read-only transaction",
    )
    assert orders.fingerprint() == before


@pytest.mark.postgres
def test_postgres_refuses_a_second_statement_before_running_any(orders: pg.Scratch) -> None:
    """A query carrying a second statement is refused whole: neither statement runs."""
    before = orders.fingerprint()
    smuggled = unchecked(pg.URL, f"SELECT 1; COMMIT; DELETE FROM {orders.orders}")  # noqa: S608
    (outcome,), _ = execute_many(smuggled, 1, 1)
    assert (outcome.outcome, outcome.detail) == (
        ERROR,
        "cannot insert multiple commands into a prepared statement",
    )
    assert orders.fingerprint() == before


@pytest.mark.postgres
def test_postgres_timeout_holds_when_a_query_lifts_the_session_timeout(
    orders: pg.Scratch,
) -> None:
    """Each transaction sets its own statement_timeout, so the server still cancels a slow
    query after an earlier one set the session's timeout to 0."""
    lift = unchecked(pg.URL, "SET statement_timeout = 0")
    slow = plan_for(pg.URL, "SELECT pg_sleep(5)", timeout="200ms")
    lifted, cancelled = run_in_order([lift, slow])
    assert lifted.outcome == OK
    assert (cancelled.outcome, cancelled.detail) == (TIMEOUT, "statement timeout")


def backends(application_name: str) -> list[tuple[int, str]]:
    """``(pid, state)`` of the server's connections with this ``application_name``."""
    with pg.connect() as connection:
        rows = connection.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return [(int(str(pid)), str(state)) for pid, state in rows]


@pytest.mark.postgres
def test_postgres_connection_is_rolled_back_and_reused_after_failures(
    orders: pg.Scratch,
) -> None:
    """After a refused write and a statement timeout the pooled connection is idle (rolled
    back, not left in an aborted transaction) and serves the next query itself."""
    name = f"wg_reuse_{orders.schema}"
    url = f"{pg.URL}?application_name={name}"

    async def scenario() -> tuple[list[Any], list[tuple[int, str]], list[tuple[int, str]]]:
        pool = open_pool(plan_for(url, "SELECT 1"), 1)
        try:
            outcomes = [await SqlDriver("db", plan_for(url, "SELECT 1"), pool).execute()]
            first = await asyncio.to_thread(backends, name)
            pid = first[0][0]
            plans = [
                unchecked(url, f"DELETE FROM {orders.orders}"),  # noqa: S608 - scratch schema
                plan_for(url, "SELECT pg_sleep(5)", timeout="200ms"),
                plan_for(url, f"SELECT 1 WHERE pg_backend_pid() = {pid}", rows={"min": 1}),
            ]
            outcomes += [await SqlDriver("db", plan, pool).execute() for plan in plans]
            return outcomes, first, await asyncio.to_thread(backends, name)
        finally:
            await pool.aclose()

    outcomes, first, last = asyncio.run(scenario())
    assert [outcome.outcome for outcome in outcomes] == [OK, WRITE_REJECTED, TIMEOUT, OK]
    assert len(first) == 1
    assert last == [(first[0][0], "idle")]


@pytest.mark.postgres
def test_postgres_replaces_a_connection_the_server_closed(orders: pg.Scratch) -> None:
    """A pooled connection the server terminated fails one query as a connection error; the
    next query opens a new connection and succeeds."""
    name = f"wg_closed_{orders.schema}"
    plan = plan_for(f"{pg.URL}?application_name={name}", "SELECT 1", rows={"min": 1, "max": 1})

    def terminate() -> None:
        with pg.connect() as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )
        poll(lambda: not backends(name), timeout=5, what="the backend to exit")

    async def scenario() -> list[Any]:
        driver = SqlDriver.open("db", plan, 1)
        try:
            outcomes = [await driver.execute()]
            await asyncio.to_thread(terminate)
            outcomes.append(await driver.execute())
            outcomes.append(await driver.execute())
            return outcomes
        finally:
            await driver.aclose()

    ok, lost, again = asyncio.run(scenario())
    assert ok.outcome == OK
    assert (lost.outcome, lost.detail) == (CONNECTION_ERROR, "the server closed the connection")
    assert again.outcome == OK


@pytest.mark.postgres
def test_a_pooled_connection_the_server_closed_does_not_busy_the_event_loop(
    orders: pg.Scratch,
) -> None:
    """An idle pooled connection's socket stays watched between queries; when the server closes
    it, the event loop stops watching it instead of being woken again and again (which would
    burn a core until the next query), and the next queries still succeed."""
    name = f"wg_idle_{orders.schema}"
    plan = plan_for(f"{pg.URL}?application_name={name}", "SELECT 1", rows={"min": 1, "max": 1})

    def terminate() -> None:
        with pg.connect() as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )
        poll(lambda: not backends(name), timeout=5, what="the backend to exit")

    async def scenario() -> tuple[float, list[str]]:
        driver = SqlDriver.open("db", plan, 2)
        try:
            await asyncio.gather(driver.execute(), driver.execute())  # two pooled connections
            await asyncio.to_thread(terminate)
            cpu = time.process_time()
            await asyncio.sleep(1.0)  # the span observed, not a wait for anything
            idle_cpu = time.process_time() - cpu
            outcomes = [(await driver.execute()).outcome for _ in range(4)]
            return idle_cpu, outcomes
        finally:
            await driver.aclose()

    idle_cpu, outcomes = asyncio.run(scenario())
    # A loop woken by the closed sockets runs flat out (a second of CPU, or whatever share the
    # machine gives it); an idle one uses a few milliseconds.
    assert idle_cpu < 0.1, f"the event loop used {idle_cpu:.2f}s of CPU while idle"
    assert outcomes[-1] == OK
    assert outcomes.count(CONNECTION_ERROR) <= 2


@pytest.mark.postgres
def test_postgres_closes_a_connection_whose_query_was_abandoned(orders: pg.Scratch) -> None:
    """A query the client gives up on mid-way takes its connection with it: the pool never
    reuses a connection in an unknown state, and the next query opens a new one."""
    name = f"wg_abandoned_{orders.schema}"
    url = f"{pg.URL}?application_name={name}"

    def active() -> list[tuple[int, str]]:
        return [backend for backend in backends(name) if backend[1] == "active"]

    async def scenario() -> tuple[int, int, list[tuple[int, str]]]:
        pool = open_pool(plan_for(url, "SELECT 1"), 1)
        try:
            slow = asyncio.create_task(pool.rows("SELECT pg_sleep(1)", {}, 5.0, 10))
            ((pid, _),) = await asyncio.to_thread(poll, active, 5, what="the query to start")
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            await asyncio.to_thread(
                poll, lambda: pid not in dict(backends(name)), 5, what="the backend to exit"
            )
            rows = (await pool.rows("SELECT 1", {}, 5.0, 10)).rows
            return pid, rows, await asyncio.to_thread(backends, name)
        finally:
            await pool.aclose()

    pid, rows, now = asyncio.run(scenario())
    assert rows == 1
    assert len(now) == 1
    assert now[0][0] != pid


@pytest.mark.postgres
def test_postgres_queries_never_block_the_event_loop(orders: pg.Scratch) -> None:
    """A query waiting for a lock ends because the event loop, free meanwhile, releases it."""
    key = secrets.randbits(31)  # other checkouts may run this test on the same server
    plan = plan_for(
        pg.URL, f"SELECT pg_advisory_xact_lock_shared({key})", rows={"min": 1, "max": 1},
        timeout="20s",
    )  # fmt: skip
    waiting = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0"
        " AND objid::bigint = %s AND objsubid = 1 AND NOT granted)"
    )

    async def scenario() -> tuple[Any, bool]:
        holder = await psycopg.AsyncConnection.connect(pg.DSN, autocommit=True)
        driver = SqlDriver.open("db", plan, 1)
        try:
            await holder.execute("SELECT pg_advisory_lock(%s)", (key,))
            query = asyncio.create_task(driver.execute())
            async with asyncio.timeout(15):
                while True:
                    row = await (await holder.execute(waiting, (key,))).fetchone()
                    if row and row[0]:
                        break
                    await asyncio.sleep(0.01)  # polling the server, with the deadline above
            still_waiting = not query.done()
            await holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return await query, still_waiting
        finally:
            await driver.aclose()
            await holder.close()

    # Had the driver held the loop while its query ran, the lock would never be released here,
    # and the query would end at its 20 s statement timeout instead.
    outcome, still_waiting = asyncio.run(scenario())
    assert still_waiting
    assert outcome.outcome == OK


@pytest.mark.postgres
def test_integers_bind_as_the_smallest_integer_type(orders: pg.Scratch) -> None:
    """A rendered integer binds as smallint, integer or bigint by its size, as psycopg binds a
    Python int, so a query types its parameters as it does in an app using psycopg."""
    plan = plan_for(
        pg.URL,
        "SELECT 1 WHERE pg_typeof(:small)::text = 'smallint'"
        " AND pg_typeof(:medium)::text = 'integer' AND pg_typeof(:large)::text = 'bigint'",
        {"small": "-32768", "medium": "32768", "large": "2147483648"},
        rows={"min": 1, "max": 1},
    )
    outcomes, _ = execute_many(plan, 1, 1)
    assert [outcome.outcome for outcome in outcomes] == [OK]


@pytest.mark.postgres
def test_postgres_cancels_a_slow_statement_itself(orders: pg.Scratch) -> None:
    """statement_timeout cancels on the server; the pooled connection stays usable."""
    slow = plan_for(pg.URL, "SELECT pg_sleep(5)", timeout="200ms")

    async def scenario() -> tuple[Any, Any]:
        driver = SqlDriver.open("db", slow, 1)
        try:
            return await driver.execute(), await driver.probe()
        finally:
            await driver.aclose()

    # "statement timeout" is the server's cancel (SQLSTATE 57014); had the server let the
    # statement run on, the client's own deadline would have ended it as "timed out".
    outcome, probe = asyncio.run(scenario())
    assert (outcome.outcome, outcome.detail) == (TIMEOUT, "statement timeout")
    assert probe is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes and never says a word."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield int(listener.getsockname()[1])


def test_client_timeout_when_the_server_never_answers(silent_port: int) -> None:
    """A server that accepts and then says nothing is a timeout on the client's clock."""
    plan = plan_for(
        f"postgresql+psycopg://app@127.0.0.1:{silent_port}/x", "SELECT 1", timeout="200ms"
    )
    # The server never answers: only the client's own deadline can end the request.
    (outcome,), _ = asyncio.run(_execute_without_probe(plan))
    assert (outcome.outcome, outcome.detail) == (TIMEOUT, "timed out")


async def _execute_without_probe(plan: SqlPlan) -> tuple[list[Any], None]:
    driver = SqlDriver.open("db", plan, 1)
    try:
        return [await driver.execute()], None
    finally:
        await driver.aclose()


def free_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
def test_connection_failures_are_short_reasons_without_secrets(orders: pg.Scratch) -> None:
    """Refused ports and missing databases are reasons in the wait phase, never crashes; a
    refused port reads as refused (libpq says it only in words: the port is asked again), a
    missing database as unreachable."""
    planted = "planted-Pw-4417"
    port = free_port()
    refused = plan_for(f"postgresql+psycopg://app:{planted}@127.0.0.1:{port}/test", "SELECT 1")
    (outcome,), probe = execute_many(refused, 1, 1)
    assert probe == Down(Reach.REFUSED, f"127.0.0.1:{port}: connection refused")
    assert (outcome.outcome, outcome.detail) == (CONNECTION_ERROR, "connection refused")

    missing = plan_for(
        f"postgresql+psycopg://postgres:{planted}@127.0.0.1:5432/no_such_db_{orders.schema}",
        "SELECT 1",
    )
    (outcome,), probe = execute_many(missing, 1, 1)
    reason = f"database no_such_db_{orders.schema} does not exist"
    assert probe == Down(Reach.UNREACHABLE, f"127.0.0.1:5432: {reason}")
    assert (outcome.outcome, outcome.detail) == (CONNECTION_ERROR, reason)
    assert planted not in repr(refused) + repr(missing)


@pytest.mark.postgres
def test_pool_is_sized_to_the_concurrency(orders: pg.Scratch) -> None:
    """At concurrency 6 the driver holds at most 6 connections, and closes them all."""
    name = f"wg_{orders.schema}"
    plan = plan_for(
        f"{pg.URL}?application_name={name}",
        orders.select("WHERE id = :id"),
        {"id": f"{{{{ randint(1, {pg.ROWS}) }}}}"},
    )

    async def scenario() -> tuple[int, int]:
        driver = SqlDriver.open("db", plan, 6)
        try:
            await asyncio.gather(*(driver.execute() for _ in range(60)))
            held = await asyncio.to_thread(pg.connections_named, name)
        finally:
            await driver.aclose()
        return held, 0

    held, _ = asyncio.run(scenario())
    assert 1 <= held <= 6
    poll(lambda: pg.connections_named(name) == 0, timeout=5, what="the pool to close")


@pytest.mark.postgres
def test_params_bind_as_integers_or_typed_strings(orders: pg.Scratch) -> None:
    """A rendered number binds as an integer, a date string is typed by its column; a
    number meant as text needs a CAST, else the database's own message is the detail."""
    plan = plan_for(
        pg.URL,
        orders.select(
            "WHERE id = :id AND placed = :day AND CAST(customer_id AS text) = CAST(:code AS text)"
        ),
        {"id": "{{ 300 + 66 }}", "day": "2024-01-02", "code": "367"},
        rows={"min": 1, "max": 1},
    )
    outcomes, _ = execute_many(plan, 2, 1)
    assert [outcome.outcome for outcome in outcomes] == [OK, OK]

    no_cast = plan_for(pg.URL, orders.select("WHERE note = :code"), {"code": "367"})
    (outcome,), _ = execute_many(no_cast, 1, 1)
    assert (outcome.outcome, outcome.detail) == (ERROR, "operator does not exist: text = smallint")
