"""The statement check against the real servers: generated statements around a call to a
harmless marker function, run through warmgate's own pools, and read by the check.

The marker raises an error naming itself, so the server says whether it called it. Whenever it
did, the check must have seen the call (or refused the statement as one it cannot read, or
for a misplaced parameter); whenever the server ran a statement without error, the check must
not call it unreadable, nor see a call the server did not make. The servers read with their
defaults turned against the check (PostgreSQL with ``standard_conforming_strings`` off for the
session, a MariaDB started with ``ANSI_QUOTES`` and ``NO_BACKSLASH_ESCAPES``): the pins the
drivers set must make them read as the check does. The shared MariaDB runs the property too,
in its own default SQL mode.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql.err
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from tests import maria, pg
from warmgate.traffic.sql.check import Dialect, read_query
from warmgate.traffic.sql.mysql import MysqlPool
from warmgate.traffic.sql.postgres import PostgresPool

MARKED = "wg-marker-called"
"""The error the marker raises, so the server tells whether it ran."""

WHITESPACE = [" ", "\n", "\r", "\t", "\r\n", "\f", "\v"]
PG_FRAGMENTS = [
    *WHITESPACE, "-- c", "-- c\n", "-- c\r", "--\r", "/* c */", "/* a /* b */ c */", "/* a /* b */",
    "/*/ x */", "/**/", "'", "E'", '"', "$$", "$a$", "/*", "--", "\\", "e'\\'", ",", "(", ")",
    "||", "x$$", "x$",
]  # fmt: skip
PG_VALUES = [
    "'a'", "'a''b'", "'a\\'", "E'a\\'b'", "e'\\\\'", "name'\\'", "text 'x'", "U&'\\0041'",
    "U&'!0041' UESCAPE '!'", "B'101'", "X'1F'", "N'x'", "$$ x $$", "$a$ x $a$", "$a$ $$ $a$",
    "$$'$$", "1", "1.5e3", "0x1F", "1_000", "1 AS x$$", "1 AS x$a$", '1 AS "q""x"',
    '1 AS U&"\\0041"', "1 AS _x1", "1 AS x$", '1 AS "a b"', " :p ",
]  # fmt: skip
MY_FRAGMENTS = [
    *WHITESPACE, "# c", "# c\n", "# c\r", "-- c", "-- c\n", "-- c\r", "--\t", "--\x01", "--x",
    "/* c */", "/* a /* b */ c */", "/*+ c */", "/*! 1 */", "/*M!100000 , 1 */", "'", '"', "`",
    "/*", "--", "#", "\\", ",", "(", ")",
]  # fmt: skip
MY_VALUES = [
    "'a'", "'a''b'", "'a\\'b'", "'a\\\\'", '"a"', '"a\\"b"', "N'x'", "_utf8mb4'x'", "X'41'",
    "B'1'", "0x41", "1e3", "1e--1", "\\N", "1 AS `a``b`", "1 AS x$$", "1 AS $x", "1 AS é",
    "1 AS 1x", " :p ",
]  # fmt: skip
VALUES = ["v", "it's", 'a "b" \\ c', "') , M() -- ", "\\'), M() #"]
"""Values bound to ``:p``: quotes and backslashes that must stay inside the value."""


def statements(fragments: list[str], values: list[str], calls: list[str]) -> Any:
    """``SELECT`` of a few items, each a value or a call of the marker, with fragments around
    them: mostly whitespace and comments, sometimes a quote or comment opener that may swallow
    the rest."""
    fragment = st.one_of(st.sampled_from(WHITESPACE), st.sampled_from(fragments))
    around = st.lists(fragment, max_size=2).map("".join)
    core = st.one_of(st.sampled_from(values), st.sampled_from(calls))
    item = st.tuples(around, core, around).map("".join)
    return st.lists(item, min_size=1, max_size=4).map(lambda items: "SELECT " + ",".join(items))


def judge(query: str, dialect: Dialect, marker: str, error: str | None) -> None:
    """The property: a call the server made was seen (or refused), and a statement the server
    ran was read, with no call it did not make."""
    reading = read_query(query, dialect)
    refused = reading.unreadable or reading.parameter
    if error is not None and MARKED in error:
        assert marker in reading.calls or refused, (query, reading)
    elif error is None and "/*!" not in query and "/*M!" not in query:
        # (an executable comment is refused on purpose: the check does not read code in one)
        assert reading.unreadable is None, (query, reading)
        assert reading.parameter is not None or marker not in reading.calls, (query, reading)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every example of a module's property tests."""
    running = asyncio.new_event_loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def pg_marker() -> Iterator[tuple[str, str]]:
    """``(schema, function)``: a marker function in a scratch schema that raises MARKED."""
    pg.require_postgres()
    schema, name = f"warmgate_test_{secrets.token_hex(4)}", "wg_mark"
    with pg.connect() as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(
            f"CREATE FUNCTION {schema}.{name}(t text DEFAULT '') RETURNS int VOLATILE"
            f" LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{MARKED}'; END $$"
        )
        try:
            yield schema, name
        finally:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_calls(schema: str, name: str) -> list[str]:
    """The ways to call the marker that PostgreSQL reads as calls of it."""
    escaped = name.replace("_", "\\005f")
    return [
        f"{name}()", f'"{name}"()', f'U&"{escaped}"()', f"{schema}.{name}()",
        f'"{schema}"."{name}"()', f"{name} ()", f"{name}/**/()", f"{name}\n()",
        f"('x'::text).{name}", f"(SELECT {name}())", f"upper({name}()::text)",
    ]  # fmt: skip


def pg_run(
    loop: asyncio.AbstractEventLoop, pool: PostgresPool, query: str, value: str
) -> str | None:
    """Run ``query`` through warmgate's pool; the server's error, or ``None``."""
    params = {"p": value} if ":p" in query else {}
    try:
        loop.run_until_complete(pool.rows(query, params, 5, 10))
    except (psycopg.Error, KeyError) as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def pg_pool(loop: asyncio.AbstractEventLoop, pg_marker: tuple[str, str]) -> Iterator[PostgresPool]:
    """warmgate's pool on connections whose session reads strings the old way, with the scratch
    schema on the search path."""
    schema, _ = pg_marker
    options = f"-c standard_conforming_strings=off -c search_path={schema},public"
    url = make_url(pg.URL).update_query_dict({"options": options})
    pool = PostgresPool(url, 1, wait=10)
    yield pool
    loop.run_until_complete(pool.aclose())


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 -- c\r, {call}",
        "SELECT 1 /* a /* b */ */, {call}",
        "SELECT name'\\', {call} --'",
        "SELECT 1 AS x$$, {call} AS y$$",
        "SELECT 'a\\', {call} --'",
    ],
)
def test_the_escapes_call_the_marker_and_the_check_sees_them(
    loop: asyncio.AbstractEventLoop,
    pg_pool: PostgresPool,
    pg_marker: tuple[str, str],
    query: str,
) -> None:
    """Each escape of the old check makes PostgreSQL call the marker, and the check sees it."""
    query = query.format(call=f"{pg_marker[1]}()")
    error = pg_run(loop, pg_pool, query, "")
    assert error is not None
    assert MARKED in error
    assert pg_marker[1] in read_query(query, Dialect.POSTGRESQL).calls


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("query", "setting"),
    [
        ("SELECT 1 WHERE current_setting('standard_conforming_strings') = :p", "off"),
        ("SELECT 1 WHERE current_setting('standard_conforming_strings') = :p -- \\", "on"),
        (
            "SELECT 1 WHERE current_setting('standard_conforming_strings') = :p AND E'\\\\' <> ''",
            "on",
        ),
        (
            "SELECT 1 WHERE current_setting('standard_conforming_strings') = :p"
            " AND U&'d!0061t' UESCAPE '!' = 'dat'",
            "on",
        ),
    ],
)
def test_only_a_query_with_a_backslash_or_an_ampersand_needs_standard_conforming_strings(
    loop: asyncio.AbstractEventLoop, pg_pool: PostgresPool, query: str, setting: str
) -> None:
    """The setting changes only what a backslash means and whether U&'' strings are accepted: a
    query with neither runs in the session's own (off here), one with a backslash anywhere (a
    comment included) or an & with it on."""
    counted = loop.run_until_complete(pg_pool.rows(query, {"p": setting}, 5, 10))
    assert counted.rows == 1


@pytest.mark.postgres
def test_a_query_the_client_encoding_would_change_is_not_sent(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """EUC_JP as Python encodes it sends ¥ as the byte of a backslash: the server would read a
    backslash where the check read ¥, so the query fails before it is sent."""
    url = make_url(pg.URL).update_query_dict({"client_encoding": "EUC_JP"})
    pool = PostgresPool(url, 1, wait=10)
    try:
        with pytest.raises(psycopg.NotSupportedError, match="sends some character of the query"):
            loop.run_until_complete(pool.rows("SELECT '¥', 1 --'", {}, 5, 10))
        # A character the encoding keeps goes through.
        assert loop.run_until_complete(pool.rows("SELECT 'ソ'", {}, 5, 10)).rows == 1
    finally:
        loop.run_until_complete(pool.aclose())


@pytest.mark.postgres
@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_postgresql_and_the_check_agree_on_every_call(
    loop: asyncio.AbstractEventLoop,
    pg_pool: PostgresPool,
    pg_marker: tuple[str, str],
    data: st.DataObject,
) -> None:
    """Whenever PostgreSQL calls the marker the check sees the call or refuses the statement,
    and a statement PostgreSQL runs is read, with no call it did not make."""
    calls = pg_calls(*pg_marker)
    query = data.draw(statements(PG_FRAGMENTS, PG_VALUES, calls), label="query")
    value = data.draw(st.sampled_from(VALUES).map(lambda v: v.replace("M", pg_marker[1])))
    judge(query, Dialect.POSTGRESQL, pg_marker[1], pg_run(loop, pg_pool, query, value))


@pytest.fixture(scope="module")
def strict_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[maria.PrivateServer]:
    """A private MariaDB whose default SQL mode lexes against the check (ANSI_QUOTES,
    NO_BACKSLASH_ESCAPES), with a marker function that raises MARKED."""
    maria.require_mariadb()
    with maria.private_server(
        tmp_path_factory.mktemp("mariadb"), sql_mode="ANSI_QUOTES,NO_BACKSLASH_ESCAPES"
    ) as server:
        # The client splits statements at ";", so the body is sent under another delimiter.
        maria.sql(
            "DELIMITER //\nCREATE FUNCTION wg_mark() RETURNS INT NO SQL BEGIN SIGNAL SQLSTATE"
            f" '45000' SET MESSAGE_TEXT = '{MARKED}'; RETURN 1; END//",
            port=server.port,
        )
        yield server


def my_calls(name: str) -> list[str]:
    """The ways to call the marker that MariaDB reads as calls of it (and a double-quoted one,
    which it reads as a string and the check still counts)."""
    return [
        f"{name}()", f"`{name}`()", f"test.{name}()", f"`test`.`{name}`()", f"{name} ()",
        f"{name}/**/()", f"{name}\n()", f'"{name}"()', f"(SELECT {name}())",
    ]  # fmt: skip


def my_property(
    loop: asyncio.AbstractEventLoop, url: str, marker: str, data: st.DataObject
) -> None:
    """One example of the MariaDB property, through a pool of warmgate's on ``url``."""
    query = data.draw(statements(MY_FRAGMENTS, MY_VALUES, my_calls(marker)), label="query")
    value = data.draw(st.sampled_from(VALUES).map(lambda v: v.replace("M", marker)))
    pool = MysqlPool(make_url(url), 1, 10)
    params = {"p": value} if ":p" in query else {}
    error = None
    try:
        loop.run_until_complete(pool.rows(query, params, 5, 10))
    except (pymysql.err.MySQLError, KeyError, ValueError, TypeError) as exc:
        error = str(exc)
    finally:
        loop.run_until_complete(pool.aclose())
    judge(query, Dialect.MYSQL, marker, error)


@pytest.mark.slow
@pytest.mark.mariadb
@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_mariadb_and_the_check_agree_on_every_call(
    loop: asyncio.AbstractEventLoop, strict_mariadb: maria.PrivateServer, data: st.DataObject
) -> None:
    """Whenever MariaDB (its default SQL mode against the check, pinned by the driver) calls
    the marker the check sees the call or refuses the statement, and a statement it runs is
    read, with no call it did not make; values with quotes and backslashes stay values."""
    url = f"mariadb://root@127.0.0.1:{strict_mariadb.port}/test"
    my_property(loop, url, "wg_mark", data)


@pytest.fixture(scope="module")
def shared_marker() -> Iterator[str]:
    """A marker function, named for this run, in the shared MariaDB's ``test`` database."""
    maria.require_mariadb()
    name = f"warmgate_test_{secrets.token_hex(4)}_mark"
    # The client splits statements at ";", so the body is sent under another delimiter.
    maria.sql(
        f"DELIMITER //\nCREATE FUNCTION {name}() RETURNS INT NO SQL BEGIN SIGNAL SQLSTATE"
        f" '45000' SET MESSAGE_TEXT = '{MARKED}'; RETURN 1; END//"
    )
    try:
        yield name
    finally:
        maria.sql(f"DROP FUNCTION IF EXISTS {name}")


@pytest.mark.mariadb
@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_mariadb_in_its_default_sql_mode_agrees_with_the_check_on_every_call(
    loop: asyncio.AbstractEventLoop, shared_marker: str, data: st.DataObject
) -> None:
    """The same property on the shared MariaDB, in the SQL mode it starts sessions with."""
    my_property(loop, maria.URL, shared_marker, data)


@pytest.mark.slow
@pytest.mark.mariadb
def test_the_pinned_sql_mode_reads_quotes_and_backslashes_as_the_check(
    loop: asyncio.AbstractEventLoop, strict_mariadb: maria.PrivateServer
) -> None:
    """On a server whose default is ANSI_QUOTES and NO_BACKSLASH_ESCAPES, a query reads '\\''
    as an escaped quote and "x" as a string, and a value with a quote is bound as one value."""
    pool = MysqlPool(make_url(f"mariadb://root@127.0.0.1:{strict_mariadb.port}/test"), 1, 10)
    query = "SELECT 1 FROM DUAL WHERE 'a\\'b' = CONCAT('a', CHAR(39), 'b') AND \"x\" = 'x' AND :v = 'it''s'"
    try:
        count = loop.run_until_complete(pool.rows(query, {"v": "it's"}, 5, 10))
    finally:
        loop.run_until_complete(pool.aclose())
    assert count.rows == 1
    assert read_query(query, Dialect.MYSQL).write is None


@pytest.mark.slow
@pytest.mark.mariadb
@pytest.mark.parametrize(
    ("query", "called"),
    [
        ("SELECT 1 -- c\r, wg_mark()", False),
        ("SELECT 1 --\x01, wg_mark()", False),
        ("SELECT 1 --1, wg_mark()", True),
        ("SELECT 'a\\', wg_mark() -- '", False),
        ('SELECT "a\\", wg_mark() -- "', False),
        ("SELECT 1 /* a /* b */, wg_mark() -- */", True),
        ("SELECT 1 /*!, wg_mark() */", True),
        ("SELECT 1 AS x$$, wg_mark() AS y$$", True),
    ],
)
def test_mariadb_calls_the_marker_exactly_where_the_check_reads_a_call(
    loop: asyncio.AbstractEventLoop, strict_mariadb: maria.PrivateServer, query: str, called: bool
) -> None:
    """On a server whose default SQL mode reads quotes and backslashes the other way, the
    pinned mode makes MariaDB call the marker exactly where the check reads a call (or
    refuses the statement)."""
    pool = MysqlPool(make_url(f"mariadb://root@127.0.0.1:{strict_mariadb.port}/test"), 1, 10)
    error = None
    try:
        loop.run_until_complete(pool.rows(query, {}, 5, 10))
    except pymysql.err.MySQLError as exc:
        error = str(exc)
    finally:
        loop.run_until_complete(pool.aclose())
    assert (error is not None and MARKED in error) == called, error
    reading = read_query(query, Dialect.MYSQL)
    assert (
        "wg_mark" in reading.calls or reading.unreadable
        if called
        else "wg_mark" not in reading.calls
    )
