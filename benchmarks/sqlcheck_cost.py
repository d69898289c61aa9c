"""What the statement check costs: the memory pglast adds to a PostgreSQL config's process, and
the time to check one query (run by hand; figures in docs/sql.md, "The statement check").

    .venv/bin/python benchmarks/sqlcheck_cost.py

Each memory step runs in a fresh interpreter and reads VmRSS from /proc/self/status, so the
figures are the resident memory of the process at that point, imports included.
"""

from __future__ import annotations

import subprocess
import sys
import timeit

STEPS = [
    ("python + SQLAlchemy + warmgate.traffic.sql.driver", "import warmgate.traffic.sql.driver"),
    ("+ import pglast (warmgate.traffic.sql.pgcheck)", "import warmgate.traffic.sql.pgcheck"),
    (
        "+ check one PostgreSQL query",
        "from warmgate.traffic.sql.check import Dialect, read_query;"
        "read_query('SELECT * FROM orders WHERE customer_id = :cid LIMIT 20', Dialect.POSTGRESQL)",
    ),
]
QUERY = (
    "WITH recent AS (SELECT id, note FROM orders WHERE customer_id = :cid ORDER BY id DESC"
    " LIMIT 20) SELECT r.id, upper(r.note) FROM recent r -- the latest orders\n"
)


def rss_after(statements: list[str]) -> float:
    """VmRSS in MiB of a fresh interpreter after running ``statements``."""
    code = ";".join(
        [*statements, "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[1]) / 1024


def main() -> None:
    """Print the memory steps and the time per check."""
    done: list[str] = []
    previous = None
    for label, statement in STEPS:
        done.append(statement)
        rss = rss_after(done)
        added = "" if previous is None else f" (+{rss - previous:.1f})"
        print(f"{label}: {rss:.1f} MiB{added}")
        previous = rss
    from warmgate.traffic.sql import mysqlcheck, pgcheck
    from warmgate.traffic.sql.binding import Style, bind

    for name, read, style in (
        ("PostgreSQL (pglast)", pgcheck.read, Style.NUMERIC_DOLLAR),
        ("MySQL (tokenizer)", lambda b: mysqlcheck.read(b, ("SELECT", "WITH")), Style.FORMAT),
    ):
        runs = 2000
        seconds = timeit.timeit(lambda: read(bind(QUERY, style)), number=runs)  # noqa: B023
        print(f"check of a {len(QUERY)}-character query, {name}: {seconds / runs * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
