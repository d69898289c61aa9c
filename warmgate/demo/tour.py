"""``warmgate demo``: watch a cold app warm up and the gate open, with nothing to install.

It starts the simulated heritage app (``simapp.py``) on a free local port and a small SQLite
database in a temporary directory, loads the shipped ``demo.yaml`` against them, and runs a
``prime`` with the live view and the report. At the end it says when the app really became able
to take the target concurrency, next to when the gate opened, so the two can be compared.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warmgate.config.loader import expand_env, load_config, merge, read_yaml
from warmgate.demo.simapp import Behavior, SimApp
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.units import format_duration, parse_duration
from warmgate.serve.status import Status

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


@dataclass(frozen=True)
class DemoResult:
    """How the demo went: the final status, and when the app could cope with the target."""

    status: Status
    capable_after: float | None
    ready_after: float | None
    window: str
    """The window judged: ``5s``, or ``auto``."""


def make_database(path: Path, customers: int = 500, orders: int = 20_000) -> None:
    """A SQLite file with an ``orders`` table to prime (indexed by customer)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL)")
        db.executemany(
            "INSERT INTO orders (customer_id, total) VALUES (?, ?)",
            ((1 + n % customers, round((n * 7.3) % 500, 2)) for n in range(orders)),
        )
        db.execute("CREATE INDEX orders_customer ON orders (customer_id)")
    # The connection context manager commits but does not close; closing is explicit.
    sqlite3.connect(path).close()


def run_demo(
    behavior: Behavior,
    overrides: dict[str, Any],
    report: Path | None,
    sql: bool = True,
) -> DemoResult:
    """Start the simulated app and database, prime them with the demo config, report."""
    from warmgate.runtime.primer import execute

    app = SimApp(behavior)
    with tempfile.TemporaryDirectory(prefix="warmgate-demo-") as workdir:
        database = Path(workdir) / "demo.db"
        make_database(database)
        port = app.start()
        try:
            environ = {"DEMO_URL": f"http://127.0.0.1:{port}", "DEMO_DB": str(database)}
            plan = expand_env(read_yaml(DEMO_CONFIG), environ, set())
            if not sql:
                plan["targets"] = [t for t in plan["targets"] if "sql" not in t]
            config, secrets = load_config(None, merge(plan, overrides))
            started = time.monotonic()
            status = execute(config, secrets, report=report)
            capable = app.capable_since(config.load.concurrency)
        finally:
            app.stop()
    ready_after = status.ready_at - status.started_at if status.ready_at is not None else None
    capable_after = None if capable is None else capable - started
    window = "auto" if config.gate.window == "auto" else format_duration(config.gate.span)
    return DemoResult(status, capable_after, ready_after, window)


def summary(result: DemoResult, concurrency: int, hold: float, window: str | float) -> str:
    """The punchline: when the app could cope, and when the gate opened."""
    if result.capable_after is None:
        capable = f"the app never coped with {concurrency} concurrent requests"
    else:
        capable = (
            f"the app first coped with {concurrency} concurrent requests "
            f"{format_duration(result.capable_after)} in"
        )
    if result.ready_after is None:
        return f"{capable}; the gate stayed shut: {result.status.reason}"
    return (
        f"{capable}; the gate opened {format_duration(result.ready_after)} in, once the "
        f"thresholds, judged over {_window_words(window)}, had held for "
        f"{format_duration(hold)} at that concurrency."
    )


def _window_words(window: str | float) -> str:
    """``a 5s window``, or what ``window: auto`` judges."""
    if window == "auto":
        return "just enough of the most recent requests (window: auto)"
    return f"a {format_duration(window) if isinstance(window, float) else window} window"


def demo_command(
    app_capacity: int,
    app_warm_requests: int,
    app_cold_latency: str,
    app_compile_delay: str,
    *,
    concurrency: int,
    p95: str,
    hold: str,
    timeout: str,
    sql: bool,
    window: str = "5s",
    report: Path | None,
    log_format: str,
) -> tuple[bool, str]:
    """``warmgate demo`` with its command-line options: ``(ready, the punchline)``."""
    try:
        behavior = Behavior(
            start_capacity=1,
            full_capacity=app_capacity,
            warm_requests=app_warm_requests,
            cold_latency=parse_duration(app_cold_latency),
            compile_delay=parse_duration(app_compile_delay),
            jit_half_life=400,
        )
    except ValueError as exc:
        raise ConfigError(f"--app-cold-latency/--app-compile-delay: {exc}.") from None
    overrides = {
        "load": {"concurrency": concurrency},
        "gate": {"p95": p95, "hold": hold, "timeout": timeout, "window": window},
        "log_format": log_format,
    }
    result = run_demo(behavior, overrides, report, sql=sql)
    # `hold` passed the config validation in run_demo, so it parses here.
    return result.status.ready, summary(result, concurrency, parse_duration(hold), result.window)
