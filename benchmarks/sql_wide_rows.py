"""Peak memory of `warmgate prime` priming wide rows, and what bounding it costs PostgreSQL.

Run by hand, not in CI. Needs the PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and the
MariaDB on 127.0.0.1:3306 (root, no password); SQLite needs nothing.

    .venv/bin/python benchmarks/sql_wide_rows.py [--engines postgres,mariadb,sqlite] \
        [--tree DIR] [--rows N] [--read-time] [--guard-cost] [--memory]

Memory: for each engine, `warmgate prime` primes one SQL target whose query returns rows of
a given width, made by the database itself (no table), until the gate holds, and the kernel's
count of the peak resident memory of the process (ru_maxrss, from wait4) is printed, with the
exit code and the duration. The cases: narrow rows at concurrency 8, 1 MB rows at concurrency 8
(24 rows a query, or ``--rows``), 15 MB rows at concurrency 1 (12, or ``--rows``). ``--tree
DIR`` runs the warmgate found in DIR instead (``git archive REV | tar -x -C DIR`` makes one), to
compare revisions on the same machine.

``--read-time`` and ``--guard-cost`` run instead of the memory cases (``--memory``: as well).

``--read-time``: the median time the pool of the tree takes to count 20 and 200,000 narrow rows
(an int and a short text, made by the database), one connection, on each engine; with
``--tree``, it compares the reading itself across revisions.

``--guard-cost``: on a scratch table of 100,000 rows (an int, a text, an int, a timestamptz),
the latency of the PostgreSQL pool's transaction, one connection, closed loop, with the query
sent as it is and wrapped by the row guard (at row_bytes 1 MiB: one row a chunk; at 64 KiB: 16),
for 1, 20 and 1000 rows of a query, in alternating rounds; the best median of the rounds is
printed. It drops the table after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from warmgate.traffic.sql.pgrows import Column, Shape, guard
from warmgate.traffic.sql.postgres import read_only
from warmgate.traffic.sql.rows import rows_per_read

ROOT = Path(__file__).resolve().parent.parent

URLS = {
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mariadb://root@127.0.0.1:3306/test",
}
QUERIES = {
    "postgres": "SELECT g, repeat('x', {width}) FROM generate_series(1, {rows}) g",
    "mariadb": "SELECT seq, REPEAT('x', {width}) FROM seq_1_to_{rows}",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {rows}) "
    "SELECT x, zeroblob({width}) FROM c",
}
CASES = (("narrow", 10, 20, 8), ("1 MB", 1_000_000, 24, 8), ("15 MB", 15_000_000, 12, 1))
"""(name, row width in bytes, rows a query, concurrency)."""


def prime(engine: str, width: int, rows: int, concurrency: int, tree: Path) -> str:
    """One `warmgate prime` to the end; a line with its exit code, peak memory and duration."""
    with tempfile.TemporaryDirectory() as directory:
        url = URLS.get(engine) or f"sqlite:///{Path(directory) / 'empty.db'}"
        if engine == "sqlite":
            (Path(directory) / "empty.db").write_bytes(b"")
        config = Path(directory) / "warmup.yaml"
        query = QUERIES[engine].format(width=width, rows=rows)
        config.write_text(
            "targets:\n"
            f"  - name: wide\n    sql: {{url: '{url}', query: \"{query}\", timeout: 30s}}\n"
            f"load: {{concurrency: {concurrency}, ramp_step: 100ms}}\n"
            f"gate: {{window: 10s, hold: 1s, min_requests: {2 * concurrency}, timeout: 120s,"
            " on_timeout: fail}\n"
            f"status_dir: {Path(directory) / 'status'}\n"
        )
        # Run from the scratch directory: `python -m` puts the working directory first.
        environment = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        started = time.monotonic()
        with subprocess.Popen(
            [sys.executable, "-m", "warmgate", "prime", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, cwd=directory,
        ) as process:  # fmt: skip
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
    return (
        f"exit {process.returncode}, peak RSS {usage.ru_maxrss / 1024:5.0f} MiB, {seconds:5.1f} s"
    )


READ_TIME = r"""
import asyncio, statistics, sys, time
from warmgate.config.sql_target import SqlTarget
from warmgate.traffic.sql.driver import SqlPlan, open_pool
from warmgate.traffic.templating import Templates

async def main(url, query, times):
    target = SqlTarget(url=url, query=query, timeout="60s", row_cap=1_000_000)
    pool = open_pool(SqlPlan.compile(target, Templates(), "t", "db"), 1)
    await pool.rows(query, {}, 60, 1_000_000)
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        await pool.rows(query, {}, 60, 1_000_000)
        spent.append(time.perf_counter() - started)
    await pool.aclose()
    print(f"{statistics.median(spent) * 1e6:.0f}")

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""
"""Counts one query's rows over and over in a fresh interpreter; prints the median in µs."""


def read_time(engine: str, rows: int, tree: Path) -> str:
    """The median time the tree's pool takes to count ``rows`` narrow rows on ``engine``."""
    query = QUERIES[engine].format(width=3, rows=rows).replace("zeroblob(3)", "'abc'")
    query = query.replace("repeat('x', 3)", "'abc'").replace("REPEAT('x', 3)", "'abc'")
    with tempfile.TemporaryDirectory() as directory:
        url = URLS.get(engine) or f"sqlite:///{Path(directory) / 'empty.db'}"
        if engine == "sqlite":
            (Path(directory) / "empty.db").write_bytes(b"")
        done = subprocess.run(
            [sys.executable, "-c", READ_TIME, url, query, str(2000 if rows < 100 else 5)],
            capture_output=True, text=True, check=True, cwd=directory,
            env={**os.environ, "PYTHONPATH": str(tree.resolve())},
        )  # fmt: skip
    return f"median {int(done.stdout) / 1000:8.2f} ms"


async def guard_cost(rounds: int) -> None:
    """Latency of the pool's transaction with each query plain and guarded (see above)."""
    table = f"warmgate_bench_{secrets.token_hex(4)}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await connection.execute(
        f"CREATE TABLE {table} AS SELECT g AS id, md5(g::text) AS note, g % 100 AS c,"  # noqa: S608
        " now() AS t FROM generate_series(1, 100000) g"
    )
    await connection.execute(f"CREATE UNIQUE INDEX ON {table} (id)")
    columns = [Column(23), Column(25), Column(23), Column(1184)]
    try:
        best: dict[tuple[str, str], float] = {}
        for _ in range(rounds):
            for rows in (1, 20, 1000):
                query = f"SELECT * FROM {table} WHERE id BETWEEN 1000 AND {999 + rows}"  # noqa: S608
                shapes = {
                    "plain": Shape(query, None, rows_per_read(100)),
                    "guarded": guard(query, columns, 1 << 20, bytea_hex=True),
                    "guarded 64KiB": guard(query, columns, 1 << 16, bytea_hex=True),
                }
                for name, shape in shapes.items():
                    times = []
                    for _ in range(60 if rows == 1000 else 600):
                        started = time.perf_counter()
                        await read_only(connection, shape, [], 5.0, 100_000)
                        times.append(time.perf_counter() - started)
                    key = (f"{rows} rows", name)
                    best[key] = min(best.get(key, 1.0), statistics.median(times))
        for rows in ("1 rows", "20 rows", "1000 rows"):
            plain, guarded, small = (
                best[rows, name] * 1e6 for name in ("plain", "guarded", "guarded 64KiB")
            )
            print(
                f"{rows:>9}: plain {plain:5.0f} us, guarded at 1MiB {guarded:5.0f} us "
                f"({guarded - plain:+.0f}), at 64KiB {small:5.0f} us ({small - plain:+.0f})"
            )
    finally:
        await connection.execute(f"DROP TABLE {table}")
        await connection.close()


def main() -> None:
    """Parse the options, run the measurements, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="postgres,mariadb,sqlite")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the warmgate source tree to run")
    parser.add_argument("--rows", type=int, help="rows a query of 1 MB and 15 MB (24 and 12)")
    parser.add_argument("--memory", action="store_true", help="also with the other two")
    parser.add_argument("--read-time", action="store_true")
    parser.add_argument("--guard-cost", action="store_true")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of --guard-cost")
    options = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"tree: {options.tree.resolve()}")
    engines = options.engines.split(",")
    for engine in engines if options.read_time else ():
        for rows in (20, 200_000):
            print(
                f"{engine:>8} counting {rows} narrow rows: {read_time(engine, rows, options.tree)}"
            )
    memory = options.memory or not (options.read_time or options.guard_cost)
    for engine in engines if memory else ():
        for name, width, usual, concurrency in CASES:
            rows = options.rows if options.rows and width > 1000 else usual
            result = prime(engine, width, rows, concurrency, options.tree)
            print(f"{engine:>8} {name:>6} rows x{rows:<3} concurrency {concurrency}: {result}")
    if options.guard_cost:
        asyncio.run(guard_cost(options.rounds))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
