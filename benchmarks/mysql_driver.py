"""warmgate's SQL driver against mysqlslap, side by side on the same MariaDB table (run by hand).

    .venv/bin/python benchmarks/mysql_driver.py [--seconds 10] [--concurrency 8] [--rows 500000]

Creates a scratch table in database ``test`` with ``--rows`` rows, then measures in one run:

1. ``mysqlslap --concurrency 8``: a select by primary key per query (autocommit, text protocol,
   a C client), the keys drawn at random beforehand;
2. warmgate's load generator and SQL driver at concurrency 8, closed loop, with the same select
   by primary key: every query in its own read-only transaction (``START TRANSACTION READ
   ONLY`` with the pinned SQL mode, ``SET STATEMENT max_statement_time=... FOR`` the query,
   ``ROLLBACK``, then ``COM_RESET_CONNECTION`` and the next query's transaction, in one round
   trip), over aiomysql, its rows counted.

It prints both and the ratio, then drops the table. Needs the MariaDB on 127.0.0.1:3306 (root
without a password) and ``mysqlslap``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import secrets
import subprocess
import tempfile
import time

from warmgate.config.sql_target import SqlTarget
from warmgate.decide.window import Sample, percentile
from warmgate.traffic.loadgen import Load
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan
from warmgate.traffic.templating import Templates

HOST, PORT = "127.0.0.1", 3306


def client(statement: str) -> str:
    """Run ``statement`` in database test as root with the mariadb client; its output."""
    return subprocess.run(
        ["mariadb", "-h", HOST, "-P", str(PORT), "-u", "root", "-N", "test", "-e", statement],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def run_mysqlslap(table: str, rows: int, concurrency: int, queries: int) -> float:
    """Queries per second of mysqlslap running ``queries`` selects by key in all."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        for _ in range(queries):
            script.write(f"SELECT note FROM {table} WHERE id = {random.randint(1, rows)};\n")  # noqa: S608
    try:
        output = subprocess.run(
            ["mysqlslap", "-h", HOST, "-P", str(PORT), "-u", "root", "--create-schema=test",
             f"--concurrency={concurrency}", "--iterations=1", f"--number-of-queries={queries}",
             f"--query={script.name}", "--delimiter=;"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    match = re.search(r"Average number of seconds to run all queries: ([0-9.]+)", output)
    assert match, output
    return queries / float(match.group(1))


def warmgate_plan(table: str, rows: int) -> SqlPlan:
    """The SQL target warmgate primes: the select by primary key, one row expected."""
    target = SqlTarget(
        url=f"mariadb://root@{HOST}:{PORT}/test",
        query=f"SELECT note FROM {table} WHERE id = :id",  # noqa: S608 - a scratch table
        params={"id": f"{{{{ randint(1, {rows}) }}}}"},
        rows={"min": 1, "max": 1},  # type: ignore[arg-type]
    )
    return SqlPlan.compile(target, Templates(), "benchmark", "mysql")


async def run_warmgate(
    table: str, rows: int, concurrency: int, seconds: float
) -> tuple[float, float, float, int]:
    """``(queries/s, p50 ms, p99 ms, failures)`` of warmgate's Load + SqlDriver, closed loop."""
    driver = SqlDriver.open("mysql", warmgate_plan(table, rows), concurrency)
    samples: list[Sample] = []
    load = Load([driver], [1.0], concurrency, samples.append)
    load.start()
    try:
        load.configure(concurrency, None)
        await asyncio.sleep(2)  # fill the pool and warm the caches
        samples.clear()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        measured = [sample for sample in samples if sample.completed_at <= started + seconds]
        elapsed = time.monotonic() - started
    finally:
        await load.stop()
        await driver.aclose()
    latencies = sorted(sample.latency * 1000 for sample in measured)
    return (
        len(measured) / min(elapsed, seconds),
        percentile(latencies, 0.5) or 0.0,
        percentile(latencies, 0.99) or 0.0,
        sum(not sample.ok for sample in measured),
    )


def main() -> None:
    """Measure both, print them and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--slap-queries", type=int, default=100_000)
    options = parser.parse_args()
    table = f"warmgate_bench_{secrets.token_hex(4)}"
    print(f"load average before: {os.getloadavg()}; {platform.python_version()};",
          client("SELECT VERSION()").strip())  # fmt: skip
    client(f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB")
    client(f"INSERT INTO {table} SELECT seq, MD5(seq) FROM seq_1_to_{options.rows}")  # noqa: S608
    try:
        slap = run_mysqlslap(table, options.rows, options.concurrency, options.slap_queries)
        print(f"mysqlslap -c {options.concurrency}: {slap:,.0f} queries/s")
        rate, p50, p99, failures = asyncio.run(
            run_warmgate(table, options.rows, options.concurrency, options.seconds)
        )
        print(
            f"warmgate SqlDriver -c {options.concurrency}: {rate:,.0f} queries/s, p50 {p50:.2f} ms,"
            f" p99 {p99:.2f} ms, {failures} failures; ratio {rate / slap:.2f}"
        )
    finally:
        client(f"DROP TABLE {table}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
