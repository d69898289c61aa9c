"""The real CLI, as a subprocess, priming real databases (and a real HTTP app beside them)."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.helpers import WarmgateProcess, http_get, poll, run_cli
from warmgate.demo.simapp import SimApp

FAST_GATE = (
    "load: {concurrency: 4, ramp_step: 200ms}\n"
    "gate: {window: 2s, hold: 1s, min_requests: 20, timeout: 20s, on_timeout: fail}\n"
)
"""A gate that a healthy local database passes within a few seconds."""
PLANTED = "planted-Secret-7f3a"
"""A password that must never be shown anywhere."""


def write_config(directory: Path, targets: str, extra: str = FAST_GATE) -> Path:
    """``warmup.yaml`` in ``directory`` with ``targets`` (YAML list items) and a status dir."""
    path = directory / "warmup.yaml"
    path.write_text(f"targets:\n{targets}{extra}status_dir: {directory / 'status'}\n")
    return path


def status_of(directory: Path) -> dict[str, Any]:
    """The status.json that warmgate wrote in ``directory``."""
    data = json.loads((directory / "status" / "status.json").read_text())
    assert isinstance(data, dict)
    return data


def sql_target(name: str, url: str, query: str, params: str = "{}", rows: str = "") -> str:
    """One SQL target as a YAML list item."""
    text = f"  - name: {name}\n    sql:\n      url: '{url}'\n      query: \"{query}\"\n"
    text += f"      params: {params}\n"
    if rows:
        text += f"      rows: {rows}\n"
    return text


@pytest.mark.slow
def test_prime_a_sqlite_file(tmp_path: Path) -> None:
    """``prime`` warms a SQLite target, exits 0, and leaves the file as it was."""
    database = tmp_path / "catalog.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        connection.executemany(
            "INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 501)]
        )
    connection.close()
    before = database.read_bytes()
    config = write_config(
        tmp_path,
        sql_target(
            "catalog",
            f"sqlite:///{database}",
            "SELECT * FROM items WHERE id = :id",
            "{id: '{{ randint(1, 500) }}'}",
            "{min: 1, max: 1}",
        ),
    )
    result = run_cli("prime", "--config", str(config), "--log-format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = status_of(tmp_path)
    assert status["ready"] is True
    assert status["targets"]["catalog"]["requests"] >= 20
    assert status["targets"]["catalog"]["success_ratio"] == 1.0
    assert database.read_bytes() == before


@pytest.mark.slow
@pytest.mark.postgres
def test_prime_postgres_does_real_work(orders: pg.Scratch, tmp_path: Path) -> None:
    """``prime`` warms PostgreSQL through the index until the gate holds, and exits 0; it warns
    once that its role (the superuser) could write."""
    reads = orders.reads()
    config = write_config(
        tmp_path,
        sql_target(
            "orders-db",
            pg.URL,
            orders.select("WHERE customer_id = :cid LIMIT 20"),
            f"{{cid: '{{{{ randint(1, {pg.CUSTOMERS}) }}}}'}}",
            "{min: 1, max: 20}",
        ),
    )
    result = run_cli("prime", "--config", str(config), "--log-format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    warning = "target 'orders-db': the database role postgres is a superuser."
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    warnings = [e for e in events if e["event"] == "warning"]
    assert len(warnings) == 1
    assert str(warnings[0]["message"]).startswith(warning)
    stats = status_of(tmp_path)["targets"]["orders-db"]
    assert stats["success_ratio"] == 1.0
    poll(lambda: orders.reads() > reads + stats["requests"], timeout=10, what="table counters")


@pytest.mark.slow
@pytest.mark.postgres
def test_run_gates_http_and_sql_together_and_never_shows_the_password(
    orders: pg.Scratch, sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """HTTP and SQL targets gate together; the planted password is on no surface."""
    app = sim_app()
    with pg.login_role(orders, PLANTED) as role:
        url = f"postgresql+psycopg://{role}:${{DB_PASSWORD}}@127.0.0.1:5432/{pg.DATABASE}"
        targets = sql_target(
            "orders-db",
            url,
            orders.select("WHERE id = :id"),
            f"{{id: '{{{{ randint(1, {pg.ROWS}) }}}}'}}",
            "{min: 1, max: 1}",
        )
        targets += (
            "  - name: web\n"
            f"    http: {{url: 'http://127.0.0.1:{app.port}/items/{{{{ randint(1, 100) }}}}'}}\n"
        )
        config = write_config(tmp_path, targets)
        env = {"DB_PASSWORD": PLANTED}
        with WarmgateProcess("run", "--config", str(config), "--port", "0", env=env) as gate:
            port = gate.port()
            poll(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=30,
                 what="/readyz to answer 200")  # fmt: skip
            surfaces = [http_get(f"http://127.0.0.1:{port}/{path}")[1]
                        for path in ("readyz", "status", "metrics")]  # fmt: skip
            assert gate.stop(signal.SIGTERM) == 0
            output = json.dumps(gate.events) + gate.stderr_text()
        validated = run_cli("validate", "--config", str(config), env=env)

    status = json.loads(surfaces[1])
    assert status["ready"] is True
    for name in ("orders-db", "web"):
        assert status["targets"][name]["requests"] > 0
        assert status["targets"][name]["success_ratio"] == 1.0
    metrics = surfaces[2]
    assert 'warmgate_requests_total{outcome="ok",target="orders-db"}' in metrics
    assert 'warmgate_requests_total{outcome="ok",target="web"}' in metrics
    assert app.stats.served > 0
    assert f"{role}:***@127.0.0.1" in validated.stdout
    files = (tmp_path / "status" / "status.json").read_text()
    everything = [output, *surfaces, files, validated.stdout, validated.stderr]
    for text in everything:
        assert PLANTED not in text


@pytest.mark.slow
@pytest.mark.postgres
def test_unreachable_database_fails_closed_with_a_reason_and_no_password(
    orders: pg.Scratch, tmp_path: Path
) -> None:
    """A missing database is the wait phase; at the deadline the reason says why, secret-free."""
    database = f"no_such_db_{orders.schema}"
    url = f"postgresql+psycopg://postgres:{PLANTED}@127.0.0.1:5432/{database}"
    config = write_config(tmp_path, sql_target("orders-db", url, "SELECT 1"),
                          FAST_GATE + "wait: {timeout: 1s}\n")  # fmt: skip
    result = run_cli("prime", "--config", str(config), "--log-format", "json")
    assert result.returncode == 1
    status = status_of(tmp_path)
    assert status["state"] == "failed"
    assert f"127.0.0.1:5432: database {database} does not exist" in status["reason"]
    for text in (result.stdout, result.stderr, json.dumps(status)):
        assert PLANTED not in text


@pytest.mark.slow
@pytest.mark.postgres
def test_a_write_hidden_in_a_function_is_refused_and_the_table_untouched(
    orders: pg.Scratch, tmp_path: Path
) -> None:
    """A SELECT calling a function that deletes passes the check; PostgreSQL refuses it."""
    before = orders.fingerprint()
    config = write_config(
        tmp_path,
        sql_target("orders-db", pg.URL, f"SELECT {orders.purge}()"),
        FAST_GATE.replace("timeout: 20s", "timeout: 2s"),
    )
    result = run_cli("prime", "--config", str(config), "--log-format", "json")
    assert result.returncode == 1
    status = status_of(tmp_path)
    assert "rejected write" in status["reason"]
    assert orders.fingerprint() == before
