"""Rows wider than ``row_bytes``: the PostgreSQL guard as plain data and against the real server,
the rows each engine counts and drops, and a primer's memory while it primes wide rows."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from tests import maria, pg
from tests.helpers import cli_env, run_measuring_peak
from tests.test_sql_driver import plan_for
from warmgate.config.loader import load_config
from warmgate.decide.outcomes import ERROR, OK, UNEXPECTED_STATUS
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.units import format_size, parse_size
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan, open_pool
from warmgate.traffic.sql.pgrows import SHAPE_LIFETIME, Column, Shapes, guard, text_bound
from warmgate.traffic.sql.rows import MAX_ROWS_PER_READ, rows_per_read

INT4, INT8, TEXT, BYTEA, JSONB, VARCHAR, NUMERIC, DATE = 23, 20, 25, 17, 3802, 1043, 1700, 1082
ROW_BYTES = 1 << 16
"""The smallest row_bytes a config may give: the wide rows below are a little wider."""


def test_types_that_bound_their_rows_are_sent_as_they_are() -> None:
    """A query whose column types bound its rows within row_bytes is not wrapped, and libpq
    hands its rows out many at a time."""
    columns = [Column(INT8), Column(DATE), Column(VARCHAR, 40 + 4), Column(NUMERIC, (10 << 16) + 6)]
    shape = guard("SELECT * FROM t", columns, ROW_BYTES, bytea_hex=True)
    assert shape.query == "SELECT * FROM t"
    assert shape.flag is None
    assert shape.per_read == MAX_ROWS_PER_READ


def test_an_unbounded_column_is_measured_by_its_length_in_a_wrapper() -> None:
    """A text column makes the guard: the query becomes a subquery, the text is measured by its
    stored length, and a last column flags the dropped rows; a trailing semicolon goes."""
    columns = [Column(INT8), Column(TEXT)]
    shape = guard("SELECT id, note FROM t;  ", columns, 1 << 20, bytea_hex=True)
    assert shape.flag == 2
    assert shape.per_read == 1  # a row of up to 1 MiB at a time
    assert "FROM (\nSELECT id, note FROM t\n) AS warmgate_rows(c1, c2)" in shape.query
    assert shape.query.startswith(  # 1 MiB less int8's 20 bytes
        "SELECT c1, CASE WHEN octet_length(c2) <= 1048556 THEN c2 END, "
        "NOT (octet_length(c2) <= 1048556) FROM (\n"
    )


@pytest.mark.parametrize(
    ("column", "bound"),
    [
        (Column(VARCHAR, 10 + 4), 40),  # ten characters of up to four bytes
        (Column(NUMERIC, (5 << 16) + 2 + 4), 10),  # -123.45: digits, a sign, a point, a zero
        (Column(NUMERIC, (3 << 16) + (0x800 - 2) + 4), 8),  # numeric(3, -2): -99900
        (Column(TEXT), None),
        (Column(VARCHAR), None),
        (Column(NUMERIC), None),
        (Column(99999), None),  # a type warmgate does not know
    ],
)
def test_text_bounds_come_from_the_type_and_its_modifier(column: Column, bound: int | None) -> None:
    """varchar(n) and numeric(p, s) are bounded by their modifier; text, an unmodified varchar or
    numeric, and unknown types are not."""
    assert text_bound(column) == bound


def test_thousands_of_small_columns_are_measured_rather_than_all_dropped() -> None:
    """When the small columns' bounds alone pass half of row_bytes, every column is measured, so
    a row of many narrow integers is not dropped for what its types allow."""
    shape = guard("SELECT * FROM t", [Column(INT4)] * 7000, ROW_BYTES, bytea_hex=True)
    assert shape.flag == 7000
    assert "octet_length(c7000::text)" in shape.query  # measured once a row, behind a fence
    assert "CASE WHEN warmgate_kept THEN c1 END" in shape.query
    assert "OFFSET 0) AS warmgate_guard" in shape.query


@given(st.integers(min_value=1, max_value=1 << 30))
def test_a_chunk_holds_at_most_a_mebibyte_of_rows_and_always_one(widest: int) -> None:
    """libpq is asked for chunks of at most 1 MiB of rows, at least one row, at most 100."""
    rows = rows_per_read(widest)
    assert 1 <= rows <= MAX_ROWS_PER_READ
    assert rows == 1 or rows * widest <= 1 << 20


@pytest.fixture(scope="module")
def shapes_table() -> Iterator[str]:
    """A scratch table in the real PostgreSQL with columns of most kinds; dropped after."""
    pg.require_postgres()
    schema = f"warmgate_test_{secrets.token_hex(4)}"
    with pg.connect() as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        connection.execute(
            sql.SQL(
                "CREATE TABLE {}.shapes (id int4 PRIMARY KEY, t text, b bytea, j jsonb,"
                " v varchar(10), n numeric, a int4[])"
            ).format(sql.Identifier(schema))
        )
        try:
            yield f"{schema}.shapes"
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def text_rows(connection: psycopg.Connection[Any], query: str) -> dict[bytes, list[bytes | None]]:
    """The rows of ``query`` as the server's text, keyed by the first column."""
    result = connection.pgconn.exec_(query.encode())
    assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
    rows = [
        [result.get_value(row, column) for column in range(result.nfields)]
        for row in range(result.ntuples)
    ]
    return {row[0] or b"": row for row in rows}


def columns_of(connection: psycopg.Connection[Any], query: str) -> list[Column]:
    """The columns the server describes for ``query``."""
    connection.pgconn.prepare(b"", query.encode())
    described = connection.pgconn.describe_prepared(b"")
    return [Column(described.ftype(i), described.fmod(i)) for i in range(described.nfields)]


ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "t": st.none() | st.text(max_size=60).filter(lambda text: "\x00" not in text),
            "b": st.none() | st.binary(max_size=40),
            "j": st.none()
            | st.dictionaries(
                st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=5),
                st.integers(),
                max_size=4,
            ),
            "v": st.none() | st.text(max_size=10).filter(lambda text: "\x00" not in text),
            "n": st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=3),
            "a": st.none() | st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
        }
    ),
    min_size=1,
    max_size=8,
)
SMALL = 11 + 40
"""What the guard counts for id (int4) and v (varchar(10)): their bounds."""


@pytest.mark.postgres
@pytest.mark.parametrize(
    "selected",
    [
        ("id", "t", "b", "j", "v", "n", "a"),  # many measured columns: measured once, fenced
        ("id", "t", "v", "b"),  # two stored lengths: measured in each column's CASE
    ],
)
@settings(max_examples=40, deadline=None)
@given(rows=ROWS, row_bytes=st.integers(min_value=2 * SMALL, max_value=400))
def test_the_guard_keeps_exactly_the_rows_within_row_bytes_and_drops_the_rest(
    shapes_table: str, selected: tuple[str, ...], rows: list[dict[str, Any]], row_bytes: int
) -> None:
    """Against the real server: a row is kept, byte for byte as the plain query sends it, exactly
    when its measured columns' text (bytea in hex, jsonb, numeric, arrays, NULLs as nothing) and
    the bounds of its small columns fit in row_bytes; a dropped row arrives with its measured
    columns NULL, its small ones as they are, and the flag true."""
    query = f"SELECT {', '.join(selected)} FROM {shapes_table}"  # noqa: S608 - a scratch table
    small = [name in ("id", "v") for name in selected]
    with pg.connect() as connection:
        connection.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(shapes_table)))
        for index, row in enumerate(rows):
            connection.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)").format(
                    sql.SQL(shapes_table)
                ),
                (index, row["t"], row["b"], json.dumps(row["j"]) if row["j"] is not None else None,
                 row["v"], row["n"], row["a"]),
            )  # fmt: skip
        shape = guard(query, columns_of(connection, query), row_bytes, bytea_hex=True)
        plain, guarded = text_rows(connection, query), text_rows(connection, shape.query)
    assert shape.flag == len(selected)
    assert set(guarded) == set(plain)
    for key, values in plain.items():
        measured = [value for value, is_small in zip(values, small, strict=True) if not is_small]
        width = SMALL + sum(len(value or b"") for value in measured)
        got = guarded[key]
        if width <= row_bytes:
            assert got[:-1] == values
            assert got[-1] in (b"f", None)  # None: the one measured value is NULL
        else:
            dropped = [
                value if is_small else None for value, is_small in zip(values, small, strict=True)
            ]
            assert got == [*dropped, b"t"]


@pytest.mark.postgres
@settings(max_examples=25, deadline=None)
@given(data=st.lists(st.binary(max_size=60), min_size=1, max_size=8))
def test_bytea_in_escape_form_is_never_kept_wider_than_row_bytes(
    shapes_table: str, data: list[bytes]
) -> None:
    """With bytea_output = escape the guard counts four bytes a byte: every row it keeps is
    within row_bytes in the form the server sends."""
    query = f"SELECT id, b FROM {shapes_table}"  # noqa: S608 - a scratch table
    row_bytes = 11 + 120
    with pg.connect() as connection:
        connection.execute("SET bytea_output = escape")
        connection.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(shapes_table)))
        for index, value in enumerate(data):
            connection.execute(
                sql.SQL("INSERT INTO {} (id, b) VALUES (%s, %s)").format(sql.SQL(shapes_table)),
                (index, value),
            )
        shape = guard(query, columns_of(connection, query), row_bytes, bytea_hex=False)
        plain, guarded = text_rows(connection, query), text_rows(connection, shape.query)
    for key, values in plain.items():
        if guarded[key][2] != b"t":  # kept
            assert guarded[key][:2] == values
            assert 11 + len(values[1] or b"") <= row_bytes


WIDEST_VALUES = [
    ("bool", ["true"]),
    ("int2", ["-32768"]),
    ("int4", ["-2147483648"]),
    ("int8", ["-9223372036854775808"]),
    ("oid", ["4294967295"]),
    ("float4", ["-1.17549435e-38", "-3.4028235e+38"]),
    ("float8", ["-2.2250738585072014e-308", "-1.7976931348623157e+308"]),
    ("money", ["-92233720368547758.08"]),
    ("date", ["4713-01-01 BC", "5874897-12-31"]),
    ("time", ["23:59:59.999999"]),
    ("timetz", ["23:59:59.999999-15:59:59"]),
    ("timestamp", ["4713-01-01 00:00:00.000001 BC", "294276-12-31 23:59:59.999999"]),
    ("timestamptz", ["4713-01-01 00:00:00.000001+15:59:59 BC", "294276-12-30 23:59:59.999999"]),
    ("interval", ["-178000000 years -11 months -2147483648 days -2562047788:00:54.775807"]),
    ("uuid", ["00000000-0000-0000-0000-000000000000"]),
    ("inet", ["ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/120"]),
    ("cidr", ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"]),
    ("macaddr8", ["ff:ff:ff:ff:ff:ff:ff:ff"]),
    ("pg_lsn", ["FFFFFFFF/FFFFFFFF"]),
    ('"char"', ["\\377"]),
    ("numeric(7, 3)", ["-9999.999"]),
    ("numeric(3, 5)", ["-0.00999"]),
    ("varchar(3)", ["\U0001f600\U0001f600\U0001f600"]),
    ("bit(5)", ["10101"]),
]
"""The widest value of each bounded type that tests can think of."""
STYLES = [
    ("ISO, MDY", "postgres_verbose", "Pacific/Chatham"),
    ("Postgres, DMY", "sql_standard", "America/St_Johns"),
    ("SQL, MDY", "iso_8601", "Asia/Kathmandu"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("style", STYLES)
def test_the_widest_values_of_bounded_types_fit_their_bound(style: tuple[str, str, str]) -> None:
    """In any DateStyle, IntervalStyle and time zone, the text the server sends for the widest
    values of each bounded type is within the bound the guard counts for that type."""
    pg.require_postgres()
    date_style, interval_style, zone = style
    with pg.connect() as connection:
        connection.execute(f"SET DateStyle = '{date_style}'")
        connection.execute(f"SET IntervalStyle = '{interval_style}'")
        connection.execute(f"SET TimeZone = '{zone}'")
        connection.execute("SET lc_monetary = 'C'")
        for type_name, values in WIDEST_VALUES:
            for value in values:
                query = f"SELECT {sql.Literal(value).as_string(connection)}::{type_name}"
                (column,) = columns_of(connection, query)
                (text,) = text_rows(connection, query).values()
                bound = text_bound(column)
                assert bound is not None, type_name
                assert len(text[0] or b"") <= bound, (type_name, text)


@pytest.mark.postgres
def test_the_guarded_query_keeps_the_plan_of_the_query(orders: pg.Scratch) -> None:
    """Wrapped, the query is planned as it is: every node of its plan, in the same order, under
    the guard's own scan of its rows."""
    query = orders.select("WHERE customer_id = 42 LIMIT 20")
    with pg.connect() as connection:
        shape = guard(query, columns_of(connection, query), 1 << 20, bytea_hex=True)
        plain, guarded = (
            [
                str(row[0]).strip().removeprefix("->  ")
                for row in connection.execute(f"EXPLAIN (COSTS OFF) {text}")
            ]
            for text in (query, shape.query)
        )
    assert shape.flag is not None
    assert "Bitmap Index Scan on orders_customer_id_idx" in plain
    assert guarded[0] == "Subquery Scan on warmgate_rows"
    assert guarded[-len(plain) :] == plain


WIDE = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) "
    "SELECT x, CASE WHEN x > {narrow} THEN zeroblob(70000) ELSE 'n' END FROM c",
    "postgres": "SELECT g, repeat('x', CASE WHEN g > {narrow} THEN 70000 ELSE 1 END) "
    "FROM generate_series(1, 5) g",
    "mariadb": "SELECT seq, REPEAT('x', IF(seq > {narrow}, 70000, 1)) FROM seq_1_to_5",
}
"""Five rows, those after the first ``narrow`` 70,000 bytes wide: wider than ROW_BYTES."""
DROPPED = {
    "postgres": "PostgreSQL does not send them, so the latency leaves out their transfer",
    "mariadb": "it reads them in pieces and drops them",
}
MORE = 'select fewer or narrower columns, or raise row_bytes (docs/sql.md, "Wide rows").'


def url_of(database: str, tmp_path: Path) -> str:
    """The URL of the real server, or of an empty SQLite file, for ``database``."""
    if database == "postgres":
        pg.require_postgres()
        return pg.URL
    if database == "mariadb":
        maria.require_mariadb()
        return maria.URL
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


def run_twice(plan: SqlPlan) -> tuple[list[Any], list[str]]:
    """The plan's query twice through one driver on one connection; outcomes and warnings."""
    warnings: list[str] = []

    async def scenario() -> list[Any]:
        driver = SqlDriver("db", plan, open_pool(plan, 1), warnings.append)
        try:
            return [await driver.execute(), await driver.execute()]
        finally:
            await driver.aclose()

    return asyncio.run(scenario()), warnings


@pytest.mark.parametrize(
    "database",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
     pytest.param("mariadb", marks=pytest.mark.mariadb)],
)  # fmt: skip
def test_narrow_rows_are_counted_as_before_and_warn_of_nothing(
    database: str, tmp_path: Path
) -> None:
    """Rows within row_bytes are all counted, judged by rows, and nothing is warned about."""
    url = url_of(database, tmp_path)
    plan = plan_for(url, WIDE[database].format(narrow=5), row_bytes=ROW_BYTES, rows={"min": 5})
    outcomes, warnings = run_twice(plan)
    assert [outcome.outcome for outcome in outcomes] == [OK, OK]
    assert warnings == []


@pytest.mark.parametrize(
    "database",
    [pytest.param("postgres", marks=pytest.mark.postgres),
     pytest.param("mariadb", marks=pytest.mark.mariadb)],
)  # fmt: skip
def test_wide_rows_are_counted_and_dropped_with_one_warning(database: str, tmp_path: Path) -> None:
    """Rows wider than row_bytes are counted (rows: exactly 5 holds), dropped, and warned about
    once per target, saying how; the next query on the connection runs as usual."""
    url = url_of(database, tmp_path)
    wide = plan_for(url, WIDE[database].format(narrow=3), row_bytes=ROW_BYTES,
                    rows={"min": 5, "max": 5})  # fmt: skip
    outcomes, warnings = run_twice(wide)
    assert [outcome.outcome for outcome in outcomes] == [OK, OK]
    assert warnings == [
        "target 'db': the query returned 2 rows wider than row_bytes (64KiB); warmgate "
        f"counts such rows without keeping them ({DROPPED[database]}); {MORE}"
    ]


def test_sqlite_stops_at_a_value_longer_than_row_bytes(tmp_path: Path) -> None:
    """SQLite makes no value longer than row_bytes: the query stops there, the rows before it
    count, a rows expectation cannot hold and says why, and it is warned about once."""
    url = url_of("sqlite", tmp_path)
    query = WIDE["sqlite"].format(narrow=3)
    unjudged = plan_for(url, query, row_bytes=ROW_BYTES)
    judged = plan_for(url, query, row_bytes=ROW_BYTES, rows={"min": 1})
    outcomes, warnings = run_twice(unjudged)
    assert [outcome.outcome for outcome in outcomes] == [OK, OK]
    assert warnings == [
        "target 'db': SQLite stopped the query at a value longer than row_bytes (64KiB), "
        f"so the rows after it were neither read nor counted; {MORE}"
    ]
    outcomes, _ = run_twice(judged)
    assert [outcome.outcome for outcome in outcomes] == [UNEXPECTED_STATUS] * 2
    assert outcomes[0].detail == (
        "stopped after 3 rows at a value longer than row_bytes; expected at least 1 row"
    )


@pytest.mark.postgres
def test_a_query_postgres_cannot_wrap_runs_unchecked_with_one_warning() -> None:
    """A query that PostgreSQL cannot read as a subquery (a comment after its semicolon) still
    runs and counts its rows, with one warning that its rows are not bounded."""
    pg.require_postgres()
    plan = plan_for(pg.URL, "SELECT 'a' AS x; -- the end", rows={"min": 1, "max": 1})
    outcomes, warnings = run_twice(plan)
    assert [outcome.outcome for outcome in outcomes] == [OK, OK]
    assert warnings == [
        "target 'db': PostgreSQL cannot run the query as a subquery (syntax error at or near "
        '";"), so warmgate receives its rows whole, however wide, and row_bytes does not bound '
        "its memory (SHOW and EXPLAIN cannot be read so; a query can, once nothing follows its "
        "last semicolon)."
    ]


@pytest.mark.mariadb
def test_a_row_of_several_packets_is_one_wide_row(tmp_path: Path) -> None:
    """A row over 16 MiB comes in two packets: it counts as one row, wide, and the connection
    stays in step for the next query."""
    with maria.private_server(tmp_path / "db", options=["--max-allowed-packet=64M"]) as server:
        url = f"mariadb://root@127.0.0.1:{server.port}/test"
        query = "SELECT seq, REPEAT('x', IF(seq = 2, 17000000, 3)) FROM seq_1_to_3"
        plan = plan_for(url, query, rows={"min": 3, "max": 3})
        outcomes, warnings = run_twice(plan)
    assert [outcome.outcome for outcome in outcomes] == [OK, OK]
    assert len(warnings) == 1
    assert "returned 1 row wider than row_bytes (1MiB)" in warnings[0]


def prime_peak(directory: Path, url: str, query: str, concurrency: int) -> tuple[int, int, str]:
    """Run ``warmgate prime`` on one SQL target to the end; its exit code, the peak resident
    memory of its process in bytes (the kernel's ru_maxrss, see ``run_measuring_peak``), and
    its output."""
    config = directory / "warmup.yaml"
    config.write_text(
        "targets:\n"
        f"  - name: wide\n    sql: {{url: '{url}', query: \"{query}\", timeout: 30s}}\n"
        f"load: {{concurrency: {concurrency}, ramp_step: 100ms}}\n"
        f"gate: {{window: 10s, hold: 1s, min_requests: {2 * concurrency}, timeout: 90s,"
        " on_timeout: fail}\n"
        f"status_dir: {directory / 'status'}\n"
    )
    argv = [sys.executable, "-m", "warmgate", "prime", "--config", str(config), "--log-format",
            "json"]  # fmt: skip
    return run_measuring_peak(argv, directory, cli_env())


MEMORY_CASES = {
    "postgres": (
        "SELECT g, repeat('x', {width}) FROM generate_series(1, {rows}) g",
        pytest.mark.postgres,
    ),
    "mariadb": ("SELECT seq, REPEAT('x', {width}) FROM seq_1_to_{rows}", pytest.mark.mariadb),
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {rows}) "
        "SELECT x, zeroblob({width}) FROM c",
        pytest.mark.slow,
    ),
}
"""Rows of a given width, made by each database (zeroblob: SQLite's blob of zeros)."""
LIMIT = 128 * 2**20
"""The memory limit of the sidecar and init-container manifests."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("database", "width", "rows", "concurrency"),
    [
        pytest.param(database, width, rows, concurrency, marks=mark,
                     id=f"{database}-{width // 1_000_000}MB-c{concurrency}")
        for database, (_, mark) in MEMORY_CASES.items()
        for width, rows, concurrency in ((1_000_000, 24, 8), (15_000_000, 12, 1))
    ],
)  # fmt: skip
def test_a_primer_priming_wide_rows_stays_under_128_mib(
    database: str, width: int, rows: int, concurrency: int, tmp_path: Path
) -> None:
    """`warmgate prime` priming 1 MB rows at concurrency 8, or 15 MB rows at concurrency 1 (a
    dozen or more rows per query, which whole rows would hold hundreds of MB for), ends warm
    with its process's peak memory under the 128 MiB limit."""
    url = url_of(database, tmp_path)
    query = MEMORY_CASES[database][0].format(width=width, rows=rows)
    code, peak, output = prime_peak(tmp_path, url, query, concurrency)
    assert code == 0, output[-3000:]
    assert peak < LIMIT, f"peak {peak / 2**20:.0f} MiB"
    assert ("wider than row_bytes" in output or "longer than row_bytes" in output) == (
        width > 1 << 20
    )


@pytest.mark.parametrize(
    ("row_bytes", "message"),
    [
        (1000, "targets[0].sql.row_bytes: 1000 bytes is outside 64KiB to 1GiB; write a size "
               "within them, such as '1MiB'"),
        ("2GiB", "2147483648 bytes is outside 64KiB to 1GiB"),
        ("1MB", "targets[0].sql.row_bytes: '1MB' is not a size; write a number of bytes, or one "
                "with KiB, MiB or GiB, such as '1MiB'"),
        (True, "targets[0].sql.row_bytes: 'True' is not a size"),
    ],
)  # fmt: skip
def test_a_row_bytes_mistake_is_one_sentence_naming_the_fix(
    row_bytes: object, message: str
) -> None:
    """row_bytes out of range or not a size is a config error saying what to write."""
    target = {"name": "x", "sql": {"url": "sqlite:///a.db", "query": "SELECT 1"}}
    target["sql"]["row_bytes"] = row_bytes  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"targets": [target]}, environ={})
    assert message in str(caught.value)


def test_row_bytes_takes_a_size_with_a_binary_unit(tmp_path: Path) -> None:
    """row_bytes reads '256KiB' or '2Mi' as bytes, as Kubernetes writes memory; 1 MiB unset."""
    config_file = tmp_path / "warmup.yaml"
    config_file.write_text(
        "targets:\n"
        "  - {name: a, sql: {url: 'sqlite:///a.db', query: SELECT 1, row_bytes: 256KiB}}\n"
        "  - {name: b, sql: {url: 'sqlite:///a.db', query: SELECT 1, row_bytes: 2Mi}}\n"
        "  - {name: c, sql: {url: 'sqlite:///a.db', query: SELECT 1}}\n"
    )
    config, _ = load_config(config_file, environ={})
    sizes = [target.sql.row_bytes for target in config.targets if target.sql is not None]
    assert sizes == [256 * 1024, 2 * 2**20, 2**20]


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_a_size_reads_back_as_it_was_written(size: int) -> None:
    """Any number of bytes (up to twelve digits), written in its largest whole binary unit,
    reads back the same."""
    assert parse_size(format_size(size)) == size


def test_a_shape_is_learnt_once_a_minute_and_again_after_a_failure() -> None:
    """A query's shape is described once, used for a minute (on a fake clock), described again
    after that, after the clock went back, and after the query failed."""
    described: list[str] = []

    async def describe(query: str) -> tuple[list[Column], bool]:
        described.append(query)
        return [Column(INT4)], True

    async def scenario() -> list[int]:
        shapes, key = Shapes(), ("SELECT 1", (), 1 << 20)
        counts = []
        for now in (0.0, 30.0, SHAPE_LIFETIME + 0.5, SHAPE_LIFETIME + 1.0, 10.0):
            if shapes.get(key, now) is None:
                await shapes.learn(key, describe, now)
            counts.append(len(described))
        shapes.forget(key)
        assert shapes.get(key, 11.0) is None
        return counts

    assert asyncio.run(scenario()) == [1, 1, 2, 2, 3]


@pytest.mark.postgres
def test_a_query_whose_table_changed_is_described_again(shapes_table: str) -> None:
    """When a column the guard named is dropped, the next query fails once, as the plain query
    might, and the one after is described again and runs."""
    table = f"{shapes_table}_changing"
    with pg.connect() as connection:
        connection.execute(sql.SQL("CREATE TABLE {} (id int, note text)").format(sql.SQL(table)))
        connection.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a')").format(sql.SQL(table)))
    plan = plan_for(pg.URL, f"SELECT * FROM {table}", rows={"min": 1, "max": 1})  # noqa: S608

    async def scenario() -> list[Any]:
        driver = SqlDriver("db", plan, open_pool(plan, 1), lambda _: None)
        try:
            outcomes = [await driver.execute()]
            with pg.connect() as connection:
                connection.execute(sql.SQL("ALTER TABLE {} DROP note").format(sql.SQL(table)))
            return [*outcomes, await driver.execute(), await driver.execute()]
        finally:
            await driver.aclose()

    outcomes = asyncio.run(scenario())
    assert [outcome.outcome for outcome in outcomes] == [OK, ERROR, OK]
