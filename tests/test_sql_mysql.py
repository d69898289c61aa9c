"""MySQL and MariaDB targets: the URL, MySQL's write forms at validate, and the driver against
the real MariaDB (read-only, one statement, the server's timeout, the session reset, roles)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiomysql
import pymysql.err
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import maria
from tests.helpers import free_port
from tests.test_sql_config import imported_sql_modules
from warmgate.config.sql_target import SqlTarget
from warmgate.decide.outcomes import CONNECTION_ERROR, ERROR, OK, TIMEOUT, WRITE_REJECTED
from warmgate.decide.reach import Down, Reach
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.sql.check import Dialect, escape_problem, write_problem
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan, open_pool
from warmgate.traffic.sql.mysql import set_sql_mode, timed
from warmgate.traffic.sql.outcomes import classify
from warmgate.traffic.templating import Templates

MYSQL = Dialect.MYSQL


def plan_for(url: str, query: str, params: dict[str, str] | None = None, **fields: Any) -> SqlPlan:
    """The checked plan of one SQL target."""
    target = SqlTarget(url=url, query=query, params=params or {}, **fields)
    return SqlPlan.compile(target, Templates(), "targets[0].sql", "db")


def unchecked(query: str, url: str = maria.URL) -> SqlPlan:
    """A plan whose write slipped past the start-up check: only the database stands guard."""
    return dataclasses.replace(plan_for(url, "SELECT 1"), query=query)


def run_in_order(plans: list[SqlPlan], account: str | None = None) -> list[Any]:
    """Each plan's query once, in order, on one pooled connection; with ``account``, the
    connections the server then has open for it are appended."""

    async def scenario() -> list[Any]:
        pool = open_pool(plans[0], 1)
        try:
            outcomes: list[Any] = [await SqlDriver("db", plan, pool).execute() for plan in plans]
            if account is not None:
                outcomes.append(connections_of(account))
            return outcomes
        finally:
            await pool.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "place"),
    [
        ("mysql://app@db.internal/orders", "db.internal:3306"),
        ("mariadb://app@db.internal:3307/orders", "db.internal:3307"),
        ("mysql+aiomysql://app@db/orders?charset=utf8mb4", "db:3306"),
        ("mariadb+aiomysql://app@db/orders", "db:3306"),
    ],
)
def test_mysql_and_mariadb_urls_go_through_aiomysql(url: str, place: str) -> None:
    """mysql:// and mariadb:// (and their +aiomysql forms) are MySQL targets through aiomysql."""
    plan = plan_for(url, "SELECT 1")
    assert plan.dialect is MYSQL
    assert plan.url.get_driver_name() == "aiomysql"
    assert plan.place == place


def test_url_options_warmgate_sets_itself_are_refused() -> None:
    """init_command, client_flag and local_infile in the URL are a sentence naming the option."""
    with pytest.raises(ConfigError) as caught:
        plan_for("mysql://app@db/orders?init_command=SET+autocommit%3D1", "SELECT 1")
    assert "remove ?init_command= from the URL" in str(caught.value)


def test_tls_options_are_refused_until_they_are_supported() -> None:
    """?ssl_ca= and friends are a sentence saying TLS is not supported yet, not a crash."""
    with pytest.raises(ConfigError) as caught:
        plan_for("mariadb://app@db/orders?ssl_ca=/etc/ca.pem", "SELECT 1")
    assert "?ssl_ca= is not supported for MySQL and MariaDB yet" in str(caught.value)


def test_unknown_url_options_are_refused_naming_the_ones_that_work() -> None:
    """An option aiomysql would not take is a sentence at start-up, not a crash at connect."""
    with pytest.raises(ConfigError) as caught:
        plan_for("mysql://app@db/orders?read_timeout=5", "SELECT 1")
    assert str(caught.value) == (
        "targets[0].sql.url: ?read_timeout= is not an option warmgate passes to MySQL or "
        "MariaDB; it takes charset, connect_timeout, program_name, unix_socket."
    )
    plan = plan_for("mysql://app@db/orders?charset=utf8mb4&connect_timeout=3", "SELECT 1")
    assert plan.url.query == {"charset": "utf8mb4", "connect_timeout": "3"}


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("REPLACE INTO orders VALUES (1)", "starts with REPLACE, which writes data"),
        ("INSERT INTO orders (id) VALUES (1) ON DUPLICATE KEY UPDATE note = 'x'", "starts with INSERT"),
        ("LOAD DATA INFILE '/tmp/x' INTO TABLE orders", "starts with LOAD"),
        ("LOAD XML LOCAL INFILE 'x' INTO TABLE orders", "starts with LOAD"),
        ("SELECT * FROM orders INTO OUTFILE '/tmp/x'", "contains INTO OUTFILE, which writes a file"),
        ("SELECT note FROM orders LIMIT 1 INTO DUMPFILE '/tmp/x'", "contains INTO DUMPFILE"),
        ("SELECT note INTO @n FROM orders LIMIT 1", "SELECT ... INTO sets variables"),
        ("LOCK TABLES orders WRITE", "starts with LOCK, which is not a read-only query"),
        ("SELECT * FROM orders LOCK IN SHARE MODE", "LOCK IN SHARE MODE"),
        ("SELECT * FROM orders FOR UPDATE SKIP LOCKED", "takes row locks"),
        ("SELECT @n := note FROM orders", "assigns a user variable (:=)"),
        ("SET @n = 1", "starts with SET"),
        ("DO GET_LOCK('x', 1)", "starts with DO"),
        ("HANDLER orders OPEN", "starts with HANDLER"),
        ("TRUNCATE orders", "starts with TRUNCATE, which writes data"),
        ("SELECT 1 /*!50000 , (SELECT 1) */", "executable comment"),
        ("SELECT 1 /*M!100100 , 2 */", "executable comment"),
        ("SELECT 1; DELETE FROM orders", "more than one statement"),
        ("EXPLAIN DELETE FROM orders", "contains DELETE"),
        # "--" then a non-ASCII space is no comment to the server ("\u00a0x" is a name there)
        ("SELECT 1 --\u00a0; DELETE FROM orders", "more than one statement"),
        ("SELECT id --\u00a0x FROM orders FOR UPDATE", "takes row locks"),
    ],
)  # fmt: skip
def test_mysql_write_forms_are_spotted(query: str, problem: str) -> None:
    """Each of MySQL's own ways to write or hold state is refused with a reason."""
    found = write_problem(query, MYSQL)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "query",
    [
        "SELECT REPLACE(note, 'a', 'b'), TRUNCATE(amount, 0) FROM orders WHERE id = :id",
        "SELECT 'it''s; delete' AS a, \"into; update\" AS b # drop table\n",
        "SELECT 'C:\\\\temp' AS path",
        "SELECT 5--1 -- a comment\n",
        "SELECT /*+ MAX_EXECUTION_TIME(100) */ * FROM `orders` WHERE `into` = 1",
        "WITH recent AS (SELECT * FROM orders ORDER BY id DESC LIMIT 5) SELECT * FROM recent",
        "SHOW TABLES",
        "VALUES (1), (2)",
        "SELECT updated_at, deleted_by FROM orders",
    ],
)
def test_mysql_reads_pass_the_check(query: str) -> None:
    """MySQL reads pass, whatever their strings, comments, hints and look-alike names hold."""
    assert write_problem(query, MYSQL) is None
    assert escape_problem(query, MYSQL) is None


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("SELECT GET_LOCK('x', 10)", "calls get_lock, which takes a user-level lock"),
        ("SELECT `get_lock`('x', 10)", "calls get_lock"),
        ('SELECT "GET_LOCK" (\'x\', 10)', "calls get_lock"),
        ("SELECT LOAD_FILE('/etc/passwd')", "calls load_file, which reads files"),
        ("SELECT sys_exec('rm -rf /')", "runs a command on the database server"),
        ("SELECT spider_direct_sql('DELETE FROM t', 't', 'srv')", "runs statements on other servers"),
        ("SELECT NEXTVAL(s)", "advances a sequence"),
        ("SELECT NEXT VALUE FOR s", "calls NEXT VALUE FOR"),
        ("SELECT SETVAL(s, 1)", "calls setval"),
    ],
)  # fmt: skip
def test_mysql_escape_hatches_are_refused_by_name(query: str, problem: str) -> None:
    """Functions that act outside the transaction or hold session state are named."""
    found = escape_problem(query, MYSQL)
    assert found is not None
    assert problem in found


def test_a_mysql_write_form_is_refused_at_start_naming_the_target() -> None:
    """REPLACE in a MySQL target's query is a ConfigError naming the target and the fix."""
    with pytest.raises(ConfigError) as caught:
        plan_for(maria.URL, "REPLACE INTO orders VALUES (1)")
    assert str(caught.value).startswith(
        "target 'db': targets[0].sql.query starts with REPLACE, which writes data; warm-up "
        "traffic must never write"
    )


def test_the_timeout_goes_with_the_statement_on_mariadb_and_the_session_on_mysql() -> None:
    """MariaDB gets SET STATEMENT ... FOR the query; MySQL a session max_execution_time first."""
    assert timed("SELECT 1", True, 2.5) == (
        None,
        "SET STATEMENT max_statement_time=2.500 FOR SELECT 1",
    )
    assert timed("SELECT 1", False, 2.5) == (b"SET SESSION max_execution_time = 2500", "SELECT 1")
    assert timed("SELECT 1", True, 0.0001)[1].startswith("SET STATEMENT max_statement_time=0.001 ")


@pytest.mark.parametrize(
    ("error", "outcome", "detail"),
    [
        (pymysql.err.OperationalError(1792, "Cannot execute statement in a READ ONLY transaction"),
         WRITE_REJECTED, "the database refused a write: Cannot execute statement in a READ ONLY transaction"),
        (pymysql.err.OperationalError(1969, "Query execution was interrupted (max_statement_time exceeded)"),
         TIMEOUT, "statement timeout"),
        (pymysql.err.OperationalError(3024, "maximum statement execution time exceeded"),
         TIMEOUT, "statement timeout"),
        (pymysql.err.OperationalError(1045, "Access denied for user 'app'@'10.0.0.7' (using password: YES)"),
         CONNECTION_ERROR, "access denied for user app@10.0.0.7"),
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connect call failed)"),
         CONNECTION_ERROR, "connection refused"),
        (pymysql.err.OperationalError(1049, "Unknown database 'nope'"),
         CONNECTION_ERROR, "database nope does not exist"),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
         CONNECTION_ERROR, "the server closed the connection"),
        (pymysql.err.ProgrammingError(1146, "Table 'test.nope' doesn't exist"),
         ERROR, "Table 'test.nope' doesn't exist"),
    ],
)  # fmt: skip
def test_mysql_errors_become_outcomes(error: Exception, outcome: str, detail: str) -> None:
    """PyMySQL's errors, by number, are the same outcomes as PostgreSQL's by SQLSTATE."""
    found = classify(error, dialect=MYSQL)
    assert (found.outcome, found.detail) == (outcome, detail)


@pytest.fixture(scope="module")
def orders() -> Iterator[maria.Scratch]:
    """A scratch orders table in the real MariaDB; dropped after the module."""
    maria.require_mariadb()
    with maria.scratch_table() as scratch:
        yield scratch


def connections_of(account: str) -> int:
    """Connections the server has open for ``account`` right now."""
    rows = maria.sql(
        f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{account}'"  # noqa: S608
    )
    return int(rows[0][0])


@pytest.mark.mariadb
def test_mariadb_queries_by_key_return_rows(orders: maria.Scratch) -> None:
    """Queries with rendered parameters read the real table through the index."""
    plan = plan_for(
        maria.URL,
        orders.select("WHERE customer_id = :cid LIMIT 20"),
        {"cid": f"{{{{ randint(1, {maria.CUSTOMERS}) }}}}"},
        rows={"min": 1, "max": 20},
    )
    outcomes = run_in_order([plan] * 20)
    assert [outcome.outcome for outcome in outcomes] == [OK] * 20


@pytest.mark.mariadb
def test_each_query_runs_in_a_transaction_with_the_statement_timeout(
    orders: maria.Scratch,
) -> None:
    """Inside the query: a transaction is open, and max_statement_time is the target's."""
    plan = plan_for(
        maria.URL,
        "SELECT 1 FROM DUAL WHERE @@in_transaction = 1 AND @@max_statement_time = 1.5",
        timeout="1500ms",
        rows={"min": 1, "max": 1},
    )
    outcomes = run_in_order([plan] * 3)
    assert [outcome.outcome for outcome in outcomes] == [OK] * 3


@pytest.mark.mariadb
@pytest.mark.parametrize(
    ("write", "outcome"),
    [
        ("DELETE FROM {orders}", WRITE_REJECTED),
        ("UPDATE {orders} SET note = 'x'", WRITE_REJECTED),
        ("REPLACE INTO {orders} (id, customer_id, amount, placed, note) VALUES (1, 1, 0, NOW(), 'x')", WRITE_REJECTED),
        ("INSERT INTO {orders} (id, customer_id, amount, placed, note) VALUES (1, 1, 0, NOW(), 'x') ON DUPLICATE KEY UPDATE note = 'x'", WRITE_REJECTED),
        ("SELECT {purge}()", WRITE_REJECTED),
        ("SELECT 1; COMMIT; DELETE FROM {orders} WHERE id = 1", ERROR),
        ("LOAD DATA LOCAL INFILE '/etc/hostname' REPLACE INTO TABLE {orders}", ERROR),
    ],
)  # fmt: skip
def test_mariadb_refuses_writes_that_slip_past_the_check(
    orders: maria.Scratch, write: str, outcome: str
) -> None:
    """A write that slipped past validate is refused by the server, and the data is untouched."""
    query = write.format(orders=orders.orders, purge=orders.purge)
    assert write_problem(query, MYSQL) is not None or "purge" in query
    before = orders.fingerprint()
    (found, after) = run_in_order([unchecked(query), plan_for(maria.URL, "SELECT 1")])
    assert found.outcome == outcome, found.detail
    assert after.outcome == OK
    assert orders.fingerprint() == before


@pytest.mark.mariadb
def test_nothing_a_query_leaves_in_the_session_reaches_the_next(orders: maria.Scratch) -> None:
    """A user-level lock (taken in a stored function the check cannot see into), a user variable
    and table locks are gone once the query is over; the next query sees a fresh session."""
    free = f"SELECT 1 FROM DUAL WHERE IS_FREE_LOCK('{orders.orders}') = 1"  # noqa: S608
    lock_free = plan_for(maria.URL, free, rows={"min": 1})
    variable_unset = plan_for(maria.URL, "SELECT 1 FROM DUAL WHERE @wg IS NULL", rows={"min": 1})
    outcomes = run_in_order(
        [
            unchecked(f"SELECT {orders.lock}()"),
            lock_free,
            unchecked("SELECT @wg := 1"),
            variable_unset,
            unchecked(f"LOCK TABLES {orders.orders} WRITE"),
            plan_for(maria.URL, "SELECT 1"),
        ]
    )
    assert [outcome.outcome for outcome in outcomes] == [OK] * 6, outcomes
    # Another session can lock the table at once: the pooled one holds nothing.
    maria.sql(
        f"SET SESSION lock_wait_timeout = 5; LOCK TABLES {orders.orders} WRITE; UNLOCK TABLES"
    )
    assert maria.sql(f"SELECT IS_FREE_LOCK('{orders.orders}')") == [["1"]]


@pytest.mark.mariadb
def test_a_pooled_connection_between_queries_holds_nothing_of_the_tables(
    orders: maria.Scratch,
) -> None:
    """The next query's transaction is opened as the last one ends, but it has read nothing
    yet: while the pooled connection waits, another session may drop the table the queries
    read at once (a metadata lock held would make it wait for lock_wait_timeout)."""
    table = f"{orders.orders}_dropped"
    maria.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY); INSERT INTO {table} VALUES (1)")  # noqa: S608
    reads = plan_for(maria.URL, f"SELECT id FROM {table}", rows={"min": 1, "max": 1})  # noqa: S608

    async def scenario() -> list[Any]:
        pool = open_pool(reads, 1)
        try:
            driver = SqlDriver("db", reads, pool)
            outcomes = [await driver.execute(), await driver.execute()]
            # The pool keeps its connection, with the next transaction open, while this runs.
            (idle,) = pool._idle  # type: ignore[attr-defined]
            assert idle.opened is not None
            maria.sql(f"SET SESSION lock_wait_timeout = 2; DROP TABLE {table}")
            return outcomes
        finally:
            await pool.aclose()

    try:
        assert [outcome.outcome for outcome in asyncio.run(scenario())] == [OK, OK]
    finally:
        maria.sql(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.mariadb
def test_with_an_idle_transaction_timeout_no_transaction_waits_between_queries() -> None:
    """MariaDB closes a session that sits in a transaction longer than its idle transaction
    timeout: with one set, the next query's transaction is opened only when it comes, and a
    pooled connection that waited past the timeout still serves it."""
    with maria.password_account("pw-idle-1", "GRANT SELECT ON test.* TO {account}") as account:
        url = f"mariadb://{account}:pw-idle-1@127.0.0.1:3306/test"
        (before,) = maria.sql("SELECT @@GLOBAL.idle_readonly_transaction_timeout")[0]
        maria.sql("SET GLOBAL idle_readonly_transaction_timeout = 1")
        try:
            plan = plan_for(url, "SELECT 1", rows={"min": 1, "max": 1})

            async def scenario() -> list[Any]:
                pool = open_pool(plan, 1)
                try:
                    driver = SqlDriver("db", plan, pool)
                    first = await driver.execute()
                    # Idle past the server's timeout (what is under test is the wait itself).
                    await asyncio.sleep(2.5)
                    return [first, await driver.execute(), connections_of(account)]
                finally:
                    await pool.aclose()

            first, second, connections = asyncio.run(scenario())
        finally:
            maria.sql(f"SET GLOBAL idle_readonly_transaction_timeout = {int(before)}")
    assert (first.outcome, second.outcome) == (OK, OK), second.detail
    assert connections == 1  # the same connection, not a new one after a failure


@pytest.mark.mariadb
def test_the_server_stops_a_slow_statement_and_the_connection_is_reused(
    orders: maria.Scratch,
) -> None:
    """SLEEP past the timeout is stopped by MariaDB itself (max_statement_time), and the same
    connection serves the next query."""
    with maria.password_account("pw-31337", "GRANT SELECT ON test.* TO {account}") as account:
        url = f"mariadb://{account}:pw-31337@127.0.0.1:3306/test"
        slow = plan_for(url, "SELECT SLEEP(30)", timeout="1s")
        *outcomes, connections = run_in_order([slow, slow, plan_for(url, "SELECT 1")], account)
    assert [(o.outcome, o.detail) for o in outcomes] == [
        (TIMEOUT, "statement timeout"),
        (TIMEOUT, "statement timeout"),
        (OK, ""),
    ]
    assert connections == 1


@pytest.mark.mariadb
def test_a_wrong_password_is_a_clear_reason_without_the_password(orders: maria.Scratch) -> None:
    """A wrong password is 'access denied for user ...' in the probe, and never shown."""
    with maria.password_account("right-Pw-5521", "GRANT SELECT ON test.* TO {account}") as account:
        plan = plan_for(f"mariadb://{account}:wrong-Pw-5521@127.0.0.1:3306/test", "SELECT 1")

        async def scenario() -> tuple[str | None, Any]:
            driver = SqlDriver.open("db", plan, 1)
            try:
                return await driver.probe(), await driver.execute()
            finally:
                await driver.aclose()

        probe, outcome = asyncio.run(scenario())
    assert probe is not None
    assert probe.reach is Reach.UNREACHABLE
    assert probe.reason.startswith(f"127.0.0.1:3306: access denied for user {account}@")
    assert (outcome.outcome, outcome.detail.split("@")[0]) == (
        CONNECTION_ERROR,
        f"access denied for user {account}",
    )
    assert "Pw-5521" not in probe.reason + outcome.detail


def test_a_refused_port_is_the_wait_phase() -> None:
    """Nothing listening is 'connection refused', a reason read as refused (from the socket's
    error, which PyMySQL keeps), never a crash."""
    plan = plan_for(f"mysql://app:pw@127.0.0.1:{free_port()}/test", "SELECT 1")

    async def scenario() -> Down | None:
        driver = SqlDriver.open("db", plan, 1)
        try:
            return await driver.probe()
        finally:
            await driver.aclose()

    down = asyncio.run(scenario())
    assert down is not None
    assert down.reach is Reach.REFUSED
    assert down.reason.endswith(": connection refused")


@pytest.mark.mariadb
@pytest.mark.parametrize(
    ("grants", "finding"),
    [
        (("GRANT SELECT ON test.{orders} TO {account}",), None),
        (("GRANT SELECT ON test.* TO {account}",), None),
        (("GRANT SELECT, INSERT ON test.* TO {account}",), "may INSERT, UPDATE, DELETE, CREATE, DROP or ALTER in database test"),
        (("GRANT SELECT, UPDATE ON test.{orders} TO {account}",), "may INSERT, UPDATE or DELETE test.{orders}"),
        (("GRANT SELECT ON test.* TO {account}", "GRANT FILE ON *.* TO {account}"), "may FILE in every database (global privileges)"),
    ],
)  # fmt: skip
def test_the_account_is_checked_for_what_it_may_write(
    orders: maria.Scratch, grants: tuple[str, ...], finding: str | None
) -> None:
    """An account that can write (a table, a database, files, everything) is found out."""
    grants = tuple(grant.replace("{orders}", orders.orders) for grant in grants)
    with maria.password_account("pw-777", *grants) as account:
        plan = plan_for(f"mariadb://{account}:pw-777@127.0.0.1:3306/test", "SELECT 1")
        access = asyncio.run(open_pool(plan, 1).write_access())
    expected = None if finding is None else f"{account}@% " + finding.format(orders=orders.orders)
    assert access == expected


@pytest.mark.mariadb
def test_require_read_only_role_refuses_root(orders: maria.Scratch) -> None:
    """With require_read_only_role, root's global privileges stop warmgate before any traffic."""
    plan = plan_for(maria.URL, "SELECT 1", require_read_only_role=True)

    async def scenario() -> None:
        driver = SqlDriver.open("db", plan, 1)
        try:
            await driver.probe()
        finally:
            await driver.aclose()

    with pytest.raises(ConfigError) as caught:
        asyncio.run(scenario())
    assert "the database role root@127.0.0.1 may " in str(caught.value)
    assert "in every database (global privileges)" in str(caught.value)


def test_aiomysql_is_imported_only_for_a_mysql_target(tmp_path: Path) -> None:
    """``validate`` of a MySQL config needs SQLAlchemy only; aiomysql loads with the pool."""
    config = tmp_path / "warmup.yaml"
    config.write_text("targets:\n  - sql: {url: 'mysql://app@db/orders', query: SELECT 1}\n")
    assert imported_sql_modules("validate", "--config", str(config)) == "['sqlalchemy']"


@pytest.mark.mariadb
def test_a_query_never_blocks_the_event_loop(orders: maria.Scratch) -> None:
    """A query waiting for a table lock ends because the event loop, free meanwhile, unlocks it."""
    query = f"SELECT COUNT(*) FROM {orders.orders}"  # noqa: S608 - a scratch table's name
    plan = plan_for(maria.URL, query, rows={"min": 1, "max": 1}, timeout="20s")
    waiting = (
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        " WHERE STATE = 'Waiting for table metadata lock' AND INFO LIKE %s"
    )

    async def scenario() -> tuple[Any, bool]:
        holder = await aiomysql.connect(
            host=maria.HOST, port=maria.PORT, user="root", db=maria.DATABASE, autocommit=True
        )
        pool = open_pool(plan, 1)
        try:
            async with holder.cursor() as cursor:
                await cursor.execute(f"LOCK TABLES {orders.orders} WRITE")
                running = asyncio.create_task(SqlDriver("db", plan, pool).execute())
                async with asyncio.timeout(15):
                    while True:
                        await cursor.execute(waiting, (f"%{query}%",))
                        if (await cursor.fetchone())[0]:
                            break
                        await asyncio.sleep(0.01)  # polling the server, with the deadline above
                still_waiting = not running.done()
                await cursor.execute("UNLOCK TABLES")
            return await running, still_waiting
        finally:
            holder.close()
            await pool.aclose()

    # Had the driver held the loop while its query ran, the table would never be unlocked here,
    # and the query would end at its 20 s statement timeout instead.
    outcome, still_waiting = asyncio.run(scenario())
    assert still_waiting
    assert outcome.outcome == OK


@pytest.mark.mariadb
def test_a_password_beyond_latin1_logs_in(orders: maria.Scratch) -> None:
    """A password with characters outside Latin-1 is sent as UTF-8 and accepted."""
    password = "Grüße-Ω-密码"  # noqa: S105 - a test account's
    with maria.password_account(password, "GRANT SELECT ON test.* TO {account}") as account:
        url = f"mariadb://{account}:{quote(password)}@127.0.0.1:3306/test"
        (outcome,) = run_in_order([plan_for(url, "SELECT 1")])
    assert outcome.outcome == OK, outcome.detail


def test_client_timeout_when_the_server_never_answers() -> None:
    """A server that accepts and then says nothing is a timeout on the client's clock."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        plan = plan_for(f"mysql://app@127.0.0.1:{port}/test", "SELECT 1", timeout="200ms")
        (outcome,) = run_in_order([plan])
    assert (outcome.outcome, outcome.detail) == (TIMEOUT, "timed out")


@pytest.mark.parametrize(
    ("mode", "pinned"),
    [
        ("STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES,ANSI_QUOTES", "STRICT_TRANS_TABLES"),
        ("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI", "REAL_AS_FLOAT,PIPES_AS_CONCAT,IGNORE_SPACE"),
        ("PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ORACLE,NO_KEY_OPTIONS", "PIPES_AS_CONCAT,IGNORE_SPACE,NO_KEY_OPTIONS"),
        ("", ""),
    ],
)  # fmt: skip
def test_the_driver_pins_the_sql_mode_flags_that_change_lexing(mode: str, pinned: str) -> None:
    """The flags that change how the server lexes (and the modes that imply them) are taken out
    of the session's SQL mode before every query; the others stay."""
    assert set_sql_mode(mode) == f"SET SESSION sql_mode = '{pinned}'".encode()


@pytest.mark.parametrize(
    "query",
    ["SELECT 'a\\' ; DELETE FROM orders -- '", 'SELECT "a\\", GET_LOCK(\'x\', 1) # "'],
)
def test_a_backslash_escapes_as_in_the_pinned_sql_mode(query: str) -> None:
    """With the SQL mode pinned, 'a\\' does not end the string: what follows is still text."""
    assert write_problem(query, MYSQL) is None
    assert escape_problem(query, MYSQL) is None


@given(st.text(alphabet=st.characters(blacklist_characters="\\\x00:", codec="utf-8"), max_size=60))
def test_any_text_in_a_mysql_string_or_comment_is_not_code(text: str) -> None:
    """Whatever a string literal or a comment holds (but a NUL, which ends a comment in the
    server, or a :name, which would be a parameter), the check reads it as text, not SQL."""
    literal = "'" + text.replace("'", "''") + "'"
    comment = text.replace("\n", " ").replace("\r", " ")
    for query in (f"SELECT {literal} AS a", f"SELECT 1 # {comment}\n", f"SELECT 1 -- {comment}"):
        assert write_problem(query, MYSQL) is None, query
        assert escape_problem(query, MYSQL) is None, query
