"""warmgate's SQL driver against pgbench, side by side on the same database (run by hand).

    .venv/bin/python benchmarks/sql_driver.py [--seconds 10] [--concurrency 8] [--scale 5]
                                              [--breakdown] [--paced RATE]

Creates a scratch database, fills it with ``pgbench -i``, then measures in one run:

1. ``pgbench -S -c 8 -T 10``: select-only, one ``SELECT abalance FROM pgbench_accounts WHERE
   aid = :aid`` per transaction (simple protocol, autocommit, a C client);
2. warmgate's load generator and SQL driver at concurrency 8, closed loop, with the same query
   by primary key: every query in its own read-only transaction (``BEGIN READ ONLY``,
   ``SET LOCAL statement_timeout``, the query, ``ROLLBACK``) through SQLAlchemy's asyncio
   engine over psycopg's async driver, its rows fetched and counted;
3. with ``--breakdown``: the same four statements per transaction straight through psycopg's
   async API, without SQLAlchemy, to show where the gap comes from;
4. with ``--paced RATE``: warmgate paced below its own saturation, where its latency figures
   reflect the database rather than the client's queue.

It prints the throughput of each and the ratio, then drops the scratch database. Needs the
PostgreSQL on 127.0.0.1:5432 (user postgres, trust authentication) and ``pgbench``.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import platform
import random
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import sqlalchemy

from warmgate.config import SqlTarget
from warmgate.drivers.sql import SqlDriver, SqlPlan
from warmgate.load import Load
from warmgate.templating import Templates
from warmgate.window import Sample, percentile

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
QUERY = "SELECT abalance FROM pgbench_accounts WHERE aid = :aid"


def pgbench_binary() -> str:
    """pgbench from PATH, else from the PostgreSQL installation."""
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None
    )
    if found is None:
        sys.exit("pgbench is not installed (apt-get install postgresql-client)")
    return found


def admin(statement: str) -> None:
    """Run one statement in the ``postgres`` database, autocommit."""
    with psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
        c.execute(statement)


def run_pgbench(binary: str, database: str, concurrency: int, seconds: int) -> tuple[float, float]:
    """``(tps, average latency ms)`` of ``pgbench -S``."""
    result = subprocess.run(
        [binary, "-h", HOST, "-p", str(PORT), "-U", USER, "-S", "-c", str(concurrency),
         "-T", str(seconds), database],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
    if tps is None or latency is None:
        sys.exit(f"cannot read pgbench's output:\n{result.stdout}\n{result.stderr}")
    return float(tps.group(1)), float(latency.group(1))


async def run_warmgate(
    database: str, accounts: int, concurrency: int, seconds: float, rate: float | None = None
) -> tuple[float, float, float, int]:
    """``(queries/s, p50 ms, p99 ms, failures)`` of warmgate's Load + SqlDriver; closed loop,
    or paced at ``rate`` queries/s (latency then counts from the intended send time)."""
    target = SqlTarget(
        url=f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{database}",
        query=QUERY,
        params={"aid": f"{{{{ randint(1, {accounts}) }}}}"},
        rows={"min": 1, "max": 1},  # type: ignore[arg-type]
    )
    plan = SqlPlan.compile(target, Templates(), "benchmark", "pgbench")
    driver = SqlDriver.open("pgbench", plan, concurrency)
    samples: list[Sample] = []
    load = Load([driver], [1.0], concurrency, samples.append)
    load.start()
    try:
        load.configure(concurrency, rate)
        await asyncio.sleep(2)  # fill the pool and let psycopg prepare the statement
        samples.clear()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        measured = [sample for sample in samples if sample.completed_at <= started + seconds]
        elapsed = time.monotonic() - started
    finally:
        await load.stop()
        await driver.aclose()
    latencies = sorted(sample.latency * 1000 for sample in measured)
    failures = sum(not sample.ok for sample in measured)
    return (
        len(measured) / min(elapsed, seconds),
        percentile(latencies, 0.5) or 0.0,
        percentile(latencies, 0.99) or 0.0,
        failures,
    )


async def run_psycopg(database: str, accounts: int, concurrency: int, seconds: float) -> float:
    """Transactions/s of the same transaction shape straight through psycopg's async API."""
    connections = [
        await psycopg.AsyncConnection.connect(host=HOST, port=PORT, user=USER, dbname=database)
        for _ in range(concurrency)
    ]
    for connection in connections:
        await connection.set_read_only(True)
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(connection: psycopg.AsyncConnection[tuple[int]]) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with connection.cursor() as cursor:
                await cursor.execute("SET LOCAL statement_timeout = 5000")
                await cursor.execute(
                    "SELECT abalance FROM pgbench_accounts WHERE aid = %s",
                    (random.randint(1, accounts),),
                )
                await cursor.fetchall()
            await connection.rollback()
            done += 1

    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            await connection.close()
    return done / seconds


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo, if Linux says."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    found = re.search(r"model name\s*:\s*(.+)", text)
    return found.group(1).strip() if found else "unknown CPU"


def main() -> None:
    """Measure both, print them and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each measurement")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scale", type=int, default=5, help="pgbench -i scale (100k rows each)")
    parser.add_argument("--breakdown", action="store_true", help="also measure psycopg alone")
    parser.add_argument(
        "--paced", type=float, metavar="RATE", help="also measure warmgate paced at RATE queries/s"
    )
    args = parser.parse_args()

    binary = pgbench_binary()
    database = f"warmgate_bench_{secrets.token_hex(4)}"
    admin(f"CREATE DATABASE {database}")
    try:
        subprocess.run(
            [binary, "-h", HOST, "-p", str(PORT), "-U", USER, "-i", "-q", "-s", str(args.scale),
             database],
            capture_output=True, check=True,
        )  # fmt: skip
        accounts = 100_000 * args.scale
        with psycopg.connect(host=HOST, port=PORT, user=USER, dbname=database) as connection:
            server = connection.execute("SHOW server_version").fetchone()
        print(f"machine: {os.cpu_count()} cores, {cpu_model()}, load average before "
              f"{os.getloadavg()[0]:.2f}")  # fmt: skip
        print(f"software: PostgreSQL {server[0] if server else '?'}, Python "
              f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
              f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})")  # fmt: skip
        print(f"data: pgbench -i -s {args.scale} ({accounts} accounts), "
              f"{args.concurrency} clients, {args.seconds}s each")  # fmt: skip

        tps, pgbench_latency = run_pgbench(binary, database, args.concurrency, args.seconds)
        print(f"pgbench -S -c {args.concurrency} -T {args.seconds}: {tps:9.0f} tps, "
              f"latency average {pgbench_latency:.3f} ms")  # fmt: skip
        rate, p50, p99, failures = asyncio.run(
            run_warmgate(database, accounts, args.concurrency, args.seconds)
        )
        print(f"warmgate SqlDriver, concurrency {args.concurrency}: {rate:9.0f} queries/s, "
              f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, {failures} failures")  # fmt: skip
        if args.breakdown:
            raw = asyncio.run(run_psycopg(database, accounts, args.concurrency, args.seconds))
            print(f"psycopg alone, same 4-statement transaction: {raw:9.0f} tps "
                  f"({raw / tps:.2f}x pgbench)")  # fmt: skip
        if args.paced:
            paced, p50, p99, failures = asyncio.run(
                run_warmgate(database, accounts, args.concurrency, args.seconds, args.paced)
            )
            print(f"warmgate SqlDriver, paced at {args.paced:g}/s: {paced:9.0f} queries/s, "
                  f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, {failures} failures")  # fmt: skip
        print(f"ratio warmgate / pgbench: {rate / tps:.2f}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


if __name__ == "__main__":
    main()
