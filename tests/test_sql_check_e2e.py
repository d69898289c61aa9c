"""The real CLI refuses the statement-check escapes at start-up: ``validate`` and ``prime`` exit
2 with a sentence, and no row or file is written, where the same query run unchecked does."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import maria, pg
from tests.helpers import run_cli
from tests.test_sql_e2e import FAST_GATE, write_config
from warmgate.config.sql_target import SqlTarget
from warmgate.decide.outcomes import OK
from warmgate.traffic.driver import Outcome
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan
from warmgate.traffic.templating import Templates

pytestmark = pytest.mark.slow

ESCAPES = [
    "SELECT 1 -- c\r, {call}",
    "SELECT 1 /* a /* b */ */, {call}",
    "SELECT name'\\', {call} --'",
    "SELECT 1 AS x$$, {call} AS y$$",
    "SELECT 'a\\', {call} --'",
    "SELECT 1 AS x$a$, {call} AS y$a$",
]


def target_yaml(url: str, query: str, params: str = "{}") -> str:
    """One SQL target named db as a YAML list item, the query double-quoted with escapes."""
    quoted = query.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
    quoted = quoted.replace("\n", "\\n")
    return f'  - name: db\n    sql:\n      url: "{url}"\n      query: "{quoted}"\n      params: {params}\n'


def run_unchecked(url: str, query: str, params: dict[str, str] | None = None) -> Outcome:
    """Run ``query`` once through warmgate's driver with the start-up check skipped; the
    outcome (what the database does to a query that got past the check)."""
    target = SqlTarget(url=url, query="SELECT 1")
    plan = dataclasses.replace(
        SqlPlan.compile(target, Templates(), "targets[0].sql", "db"),
        query=query,
        params=tuple((k, Templates().compile(v, k)) for k, v in (params or {}).items()),
    )

    async def once() -> Outcome:
        driver = SqlDriver.open("db", plan, 1)
        try:
            return await driver.execute()
        finally:
            await driver.aclose()

    return asyncio.run(once())


@pytest.fixture(scope="module")
def victim_db() -> Iterator[str]:
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


@pytest.mark.postgres
@pytest.mark.parametrize("escape", ESCAPES)
def test_postgresql_escapes_exit_2_and_delete_nothing(
    victim_db: str, escape: str, tmp_path: Path
) -> None:
    """Run unchecked, the escape deletes a row through dblink; ``validate`` and ``prime`` refuse
    it at start-up with exit 2 and a sentence, and no row goes."""
    url = f"postgresql+psycopg://postgres@{pg.HOST}:{pg.PORT}/{victim_db}"
    remote = f"host={pg.HOST} port={pg.PORT} user=postgres dbname={victim_db}"
    before = victims(victim_db)
    deleting = escape.format(
        call=f"dblink_exec('{remote}', 'DELETE FROM victim WHERE id = {before}')"  # noqa: S608
    )
    outcome = run_unchecked(url, deleting)
    assert outcome.outcome == OK, outcome.detail
    assert victims(victim_db) == before - 1

    query = escape.format(call=f"dblink_exec('{remote}', 'DELETE FROM victim')")  # noqa: S608
    config = write_config(tmp_path, target_yaml(url, query), FAST_GATE)
    validated = run_cli("validate", "--config", str(config))
    primed = run_cli("prime", "--config", str(config))
    for result in (validated, primed):
        assert result.returncode == 2, result.stdout + result.stderr
        assert (
            "target 'db': targets[0].sql.query calls dblink_exec, which opens a connection"
            in result.stderr
        )
        assert "Traceback" not in result.stderr
    assert victims(victim_db) == before - 1
    assert not (tmp_path / "status" / "ready").exists()


@pytest.mark.postgres
def test_reading_a_server_file_behind_dollar_names_exits_2(tmp_path: Path) -> None:
    """``SELECT 1 AS x$$, pg_read_file(...) AS y$$`` is a call of pg_read_file to ``validate``."""
    pg.require_postgres()
    query = "SELECT 1 AS x$$, pg_read_file('/etc/hostname') AS y$$"
    config = write_config(tmp_path, target_yaml(pg.URL, query), FAST_GATE)
    result = run_cli("validate", "--config", str(config))
    assert result.returncode == 2
    assert "calls pg_read_file, which reads or writes files on the database server" in result.stderr


@pytest.mark.mariadb
@pytest.mark.filterwarnings("ignore::pymysql.err.Warning")  # the server's note on INTO's place
def test_a_parameter_in_quotes_never_writes_a_file(tmp_path: Path) -> None:
    """``LIKE '%:q%'`` with a value `` INTO OUTFILE `` writes a file when bound into the text;
    ``validate`` and ``prime`` refuse it with exit 2 naming :q, and no file is written."""
    maria.require_mariadb()
    words = tmp_path / "words.txt"
    words.write_text(" INTO OUTFILE \n")
    query = "SELECT id FROM items WHERE name LIKE '%:q%'"
    params = {"q": f"{{{{ line('{words}') }}}}"}
    with maria.private_server(tmp_path / "db") as server:
        maria.sql("CREATE TABLE items (id INT, name VARCHAR(20)); INSERT INTO items VALUES (1, 'a')",
                  port=server.port)  # fmt: skip
        url = f"mariadb://root@127.0.0.1:{server.port}/test"
        written = tmp_path / "db" / "data" / "test" / "%"
        outcome = run_unchecked(url, query, params)
        assert outcome.outcome == OK, outcome.detail
        assert written.exists()  # the value closed the literal and the server wrote '%'
        written.unlink()

        yaml_params = f'{{q: "{params["q"]}"}}'
        config = write_config(tmp_path, target_yaml(url, query, yaml_params), FAST_GATE)
        validated = run_cli("validate", "--config", str(config))
        primed = run_cli("prime", "--config", str(config))
        for result in (validated, primed):
            assert result.returncode == 2, result.stdout + result.stderr
            assert "targets[0].sql.query has :q inside a string literal" in result.stderr
            assert "CONCAT('%', :q, '%')" in result.stderr
        assert not written.exists()
