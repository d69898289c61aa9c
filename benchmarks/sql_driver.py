"""warmgate's SQL driver against pgbench, side by side on the same database (run by hand).

    .venv/bin/python benchmarks/sql_driver.py [--seconds 10] [--concurrency 8] [--scale 5]
                                              [--breakdown] [--paced RATE] [--no-mariadb]

Creates a scratch database, fills it with ``pgbench -i``, then measures in one run:

1. ``pgbench -S -c 8 -T 10``: select-only, one ``SELECT abalance FROM pgbench_accounts WHERE
   aid = :aid`` per transaction (simple protocol, autocommit, a C client);
2. warmgate's load generator and SQL driver at concurrency 8, closed loop, with the same query
   by primary key: every query in its own read-only transaction (``BEGIN READ ONLY``,
   ``SET LOCAL statement_timeout``, the query, ``ROLLBACK``, then the session reset; the query
   holds no backslash, so no ``SET LOCAL standard_conforming_strings``), pipelined in one round
   trip over psycopg's async connections, its rows counted;
3. with ``--breakdown``, to show where the gap comes from: pgbench sending warmgate's pipelined
   transaction (the server's share); the driver's pool alone, without the load generator, the
   parameter templates and the client timeout; the same transaction over connections checked
   out of SQLAlchemy's asyncio pool; and the four statements one round trip each through
   psycopg's cursors;
4. with ``--paced RATE``: warmgate paced below its own saturation, where its latency figures
   reflect the database rather than the client's queue.

5. unless ``--no-mariadb``, the same on MariaDB (127.0.0.1:3306, root, database ``test``):
   ``mysqlslap --concurrency 8`` running selects by primary key on a scratch table of 500,000
   rows (``benchmarks/mysql_driver.py``'s run), and warmgate's driver at the same concurrency
   on the same table, reported beside PostgreSQL's; with ``--breakdown``, its pool alone.

It prints the throughput of each, warmgate's own CPU time per query and the ratios, then drops
the scratch database and table. Needs the PostgreSQL on 127.0.0.1:5432 (user postgres, trust
authentication) and ``pgbench``, and for MariaDB ``mysqlslap`` and the ``mariadb`` client.
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
import tempfile
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import psycopg
import sqlalchemy
from sqlalchemy.ext.asyncio import create_async_engine

from warmgate.config.sql_target import SqlTarget
from warmgate.decide.window import Sample, percentile
from warmgate.traffic.loadgen import Load
from warmgate.traffic.sql.driver import SqlDriver, SqlPlan
from warmgate.traffic.sql.mysql import MysqlPool
from warmgate.traffic.sql.postgres import PostgresPool, read_only
from warmgate.traffic.templating import Templates

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
QUERY = "SELECT abalance FROM pgbench_accounts WHERE aid = :aid"
TIMEOUT = 5.0
"""warmgate's default ``sql.timeout``, in seconds."""
PIPELINED = """\\set aid random(1, {accounts})
\\startpipeline
BEGIN READ ONLY;
SET LOCAL statement_timeout = 5000;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
ROLLBACK;
SELECT pg_advisory_unlock_all();
DEALLOCATE ALL;
\\endpipeline
"""
"""A pgbench script sending the transaction warmgate sends, the way it sends it."""


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


@contextmanager
def pgbench_database(binary: str, scale: int) -> Iterator[str]:
    """A scratch database filled by ``pgbench -i -s scale``, dropped after."""
    database = f"warmgate_bench_{secrets.token_hex(4)}"
    admin(f"CREATE DATABASE {database}")
    try:
        subprocess.run(
            [binary, "-h", HOST, "-p", str(PORT), "-U", USER, "-i", "-q", "-s", str(scale),
             database],
            capture_output=True, check=True,
        )  # fmt: skip
        yield database
    finally:
        admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def run_pgbench(
    binary: str, database: str, concurrency: int, seconds: int, script: str | None = None
) -> tuple[float, float]:
    """``(tps, average latency ms)`` of ``pgbench -S``, or of ``script`` (extended protocol)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        workload = ["-S"]
        if script is not None:
            file.write(script)
            file.flush()
            workload = ["-n", "-M", "extended", "-f", file.name]
        result = subprocess.run(
            [binary, "-h", HOST, "-p", str(PORT), "-U", USER, *workload, "-c", str(concurrency),
             "-T", str(seconds), database],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
    if tps is None or latency is None:
        sys.exit(f"cannot read pgbench's output:\n{result.stdout}\n{result.stderr}")
    return float(tps.group(1)), float(latency.group(1))


def warmgate_plan(database: str, accounts: int) -> SqlPlan:
    """The SQL target warmgate primes: the select by primary key, one row expected."""
    target = SqlTarget(
        url=f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{database}",
        query=QUERY,
        params={"aid": f"{{{{ randint(1, {accounts}) }}}}"},
        rows={"min": 1, "max": 1},  # type: ignore[arg-type]
    )
    return SqlPlan.compile(target, Templates(), "benchmark", "pgbench")


class Measured(NamedTuple):
    """One run of warmgate's load generator and SQL driver."""

    rate: float
    """Queries per second."""
    p50: float
    """Milliseconds."""
    p99: float
    failures: int
    cpu: float
    """Microseconds of this process's CPU time per query (warmgate's own cost, whatever the
    machine's load: the server runs in other processes)."""

    def line(self, label: str) -> str:
        """How it reads in the report."""
        return (
            f"{label}: {self.rate:9.0f} queries/s, p50 {self.p50:.3f} ms, p99 {self.p99:.3f} ms, "
            f"{self.failures} failures, {self.cpu:.0f} µs of warmgate's CPU a query"
        )


async def run_warmgate(
    database: str, accounts: int, concurrency: int, seconds: float, rate: float | None = None
) -> Measured:
    """warmgate's Load + SqlDriver on PostgreSQL; closed loop, or paced at ``rate`` queries/s
    (latency then counts from the intended send time)."""
    return await run_plan(warmgate_plan(database, accounts), concurrency, seconds, rate)


class Recorder:
    """What the load generator reports, kept as the product's window keeps it: counted, not
    as a list of ``Sample`` objects (tens of thousands of them would make the garbage
    collector's full passes, and so the measured client, slower than warmgate is)."""

    def __init__(self) -> None:
        self.completed = array("d")
        self.latencies = array("d")
        self.failed = array("d")

    def __call__(self, sample: Sample) -> None:
        self.completed.append(sample.completed_at)
        self.latencies.append(sample.latency)
        if not sample.ok:
            self.failed.append(sample.completed_at)

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.__init__()  # type: ignore[misc]


async def run_plan(
    plan: SqlPlan, concurrency: int, seconds: float, rate: float | None = None
) -> Measured:
    """warmgate's Load + SqlDriver running ``plan``, measured after 2 s of warming up."""
    driver = SqlDriver.open("bench", plan, concurrency)
    recorded = Recorder()
    load = Load([driver], [1.0], concurrency, recorded)
    load.start()
    try:
        load.configure(concurrency, rate)
        await asyncio.sleep(2)  # fill the pool and warm the caches
        recorded.clear()
        started, cpu = time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        cpu_per_query = cpu / max(1, len(recorded.completed)) * 1e6
    finally:
        await load.stop()
        await driver.aclose()
    end = started + seconds
    latencies = sorted(
        latency * 1000
        for latency, completed in zip(recorded.latencies, recorded.completed, strict=True)
        if completed <= end
    )
    return Measured(
        len(latencies) / min(elapsed, seconds),
        percentile(latencies, 0.5) or 0.0,
        percentile(latencies, 0.99) or 0.0,
        sum(completed <= end for completed in recorded.failed),
        cpu_per_query,
    )


async def closed_loop(
    concurrency: int, seconds: float, query: Callable[[int], Awaitable[object]], accounts: int
) -> float:
    """Queries/s of ``concurrency`` tasks each awaiting ``query(aid)`` back to back, measured
    after a second of warming up."""
    done = 0

    async def worker(until: float, counting: bool) -> None:
        nonlocal done
        while time.monotonic() < until:
            await query(random.randint(1, accounts))
            done += counting

    warm = time.monotonic() + 1
    await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
    started = time.monotonic()
    await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def run_pool(database: str, accounts: int, concurrency: int, seconds: float) -> float:
    """Queries/s of the driver's PostgreSQL pool alone: the same transaction, no load
    generator, no parameter templates, no client timeout."""
    plan = warmgate_plan(database, accounts)
    pool = PostgresPool(plan.url, concurrency, TIMEOUT)

    async def query(aid: int) -> object:
        return await pool.rows(QUERY, {"aid": aid}, TIMEOUT, 10)

    try:
        return await closed_loop(concurrency, seconds, query, accounts)
    finally:
        await pool.aclose()


async def run_sqlalchemy_pool(
    database: str, accounts: int, concurrency: int, seconds: float
) -> float:
    """Queries/s of the same pipelined transaction over connections checked out of
    SQLAlchemy's asyncio pool (what the driver's own pool saves)."""
    engine = create_async_engine(
        warmgate_plan(database, accounts).url,
        pool_size=concurrency,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
    )
    statement = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

    async def query(aid: int) -> object:
        async with engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            return await read_only(raw, statement, [aid], TIMEOUT, 10)

    try:
        return await closed_loop(concurrency, seconds, query, accounts)
    finally:
        await engine.dispose()


async def run_psycopg(database: str, accounts: int, concurrency: int, seconds: float) -> float:
    """Transactions/s of the four statements one round trip each through psycopg's cursors."""
    connections = [
        await psycopg.AsyncConnection.connect(host=HOST, port=PORT, user=USER, dbname=database)
        for _ in range(concurrency)
    ]
    for connection in connections:
        await connection.set_read_only(True)
    idle = list(connections)

    async def query(aid: int) -> object:
        connection = idle.pop()
        try:
            async with connection.cursor() as cursor:
                await cursor.execute("SET LOCAL statement_timeout = 5000")
                await cursor.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (aid,))
                rows = await cursor.fetchall()
            await connection.rollback()
        finally:
            idle.append(connection)
        return rows

    try:
        return await closed_loop(concurrency, seconds, query, accounts)
    finally:
        for connection in connections:
            await connection.close()


def run_mariadb(args: argparse.Namespace) -> None:
    """The same comparison on MariaDB: ``mysqlslap`` (``benchmarks/mysql_driver.py``'s run,
    a C client, autocommit) against warmgate at the same concurrency, on a scratch table of
    500,000 rows in database ``test``; with ``--breakdown``, the MariaDB pool alone."""
    import mysql_driver  # beside this file; imported only when MariaDB is measured

    rows = 500_000
    table = f"warmgate_bench_{secrets.token_hex(4)}"
    try:
        version = mysql_driver.client("SELECT VERSION()").strip()
        mysql_driver.client(
            f"CREATE TABLE {table} (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB"
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"MariaDB: not measured ({exc})")
        return
    try:
        mysql_driver.client(f"INSERT INTO {table} SELECT seq, MD5(seq) FROM seq_1_to_{rows}")  # noqa: S608
        print(f"MariaDB {version}, aiomysql, {rows} rows, {args.concurrency} clients")
        slap = mysql_driver.run_mysqlslap(table, rows, args.concurrency, 100_000)
        print(f"mysqlslap --concurrency={args.concurrency}: {slap:9.0f} queries/s")
        plan = mysql_driver.warmgate_plan(table, rows)
        measured = asyncio.run(run_plan(plan, args.concurrency, args.seconds))
        print(measured.line(f"warmgate SqlDriver on MariaDB, concurrency {args.concurrency}"))
        if args.breakdown:
            alone = asyncio.run(run_mysql_pool(plan, rows, args.concurrency, args.seconds))
            print(f"warmgate's MariaDB pool alone, same transaction: {alone:9.0f} queries/s "
                  f"({alone / slap:.2f}x mysqlslap)")  # fmt: skip
        print(f"ratio warmgate / mysqlslap: {measured.rate / slap:.2f}")
    finally:
        mysql_driver.client(f"DROP TABLE IF EXISTS {table}")


async def run_mysql_pool(plan: SqlPlan, rows: int, concurrency: int, seconds: float) -> float:
    """Queries/s of the driver's MariaDB pool alone: no load generator, no templates, no
    client timeout."""
    pool = MysqlPool(plan.url, concurrency, TIMEOUT)

    async def query(key: int) -> object:
        return await pool.rows(plan.query, {"id": key}, TIMEOUT, 10)

    try:
        return await closed_loop(concurrency, seconds, query, rows)
    finally:
        await pool.aclose()


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
    parser.add_argument("--breakdown", action="store_true", help="also measure the parts alone")
    parser.add_argument("--no-mariadb", action="store_true", help="measure PostgreSQL only")
    parser.add_argument(
        "--paced", type=float, metavar="RATE", help="also measure warmgate paced at RATE queries/s"
    )
    args = parser.parse_args()

    binary = pgbench_binary()
    with pgbench_database(binary, args.scale) as database:
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
        warmgate = asyncio.run(run_warmgate(database, accounts, args.concurrency, args.seconds))
        rate = warmgate.rate
        print(warmgate.line(f"warmgate SqlDriver, concurrency {args.concurrency}"))
        if args.breakdown:
            script = PIPELINED.format(accounts=accounts)
            shape, _ = run_pgbench(binary, database, args.concurrency, args.seconds, script)
            print(f"pgbench, warmgate's pipelined transaction: {shape:9.0f} tps "
                  f"({shape / tps:.2f}x pgbench -S)")  # fmt: skip
            for label, measure in (
                ("warmgate's pool alone, same transaction", run_pool),
                ("same transaction over SQLAlchemy's pool", run_sqlalchemy_pool),
                ("psycopg cursors, 4 round trips", run_psycopg),
            ):
                alone = asyncio.run(measure(database, accounts, args.concurrency, args.seconds))
                print(f"{label}: {alone:9.0f} queries/s ({alone / tps:.2f}x pgbench -S)")
        if args.paced:
            paced = asyncio.run(
                run_warmgate(database, accounts, args.concurrency, args.seconds, args.paced)
            )
            print(paced.line(f"warmgate SqlDriver, paced at {args.paced:g}/s"))
        print(f"ratio warmgate / pgbench: {rate / tps:.2f}")
    if not args.no_mariadb:
        run_mariadb(args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
