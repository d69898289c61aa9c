"""Where a warm-up query's time goes on PostgreSQL, beyond warmgate's own code (run by hand).

    .venv/bin/python benchmarks/pg_costs.py [--seconds 5] [--concurrency 8] [--scale 5]

Creates a scratch database, fills it with ``pgbench -i``, then measures:

1. the server's share of each set of statements warmgate may send in a transaction, sent by
   pgbench in one pipeline (extended protocol, like warmgate): transactions/s, and the CPU
   time of everything but pgbench per transaction (the machine's busy time from /proc/stat,
   less pgbench's own), which is what the database spends on it;
2. the floor of the client: a bare asyncio loop of libpq pipelines (psycopg's ``pgconn``, no
   load generator, no pool, no checks), the same transaction as warmgate's, its CPU time per
   query: what any asyncio client on this machine pays for the event loop, libpq and the
   system calls, whatever it does on top.

Statements: B ``BEGIN READ ONLY``, S ``SET LOCAL standard_conforming_strings = on``,
T ``SET LOCAL statement_timeout = 5000``, Q the select by key, R ``ROLLBACK``,
U ``SELECT pg_advisory_unlock_all()``, D ``DEALLOCATE ALL``. Needs the PostgreSQL on
127.0.0.1:5432 (user postgres, trust authentication) and ``pgbench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import pq
from sql_driver import HOST, PORT, USER, pgbench_binary, pgbench_database

STATEMENTS = {
    "B": "BEGIN READ ONLY",
    "S": "SET LOCAL standard_conforming_strings = on",
    "T": "SET LOCAL statement_timeout = 5000",
    "Q": "SELECT abalance FROM pgbench_accounts WHERE aid = :aid",
    "R": "ROLLBACK",
    "U": "SELECT pg_advisory_unlock_all()",
    "D": "DEALLOCATE ALL",
}
SETS = ("BQR", "BSTQRUD", "BTQRUD")
"""The bare transaction, warmgate's with a backslash in the query, warmgate's without."""


def busy_seconds() -> tuple[float, float]:
    """``(all, idle)`` CPU seconds of the machine so far."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return sum(fields) / tick, (fields[3] + fields[4]) / tick


def server_share(
    binary: str, database: str, accounts: int, letters: str, *, seconds: int, clients: int
) -> str:
    """One line: transactions/s of ``letters`` in a pipeline, and the server's µs of each."""
    script = f"\\set aid random(1, {accounts})\n\\startpipeline\n"
    script += "".join(f"{STATEMENTS[letter]};\n" for letter in letters) + "\\endpipeline\n"
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        file.write(script)
        file.flush()
        total, idle = busy_seconds()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(
            [binary, "-h", HOST, "-p", str(PORT), "-U", USER, "-n", "-M", "extended", "-f",
             file.name, "-c", str(clients), "-T", str(seconds), database],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        now_total, now_idle = busy_seconds()
        total, idle = now_total - total, now_idle - idle
    tps = float(re.findall(r"tps = ([\d.]+)", result.stdout)[0])
    count = int(re.findall(r"transactions actually processed: (\d+)", result.stdout)[0])
    own = sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime"))
    rest = (total - idle - own) / count * 1e6
    return f"{letters:8s} {tps:9.0f} tps, server and kernel {rest:5.1f} µs a transaction"


async def floor(database: str, accounts: int, clients: int, seconds: float) -> str:
    """One line: a bare asyncio loop of libpq pipelines, its queries/s and CPU a query."""
    statements = [STATEMENTS[letter].encode() for letter in "BTQRUD"]
    query = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    loop = asyncio.get_running_loop()
    done = 0
    counting = stop = False

    async def client() -> None:
        nonlocal done
        connection = await psycopg.AsyncConnection.connect(
            host=HOST, port=PORT, user=USER, dbname=database, autocommit=True
        )
        pgconn = connection.pgconn
        waiting: asyncio.Future[None] | None = None

        def wake() -> None:
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

        loop.add_reader(pgconn.socket, wake)
        try:
            while not stop:
                pgconn.enter_pipeline_mode()
                for text in statements:
                    if text.startswith(b"SELECT abalance"):
                        aid = str(random.randint(1, accounts)).encode()
                        pgconn.send_query_params(query, [aid], [23])
                    else:
                        pgconn.send_query_params(text, None)
                pgconn.pipeline_sync()
                while True:
                    while pgconn.is_busy():
                        waiting = loop.create_future()
                        await waiting
                        pgconn.consume_input()
                    result = pgconn.get_result()
                    if result is not None and result.status == pq.ExecStatus.PIPELINE_SYNC:
                        break
                pgconn.exit_pipeline_mode()
                done += counting
                await asyncio.sleep(0)  # as warmgate's load generator yields between requests
        finally:
            loop.remove_reader(pgconn.socket)
            await connection.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(1)
    counting, done = True, 0
    started, cpu = time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    count = done
    stop = True
    await asyncio.gather(*tasks)
    return (
        f"bare asyncio + libpq loop, BTQRUD: {count / elapsed:9.0f} queries/s, "
        f"{cpu / count * 1e6:.1f} µs of client CPU a query"
    )


def main() -> None:
    """Measure both, print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scale", type=int, default=5)
    args = parser.parse_args()
    binary = pgbench_binary()
    with pgbench_database(binary, args.scale) as database:
        print(f"load average before {os.getloadavg()[0]:.2f}")
        accounts = 100_000 * args.scale
        for letters in SETS:
            print(
                server_share(
                    binary, database, accounts, letters,
                    seconds=args.seconds, clients=args.concurrency,
                )
            )  # fmt: skip
        print(asyncio.run(floor(database, accounts, args.concurrency, args.seconds)))


if __name__ == "__main__":
    main()
