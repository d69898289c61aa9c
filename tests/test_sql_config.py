"""SQL targets in the config: validation, the start-up read-only check, redaction, imports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli
from warmgate.config.describe import describe
from warmgate.config.loader import load_config
from warmgate.config.model import Config
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.sql.check import escape_problem, write_problem
from warmgate.traffic.sql.driver import bind_value
from warmgate.traffic.sql.outcomes import message_phrase
from warmgate.traffic.targets import compile_targets, open_drivers

PG = "postgresql+psycopg://app@db.internal:5432/orders"


def sql_config(**sql: object) -> dict[str, object]:
    """A config with one SQL target named orders-db."""
    return {"targets": [{"name": "orders-db", "sql": {"url": PG, "query": "SELECT 1", **sql}}]}


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("DELETE FROM orders", "starts with DELETE, which writes data"),
        ("insert into orders values (1)", "starts with INSERT, which writes data"),
        ("UPDATE orders SET note = 'x'", "starts with UPDATE, which writes data"),
        ("DROP TABLE orders", "starts with DROP, which is not a read-only query"),
        ("CREATE TABLE t (x int)", "starts with CREATE"),
        ("TRUNCATE orders", "starts with TRUNCATE"),
        ("SET statement_timeout = 0", "starts with SET"),
        ("WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone", "DELETE"),
        ("EXPLAIN ANALYZE UPDATE orders SET note = ''", "contains UPDATE, which writes data"),
        ("SELECT * INTO copy FROM orders", "SELECT INTO creates a table"),
        ("SELECT * FROM orders FOR UPDATE", "takes row locks"),
        ("SELECT * FROM orders FOR NO KEY UPDATE", "takes row locks"),
        ("SELECT * FROM orders FOR SHARE", "takes row locks"),
        ("SELECT 1; DELETE FROM orders", "more than one statement"),
        ("-- only a comment", "has no statement"),
    ],
)
def test_obvious_writes_are_spotted(query: str, problem: str) -> None:
    """A statement that obviously writes, locks or is not one query gets a reason."""
    found = write_problem(query)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM orders WHERE customer_id = :cid LIMIT 20",
        "  select 1;  ",
        "WITH recent AS (SELECT * FROM orders ORDER BY id DESC LIMIT 5) SELECT * FROM recent",
        "SELECT 'delete from orders; update x' AS note, \"insert\" FROM t -- drop table\n",
        "/* UPDATE */ SELECT $$ DELETE $$, E'it\\'s; into' ",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "VALUES (1), (2)",
        "TABLE orders",
        "EXPLAIN SELECT * FROM orders",
        "SHOW server_version",
        "SELECT deleted_at, updated_by, created FROM orders",
    ],
)
def test_reads_pass_the_check(query: str) -> None:
    """Reads pass, whatever their comments, quoted text and look-alike names contain."""
    assert write_problem(query) is None


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("SELECT dblink_exec('dbname=x', 'DELETE FROM t')", "calls dblink_exec, which opens a connection of its own"),
        ("SELECT * FROM public.dblink('dbname=x', 'SELECT 1') AS t(x int)", "calls dblink"),
        ('SELECT "dblink_exec"(\'dbname=x\', \'DELETE FROM t\')', "calls dblink_exec"),
        ('SELECT U&"d\\0062link_exec"(\'c\', \'q\')', "calls dblink_exec"),
        ('SELECT U&"d!0062link" UESCAPE \'!\' (\'c\')', "calls dblink, which"),
        ("SELECT postgres_fdw_disconnect_all()", "manages postgres_fdw's connections"),
        ("SELECT lo_import('/etc/passwd')", "writes large objects or files"),
        ("SELECT lo_export(1, '/tmp/x')", "writes large objects or files"),
        ("SELECT lo_from_bytea(0, 'x')", "calls lo_from_bytea"),
        ("SELECT lowrite(0, 'x')", "calls lowrite"),
        ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "stops or interrupts other sessions"),
        ("SELECT pg_cancel_backend(42)", "calls pg_cancel_backend"),
        ("SELECT pg_read_file('/etc/passwd')", "reads or writes files on the database server"),
        ("SELECT pg_read_binary_file('x')", "calls pg_read_binary_file"),
        ("SELECT * FROM pg_ls_dir('.')", "calls pg_ls_dir"),
        ("SELECT pg_ls_waldir()", "calls pg_ls_waldir"),
        ("SELECT pg_stat_file('x')", "calls pg_stat_file"),
        ("SELECT pg_advisory_lock(4242)", "takes a session-level lock"),
        ("SELECT pg_try_advisory_lock_shared(1)", "takes a session-level lock"),
        ("COPY (SELECT 1) TO PROGRAM 'rm -rf /'", "runs COPY ... PROGRAM"),
    ],
)  # fmt: skip
def test_escape_hatches_are_refused_by_name(query: str, problem: str) -> None:
    """A function known to act outside the read-only transaction is named, however written."""
    found = escape_problem(query)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 'dblink_exec(x)' AS note -- pg_read_file\n",
        "SELECT pg_advisory_xact_lock(4242)",
        "SELECT lo_get(1)",
        "SELECT * FROM orders WHERE program = 'copy'",
        "SELECT $$ pg_terminate_backend $$",
    ],
)
def test_look_alikes_of_escape_hatches_pass(query: str) -> None:
    """Names in strings and comments, and the transaction-scoped lock, are not escapes."""
    assert escape_problem(query) is None


def test_an_escape_hatch_is_refused_at_start_naming_the_target() -> None:
    """dblink in a query is a ConfigError that names the target, the field and the fix."""
    config = Config.model_validate(sql_config(query="SELECT dblink_exec('dbname=x', 'q')"))
    with pytest.raises(ConfigError) as caught:
        compile_targets(config)
    assert str(caught.value) == (
        "target 'orders-db': targets[0].sql.query calls dblink_exec, which opens a connection "
        "of its own, outside the read-only transaction; a warm-up query must stay inside its "
        "read-only transaction, so query the tables the app reads instead."
    )


@pytest.mark.parametrize(
    ("rendered", "bound"),
    [
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("007", "007"),
        ("3.5", "3.5"),
        ("2024-01-31", "2024-01-31"),
        ("12345678901234567890", "12345678901234567890"),
        (" 5", " 5"),
        ("", ""),
    ],
)
def test_bind_value_rule(rendered: str, bound: int | str) -> None:
    """Plain whole numbers bind as integers; everything else stays a string."""
    assert bind_value(rendered) == bound


@pytest.mark.parametrize(
    ("message", "phrase"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
            "Connection refused\n\tIs the server running on that host?",
            "connection refused",
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
            'FATAL:  password authentication failed for user "app"',
            "password authentication failed for user app",
        ),
        ('FATAL:  database "orders" does not exist', "database orders does not exist"),
        ("failed to resolve host 'db.internal': [Errno -2] Name or service not known",
         "host name not found"),
        ("FATAL:  the database system is starting up", "the database system is starting up"),
        ("something nobody has seen before", "connection failed"),
    ],
)  # fmt: skip
def test_connect_phrases(message: str, phrase: str) -> None:
    """libpq's connection errors become short phrases."""
    assert message_phrase(message) == phrase


def test_write_is_rejected_at_start_naming_the_target() -> None:
    """An obvious write is a ConfigError that names the target and the field."""
    config = Config.model_validate(sql_config(query="DELETE FROM orders WHERE id = :id"))
    with pytest.raises(ConfigError) as caught:
        compile_targets(config)
    message = str(caught.value)
    assert "target 'orders-db'" in message
    assert "targets[0].sql.query starts with DELETE, which writes data" in message
    assert "must never write" in message


def test_params_must_match_the_query() -> None:
    """A bound name without a value, or a value the query never binds, is caught at start."""
    missing = Config.model_validate(sql_config(query="SELECT * FROM t WHERE id = :id"))
    with pytest.raises(ConfigError, match=r"binds :id, but targets\[0\]\.sql\.params has no"):
        compile_targets(missing)
    cast = Config.model_validate(
        sql_config(query="SELECT :id::int", params={"id": "{{ randint(1, 9) }}"})
    )
    with pytest.raises(ConfigError, match=r"CAST\(:id AS type\), not :id::type"):
        compile_targets(cast)


def test_param_templates_are_compiled_at_start() -> None:
    """A broken parameter template is reported with its field before any connection."""
    config = Config.model_validate(
        sql_config(query="SELECT :id", params={"id": "{{ randint(1, }}"})
    )
    with pytest.raises(ConfigError, match=r"targets\[0\]\.sql\.params\.id"):
        compile_targets(config)


def test_numbers_in_params_are_accepted() -> None:
    """``params: {limit: 20}`` in YAML is the template '20'."""
    target = Config.model_validate(sql_config(query="SELECT :n", params={"n": 20})).targets[0]
    assert target.sql is not None
    assert target.sql.params == {"n": "20"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"name": "x"}, "target 'x' needs a kind; add an http:, sql:, journey: or grpc: section"),
        (
            {"name": "x", "http": {"url": "http://a/"}, "sql": {"url": PG, "query": "SELECT 1"}},
            "target 'x' has both http: and sql:; a target has one kind",
        ),
        (
            {"name": "x", "sql": {"url": "mysql+pymysql://u:pw1234@h/db", "query": "SELECT 1"}},
            "'mysql+pymysql://u:***@h/db' is not a supported database URL",
        ),
        ({"name": "x", "sql": {"url": "sqlite://", "query": "SELECT 1"}}, "needs a file"),
        ({"name": "x", "sql": {"url": PG, "query": "  "}}, "write the query to run"),
        (
            {"name": "x", "sql": {"url": PG, "query": "SELECT 1", "rows": {"min": 5, "max": 2}}},
            "max 2 is below min 5",
        ),
        (
            {"name": "x", "sql": {"url": PG, "query": "SELECT 1", "row": {"min": 1}}},
            "unknown key 'row'; did you mean 'rows'?",
        ),
        (
            {
                "name": "x",
                "sql": {"url": PG, "query": "SELECT 1", "rows": {"max": 500}, "row_cap": 100},
            },
            "rows expects up to 500 rows but row_cap 100 stops reading there; raise row_cap to "
            "at least 500 or lower rows",
        ),
        (
            {"name": "x", "sql": {"url": PG, "query": "SELECT 1", "row_cap": 0}},
            "row_cap",
        ),
    ],
)
def test_sql_target_validation(target: dict[str, object], message: str) -> None:
    """Mistakes in a SQL target are one sentence each, naming the fix."""
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"targets": [target]}, environ={})
    assert message in str(caught.value)
    assert "pw1234" not in str(caught.value)


def test_sql_url_passwords_are_secrets(tmp_path: Path) -> None:
    """A password in the URL (as written, percent-decoded, or from ${VAR}) is redacted."""
    config_file = tmp_path / "warmup.yaml"
    config_file.write_text(
        "targets:\n"
        "  - {name: a, sql: {url: 'postgresql://app:p%40ss-one@db/x', query: SELECT 1}}\n"
        "  - {name: b, sql: {url: 'postgresql://app:${DB_PASSWORD}@db/x', query: SELECT 1}}\n"
        "  - {name: c, sql: {url: 'postgresql://app@db/x?password=third-one', query: SELECT 1}}\n"
    )
    config, secrets = load_config(config_file, environ={"DB_PASSWORD": "second-one"})
    assert {"p%40ss-one", "p@ss-one", "second-one", "third-one"} <= secrets.values
    text = describe(config, secrets)
    for secret in ("ss-one", "second-one", "third-one"):
        assert secret not in text
    assert "SQL postgresql://app:***@db/x read-only: SELECT 1" in text


def test_describe_shows_the_sql_plan() -> None:
    """``validate`` describes a SQL target: redacted URL, query, params, rows and timeout."""
    config, secrets = load_config(
        overrides=sql_config(
            query="SELECT *\n  FROM orders WHERE customer_id = :cid",
            params={"cid": "{{ randint(1, 200000) }}"},
            rows={"min": 1, "max": 1000},
            timeout="2s",
        ),
        environ={},
    )
    text = describe(config, secrets)
    assert (
        "orders-db: 100% of requests, SQL postgresql+psycopg://app@db.internal:5432/orders "
        "read-only: SELECT * FROM orders WHERE customer_id = :cid with "
        "cid={{ randint(1, 200000) }} (expect 1 to 1000 rows, timeout 2s)"
    ) in text


def test_validate_cli_redacts_and_rejects_writes(tmp_path: Path) -> None:
    """``validate`` never prints a URL password, and an obvious write exits 2 with a sentence."""
    config = tmp_path / "warmup.yaml"
    config.write_text(
        "targets:\n"
        "  - name: orders-db\n"
        "    sql:\n"
        "      url: postgresql+psycopg://app:${DB_PASSWORD}@db.internal/orders\n"
        "      query: SELECT * FROM orders WHERE id = :id\n"
        "      params: {id: '{{ randint(1, 10) }}'}\n"
    )
    result = run_cli("validate", "--config", str(config), env={"DB_PASSWORD": "planted-Secret-9"})
    assert result.returncode == 0, result.stderr
    assert "postgresql+psycopg://app:***@db.internal/orders" in result.stdout
    assert "planted-Secret-9" not in result.stdout + result.stderr

    config.write_text(config.read_text().replace("SELECT * FROM", "DELETE FROM"))
    result = run_cli("validate", "--config", str(config), env={"DB_PASSWORD": "planted-Secret-9"})
    assert result.returncode == 2
    assert "target 'orders-db'" in result.stderr
    assert "starts with DELETE, which writes data" in result.stderr
    assert "planted-Secret-9" not in result.stdout + result.stderr

    config.write_text(
        config.read_text().replace(
            "DELETE FROM orders WHERE id = :id", "SELECT pg_advisory_lock(:id)"
        )
    )
    result = run_cli("validate", "--config", str(config), env={"DB_PASSWORD": "planted-Secret-9"})
    assert result.returncode == 2
    assert "calls pg_advisory_lock, which takes a session-level lock" in result.stderr
    assert "Traceback" not in result.stderr


SQL_MODULES = "('sqlalchemy', 'psycopg', 'aiomysql', 'pymysql', 'aiosqlite', 'greenlet', 'pglast')"
IMPORTED = (
    "import sys\n"
    "from warmgate.cli.main import app\n"
    "try:\n"
    "    app(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    assert exc.code == 0, exc.code\n"
    f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SQL_MODULES})))\n"
)


def imported_sql_modules(*args: str) -> str:
    """Which SQL libraries a fresh interpreter has imported after ``warmgate ARGS``."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_http_only_configs_never_import_sql_libraries(tmp_path: Path) -> None:
    """The CLI and an HTTP-only ``validate`` leave SQLAlchemy and psycopg unimported, and only a
    PostgreSQL target imports pglast."""
    assert imported_sql_modules("--version") == "[]"
    assert (
        imported_sql_modules("validate", "--url", "http://127.0.0.1:9/items/{{ randint(1, 9) }}")
        == "[]"
    )
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    config = tmp_path / "warmup.yaml"
    config.write_text(f"targets:\n  - sql: {{url: '{sqlite}', query: SELECT 1}}\n")
    assert imported_sql_modules("validate", "--config", str(config)) == "['sqlalchemy']"
    config.write_text(f"targets:\n  - sql: {{url: '{PG}', query: SELECT 1}}\n")
    assert imported_sql_modules("validate", "--config", str(config)) == "['pglast', 'sqlalchemy']"


def test_drivers_follow_the_order_of_the_targets(tmp_path: Path) -> None:
    """Mixed targets open in config order, so each driver gets its own target's weight."""
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    config = Config.model_validate(
        {
            "targets": [
                {"name": "db-a", "sql": {"url": sqlite, "query": "SELECT 1"}},
                {"name": "web", "http": {"url": "http://127.0.0.1:9/"}},
                {"name": "db-b", "sql": {"url": PG, "query": "SELECT 2"}},
            ]
        }
    )

    async def names() -> list[str]:
        async with AsyncExitStack() as stack:
            drivers = await open_drivers(config, compile_targets(config), stack)
            return [driver.name for driver in drivers]

    assert asyncio.run(names()) == ["db-a", "web", "db-b"]
