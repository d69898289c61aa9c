"""The statement check reads a query as its server does: escapes that hid a call from a
regex reading are refused, ordinary reads pass, and parameters sit only where they are bound."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.mysql.aiomysql import MySQLDialect_aiomysql
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine.default import DefaultDialect

from warmgate.config.sql_target import SqlTarget
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.sql.binding import Style, bind
from warmgate.traffic.sql.check import Dialect, read_query
from warmgate.traffic.sql.driver import SqlPlan
from warmgate.traffic.templating import Templates

PG, MY, LITE = Dialect.POSTGRESQL, Dialect.MYSQL, Dialect.SQLITE
DBLINK = "dblink_exec('dbname=test', 'DELETE FROM orders')"
LOCK = "GET_LOCK('x', 1)"


def refusal(query: str, dialect: Dialect) -> str | None:
    """The sentence fragment the check refuses ``query`` with, or ``None``."""
    reading = read_query(query, dialect)
    return reading.write or reading.unreadable or reading.parameter or reading.escape


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        # a -- comment ends at \r (and at \n), wherever it starts
        (f"SELECT 1 -- c\r, {DBLINK}", "calls dblink_exec, which opens a connection"),
        (f"SELECT 1 --\r,{DBLINK}", "calls dblink_exec"),
        (f"SELECT 1 -- c\r\n, {DBLINK}", "calls dblink_exec"),
        (f"SELECT 1 -- c\n, {DBLINK}", "calls dblink_exec"),
        # block comments nest
        (f"SELECT 1 /* a /* b */ */, {DBLINK}", "calls dblink_exec"),
        (f"SELECT 1 /* /* /* */ */ */, {DBLINK}", "calls dblink_exec"),
        (f"SELECT 1 /*/ x */, {DBLINK}", "calls dblink_exec"),
        # a typed literal is a standard string, not an E'' one
        (f"SELECT name'\\', {DBLINK} --'", "calls dblink_exec"),
        (f"SELECT text'\\', {DBLINK} --'", "calls dblink_exec"),
        (f"SELECT date'\\', {DBLINK} --'", "calls dblink_exec"),
        (f"SELECT 'a\\', {DBLINK} --'", "calls dblink_exec"),
        (f"SELECT E'\\\\', {DBLINK} --'", "calls dblink_exec"),
        (f"SELECT e'\\'', {DBLINK}", "calls dblink_exec"),
        (f"SELECT U&'\\0027', {DBLINK}", "calls dblink_exec"),
        # $ inside a name is no dollar quote
        (f"SELECT 1 AS x$$, {DBLINK} AS y$$", "calls dblink_exec"),
        ("SELECT 1 AS x$$, pg_read_file('/etc/hostname') AS y$$", "calls pg_read_file, which reads or writes files"),
        (f"SELECT 1 AS x$a$, {DBLINK} AS y$a$", "calls dblink_exec"),
        (f"SELECT x$$ FROM (SELECT 1 AS x$$, {DBLINK}) t", "calls dblink_exec"),  # noqa: S608
        (f"SELECT $a$ $$ $a$, {DBLINK}", "calls dblink_exec"),
        (f"SELECT $$ $a$ $$, {DBLINK}", "calls dblink_exec"),
        # names however written: quoted, Unicode-escaped, qualified, attribute notation
        ("SELECT \"dblink_exec\"('a', 'b')", "calls dblink_exec"),
        ("SELECT U&\"d\\0062link_exec\"('a', 'b')", "calls dblink_exec"),
        ("SELECT U&\"d!0062link_exec\" UESCAPE '!' ('a', 'b')", "calls dblink_exec"),
        (f"SELECT public.{DBLINK}", "calls dblink_exec"),
        ("SELECT \"public\".\"dblink_exec\"('a', 'b')", "calls dblink_exec"),
        ("SELECT DBLINK_EXEC('a', 'b')", "calls dblink_exec"),
        ("SELECT dblink_exec\n('a', 'b')", "calls dblink_exec"),
        ("SELECT dblink_exec/**/('a', 'b')", "calls dblink_exec"),
        ("SELECT ('x'::text).dblink_exec", "calls dblink_exec"),
        ("SELECT t.pg_read_file FROM (SELECT '/etc/hostname'::text) t", "calls pg_read_file"),
        ("SELECT * FROM dblink('a', 'b') AS t(x int)", "calls dblink, which"),
        ("SELECT * FROM ROWS FROM (dblink('a', 'b') AS (x int))", "calls dblink, which"),
        (f"WITH x AS (SELECT {DBLINK}) SELECT * FROM x", "calls dblink_exec"),  # noqa: S608
        (f"SELECT 1 WHERE EXISTS (SELECT {DBLINK})", "calls dblink_exec"),
        (f"SELECT count(*) FILTER (WHERE {DBLINK} = 'x') FROM t", "calls dblink_exec"),  # noqa: S608
        (f"EXPLAIN ANALYZE SELECT {DBLINK}", "calls dblink_exec"),
        (f"VALUES ({DBLINK})", "calls dblink_exec"),
        ("SELECT pg_stat_reset()", "resets statistics"),
        ("SELECT pg_reload_conf()", "acts on the whole server"),
        ("SELECT pg_drop_replication_slot('s')", "acts on replication"),
        ("SELECT query_to_xml('SELECT pg_terminate_backend(1)', true, false, '')", "calls query_to_xml, which runs SQL text"),
        ("SELECT * FROM ts_stat('SELECT to_tsvector(''a'')')", "calls ts_stat, which runs SQL text"),
        # what the server would not read as the check does, or at all
        (f"SELECT 1 \x00, {DBLINK}", "holds a NUL character"),
        ("SELECT '\ud800'", "holds '\\ud800', which is not a character"),
        ("SELECT 0x1F", "writes the number 0x1F, which PostgreSQL reads as a number only from version 16"),
        ("SELECT 1_000 AS n", "writes the number 1_000"),
        ("SELECT 1 /* never closed", "is not valid PostgreSQL (unterminated /* comment"),
        (f"SELECT 1; {DBLINK}", "is not valid PostgreSQL"),
        ("SELECT $1", "holds $1, a parameter warmgate does not bind"),
        ("DECLARE c CURSOR FOR SELECT 1", "starts with DECLARE, which is not a read-only query"),
        ("SELECT * FROM (SELECT 1 FROM t FOR SHARE) s", "takes row locks"),
        ("WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x", "contains UPDATE, which writes data"),
        ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "contains INTO (SELECT INTO creates a table)"),
        ("EXPLAIN ANALYZE EXECUTE p", "holds a ExecuteStmt node, which the statement check cannot classify"),
        ("COPY (SELECT 1) TO PROGRAM 'id'", "starts with COPY, which is not a read-only query"),
    ],
)  # fmt: skip
def test_postgresql_escapes_are_refused_with_a_sentence(query: str, problem: str) -> None:
    """Each way to hide a call or a write from a reading that is not PostgreSQL's is refused."""
    found = refusal(query, PG)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT 1 /* a /* b */ , {DBLINK} */",
        f"SELECT 1 -- {DBLINK}",
        f"SELECT $q${DBLINK}$q$ AS sql",
        "SELECT E'it\\'s dblink_exec(1)' AS text",
        "SELECT 1 AS x$$, 2 AS y$$",
        "SELECT name'\\' AS backslash",
        "SELECT U&'\\0041' UESCAPE '!' AS a",
        "SELECT * FROM orders WHERE note LIKE '%' || :q || '%'",
        "SELECT * FROM orders WHERE placed > CAST(:day AS date) ORDER BY id LIMIT 20",
        "SELECT x FROM t WINDOW w AS () ORDER BY 1",
        "SELECT json_agg(t) FROM (SELECT 1 AS a) t",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT set_config('standard_conforming_strings', 'off', true)",
        "SHOW ALL",
        "TABLE orders",
        "EXPLAIN (FORMAT JSON) SELECT 1",
        "SELECT 1;;",
    ],
)
def test_postgresql_reads_pass(query: str) -> None:
    """Reads pass, whatever their comments, strings and names hold."""
    assert refusal(query, PG) is None


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (f"SELECT 1 --\t\n, {LOCK}", "calls get_lock"),
        (f"SELECT 1 --x, {LOCK}", "calls get_lock"),
        (f"SELECT 1 /* a /* b */ , {LOCK} */", "calls get_lock"),
        (f"SELECT 1 /*! , {LOCK} */", "holds an executable comment"),
        (f"SELECT 1 /*M! , {LOCK} */", "holds an executable comment"),
        (f"SELECT 1 /*!50000 , {LOCK} */", "holds an executable comment"),
        (f"SELECT 'a''', {LOCK} -- '", "calls get_lock"),
        (f"SELECT \"a\\\"\", {LOCK}", "calls get_lock"),
        (f"SELECT `a``b`, {LOCK}", "calls get_lock"),
        (f"SELECT _utf8mb4'a\\'', {LOCK}", "calls get_lock"),
        (f"SELECT N'a\\'', {LOCK}", "calls get_lock"),
        (f"SELECT X'41', {LOCK}", "calls get_lock"),
        (f"SELECT ax'\\'', {LOCK}", "calls get_lock"),
        (f"SELECT X'4\\', {LOCK} -- '", "has a X'...' literal that holds more than its digits"),
        (f"SELECT 1 AS x$$, {LOCK} AS y$$", "calls get_lock"),
        (f"SELECT 1 \x00, {LOCK}", "holds a NUL character"),
        (f"SELECT 1 # \x00\n, {LOCK}", "holds a NUL character"),
        (f"SELECT \\N, {LOCK}", "calls get_lock"),
        (f"SELECT 1 \\ , {LOCK}", "holds '\\\\' outside quotes"),
        ("SELECT get_lock /* c */ ('x', 1)", "calls get_lock"),
        ("SELECT db.GeT_LoCk('x', 1)", "calls get_lock"),
        ("SELECT NEXT /* c */ VALUE FOR s", "calls NEXT VALUE FOR"),
        ("SELECT 'never closed", "has a quoted string that is never closed"),
        ("SELECT `never closed", "has a quoted name that is never closed"),
        ("SELECT 1 /* never closed", "has a /* comment that is never closed"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "contains INTO OUTFILE"),
    ],
)  # fmt: skip
def test_mysql_escapes_are_refused_with_a_sentence(query: str, problem: str) -> None:
    """Each way to hide a call or a write from a reading that is not the server's is refused."""
    found = refusal(query, MY)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT 1 # c\r, {LOCK}",
        f"SELECT 1 -- c\r, {LOCK}",
        f"SELECT 1 --\x01, {LOCK}",
        f"SELECT 1 /*+ , {LOCK} */",
        "SELECT 'a\\', GET_LOCK(1) -- '",
        f'SELECT "a\\", {LOCK} -- "',
        "SELECT 1; -- a trailing comment",
        "SELECT name FROM items WHERE name LIKE CONCAT('%', :q, '%')",
        "SELECT 5--1",
        "SELECT 1 --",
    ],
)
def test_mysql_reads_pass(query: str) -> None:
    """Text that the server reads as a comment or a string is not code to the check either."""
    assert refusal(query, MY) is None


@pytest.mark.parametrize(
    ("dialect", "query", "where"),
    [
        (MY, "SELECT id FROM items WHERE name LIKE '%:q%'", "inside a string literal"),
        (MY, 'SELECT id FROM items WHERE name LIKE "%:q%"', "inside a string literal"),
        (MY, "SELECT id FROM items WHERE name LIKE N'%:q%'", "inside a string literal"),
        (MY, "SELECT `:q` FROM items", "inside a quoted name"),
        (MY, "SELECT id FROM items # :q\n", "inside a comment"),
        (MY, "SELECT id FROM items /* :q */", "inside a comment"),
        (PG, "SELECT id FROM items WHERE name LIKE '%:q%'", "inside a string literal"),
        (PG, "SELECT id FROM items WHERE name LIKE E'%:q%'", "inside a string literal"),
        (PG, "SELECT $$ :q $$", "inside a string literal"),
        (PG, 'SELECT ":q" FROM items', "inside a quoted name"),
        (PG, "SELECT 1 -- :q", "inside a comment"),
        (PG, "SELECT 1 /* /* */ :q */", "inside a comment"),
        (LITE, "SELECT id FROM items WHERE name LIKE '%:q%'", "inside a string literal"),
        (LITE, "SELECT [:q] FROM items", "inside a quoted name"),
    ],
)
def test_a_parameter_outside_code_is_never_bound(dialect: Dialect, query: str, where: str) -> None:
    """A :name inside a string, a quoted name or a comment is named, with where it sits."""
    found = read_query(query, dialect).parameter
    assert found is not None
    assert found.startswith(f"has :q {where}, where the server does not read a value")


@pytest.mark.parametrize(("before", "after"), [("@", " "), (" ", "'x'"), ("x$", " "), (" ", ".a")])
def test_a_mysql_parameter_that_would_run_into_its_neighbour_is_refused(
    before: str, after: str
) -> None:
    """A value pasted right beside a name, a quote or @ would not stay one token: refused."""
    found = read_query(f"SELECT {before}:q{after}", MY).unreadable
    assert found is not None
    assert "which would run into its value" in found


def test_the_like_pattern_with_a_parameter_in_quotes_is_a_config_error() -> None:
    """'%:q%' on MariaDB stops the config with the target, the parameter and the fix."""
    target = SqlTarget(
        url="mariadb://app@db/shop",
        query="SELECT id FROM items WHERE name LIKE '%:q%'",
        params={"q": "{{ line('words.txt') }}"},
    )
    with pytest.raises(ConfigError) as caught:
        SqlPlan.compile(target, Templates(), "targets[0].sql", "shop-db")
    assert str(caught.value) == (
        "target 'shop-db': targets[0].sql.query has :q inside a string literal, where the "
        "server does not read a value, so warmgate will not bind it there; write the parameter "
        "outside quotes and comments, such as CONCAT('%', :q, '%'), or write \\:q for a "
        "literal colon."
    )


def test_an_unreadable_query_is_a_config_error_naming_the_fix() -> None:
    """A query the check cannot read stops the config with the reason and where to read on."""
    target = SqlTarget(url="postgresql://app@db/shop", query="SELECT 0x1F")
    with pytest.raises(ConfigError) as caught:
        SqlPlan.compile(target, Templates(), "targets[0].sql", "shop-db")
    assert str(caught.value).startswith(
        "target 'shop-db': targets[0].sql.query writes the number 0x1F, which PostgreSQL reads"
    )
    assert str(caught.value).endswith(
        'so write it in plain SQL (docs/sql.md, "The statement check").'
    )


PIECES = [":a", ":b", ":é", ":1", "\\:x", "x:y", ":a::int", "%", "%s", "'", " ", "\\", ":", "::"]
COMPILERS = [
    (DefaultDialect(paramstyle="numeric_dollar"), Style.NUMERIC_DOLLAR),
    (MySQLDialect_aiomysql(), Style.FORMAT),
    (SQLiteDialect_aiosqlite(), Style.QMARK),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=12).map("".join))
def test_parameters_are_rendered_as_sqlalchemy_renders_them(query: str) -> None:
    """The text and names a driver sends are SQLAlchemy's for text(), in every parameter
    style, and each site is a placeholder in the server's text."""
    for dialect, style in COMPILERS:
        compiled = sqlalchemy.text(query).compile(dialect=dialect)
        bound = bind(query, style)
        assert (bound.text, bound.names) == (compiled.string, tuple(compiled.positiontup or ()))
        for site in bound.sites:
            placeholder = bound.server[site.start : site.end]
            assert placeholder == "?" or placeholder == f"${bound.names.index(site.name) + 1}"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40))
def test_any_text_in_a_postgresql_comment_or_dollar_quote_is_not_code(text: str) -> None:
    """Whatever a dollar-quoted string or a comment holds, PostgreSQL's scanner reads it as
    text, and so does the check."""
    text = text.replace(":", "")  # a :name is a parameter wherever it is
    body = text.replace("$q$", "")
    comment = text.replace("*/", "").replace("/*", "")
    for query in (f"SELECT $q${body}$q$ AS a", f"SELECT 1 /* {comment} */"):
        assert refusal(query, PG) is None, query


@pytest.mark.parametrize("charset", ["gbk", "SJIS", "big5", "cp932", "gb18030", "ujis", "eucjpms"])
def test_a_charset_whose_characters_can_end_in_a_backslash_is_refused(charset: str) -> None:
    """Values escaped with backslashes are only safe where no character ends in one: refused."""
    target = SqlTarget(url=f"mariadb://app@db/shop?charset={charset}", query="SELECT 1")
    with pytest.raises(ConfigError) as caught:
        SqlPlan.compile(target, Templates(), "targets[0].sql", "shop-db")
    assert str(caught.value).startswith(
        f"targets[0].sql.url: ?charset={charset.lower()} is refused: in it a backslash can end"
    )


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("SELECT " + " + ".join(["1"] * 5001), "holds 10002 tokens, more than the 10000 the check reads"),
        ("SELECT 1 AS " + "x" * 100_000, "is 100012 characters long, more than the 100000 the check reads"),
    ],
)  # fmt: skip
def test_a_query_too_long_to_read_is_refused_not_parsed(query: str, problem: str) -> None:
    """A query longer than the check reads is refused with a sentence, before pglast's parser
    (whose tree for 40,000 chained operators overflows the C stack) sees it."""
    found = read_query(query, PG).unreadable
    assert found is not None
    assert found.startswith(problem)


def test_a_deep_query_within_the_bounds_is_read() -> None:
    """A chain of 4,999 operators, as deep as the bounds allow, parses on the check's own stack."""
    assert refusal("SELECT " + " + ".join(["1"] * 4999), PG) is None


def test_the_parse_does_not_depend_on_the_callers_stack() -> None:
    """With a 512 KiB main stack, where pglast called directly overflows on a chain of 4,999
    operators, the check still reads it: it parses on a thread with a stack of its own."""
    code = (
        "from warmgate.traffic.sql.check import Dialect, read_query;"
        "print(read_query('SELECT ' + ' + '.join(['1'] * 4999), Dialect.POSTGRESQL).unreadable)"
    )
    done = subprocess.run(
        ["bash", "-c", 'ulimit -s 512 && exec "$0" -c "$1"', sys.executable, code],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "None"), done.stderr


def test_a_colon_word_in_a_comment_is_named_as_misplaced_not_missing() -> None:
    """``-- see :foo`` is a parameter to SQLAlchemy's rules: the error says where it sits and
    how to write a literal colon, rather than asking for a value."""
    target = SqlTarget(url="postgresql://app@db/shop", query="SELECT 1 -- see :foo")
    with pytest.raises(ConfigError) as caught:
        SqlPlan.compile(target, Templates(), "targets[0].sql", "shop-db")
    assert str(caught.value).startswith(
        "target 'shop-db': targets[0].sql.query has :foo inside a comment, where the server"
    )
    assert "or write \\:foo for a literal colon." in str(caught.value)
