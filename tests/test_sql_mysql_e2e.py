"""The real CLI, as a subprocess, priming MariaDB: warm-up to ready, a wrong password, and a
database that restarts mid-warm-up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import maria
from tests.helpers import WarmgateProcess, poll, run_cli
from tests.test_sql_e2e import FAST_GATE, PLANTED, sql_target, status_of, write_config

pytestmark = [pytest.mark.slow, pytest.mark.mariadb]


@pytest.fixture(scope="module")
def orders() -> Iterator[maria.Scratch]:
    """A scratch orders table in the real MariaDB; dropped after the module."""
    maria.require_mariadb()
    with maria.scratch_table() as scratch:
        yield scratch


def test_prime_warms_a_mariadb_table_and_never_shows_the_password(
    orders: maria.Scratch, tmp_path: Path
) -> None:
    """``prime`` warms a real table through a read-only account until the gate holds, exits 0,
    leaves the table as it was, and the planted password is in none of its output."""
    before = orders.fingerprint()
    grant = f"GRANT SELECT ON test.{orders.orders} TO {{account}}"
    with maria.password_account(PLANTED, grant) as account:
        url = f"mariadb://{account}:${{DB_PASSWORD}}@127.0.0.1:3306/test"
        config = write_config(
            tmp_path,
            sql_target(
                "orders-db",
                url,
                orders.select("WHERE customer_id = :cid LIMIT 20"),
                f"{{cid: '{{{{ randint(1, {maria.CUSTOMERS}) }}}}'}}",
                "{min: 1, max: 20}",
            ),
        )
        env = {"DB_PASSWORD": PLANTED}
        result = run_cli("prime", "--config", str(config), "--log-format", "json", env=env)
        validated = run_cli("validate", "--config", str(config), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    status = status_of(tmp_path)
    assert status["ready"] is True
    stats = status["targets"]["orders-db"]
    assert stats["requests"] >= 20
    assert stats["success_ratio"] == 1.0
    assert '"event": "warning"' not in result.stdout  # the account can only read
    assert f"{account}:***@127.0.0.1" in validated.stdout
    assert orders.fingerprint() == before
    files = (tmp_path / "status" / "status.json").read_text()
    for text in (result.stdout, result.stderr, files, validated.stdout, validated.stderr):
        assert PLANTED not in text


def test_a_wrong_password_fails_closed_with_a_clear_reason(
    orders: maria.Scratch, tmp_path: Path
) -> None:
    """A wrong password is the wait phase; at the deadline the reason says access was denied,
    and the password is nowhere."""
    with maria.password_account("the-Right-one-99", "GRANT SELECT ON test.* TO {account}") as who:
        url = f"mariadb://{who}:{PLANTED}@127.0.0.1:3306/test"
        config = write_config(tmp_path, sql_target("orders-db", url, "SELECT 1"),
                              FAST_GATE + "wait: {timeout: 1s}\n")  # fmt: skip
        result = run_cli("prime", "--config", str(config), "--log-format", "json")
    assert result.returncode == 1
    status = status_of(tmp_path)
    assert status["state"] == "failed"
    assert f"127.0.0.1:3306: access denied for user {who}@" in status["reason"]
    for text in (result.stdout, result.stderr, json.dumps(status)):
        assert PLANTED not in text


def test_a_database_that_restarts_mid_warm_up_is_warmed_once_it_is_back(tmp_path: Path) -> None:
    """MariaDB killed while ``prime`` warms it: the queries fail as connection errors, never a
    crash, and once the server is back the gate holds and ``prime`` exits 0."""
    with maria.private_server(tmp_path / "db") as server:
        maria.sql(
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20));"
            " INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_1000",
            port=server.port,
        )
        gate = (
            "load: {concurrency: 4, ramp_step: 200ms}\n"
            # Every answer must succeed: the gate holds until the outage's failures have left
            # the window, whenever they came, so the verdict is judged on the server once back.
            "gate: {window: 2s, hold: 3s, min_requests: 20, timeout: 60s, on_timeout: fail,"
            " success_rate: 1.0}\n"
            "wait: {timeout: 30s}\n"
        )
        config = write_config(
            tmp_path,
            sql_target(
                "items-db",
                f"mariadb://root@127.0.0.1:{server.port}/test",
                "SELECT * FROM items WHERE id = :id",
                "{id: '{{ randint(1, 1000) }}'}",
                "{min: 1, max: 1}",
            ),
            gate,
        )
        with WarmgateProcess("prime", "--config", str(config)) as warmgate:
            poll(lambda: _requests(tmp_path) > 0, timeout=30, what="priming to start")
            server.kill()
            poll(lambda: _failing(tmp_path), timeout=30, what="failures while the database is down")
            assert _state(tmp_path) != "ready"
            server.start()
            code = warmgate.process.wait(timeout=90)
            stderr = warmgate.stderr_text()
    assert code == 0, stderr
    status = status_of(tmp_path)
    assert status["ready"] is True
    assert status["targets"]["items-db"]["success_ratio"] == 1.0
    assert "Traceback" not in stderr


def _status(directory: Path) -> dict[str, Any]:
    try:
        return status_of(directory)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _requests(directory: Path) -> int:
    return int(_status(directory).get("targets", {}).get("items-db", {}).get("requests", 0))


def _failing(directory: Path) -> bool:
    ratio = _status(directory).get("targets", {}).get("items-db", {}).get("success_ratio")
    return ratio is not None and ratio < 1.0


def _state(directory: Path) -> str:
    return str(_status(directory).get("state", ""))
