"""Process lifecycle for the commands: one event loop, signals, a bounded shutdown.

Signal handlers only set an event. The runner notices it within a tick; if it has not finished
``GRACE`` seconds later it is cancelled. Either way a final status is written, then the
endpoint stops.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from warmgate import __version__
from warmgate.config import Config
from warmgate.errors import ConfigError, StatusDirError
from warmgate.logs import Log
from warmgate.metrics import FileStatusCollector, Metrics
from warmgate.report import Record
from warmgate.runner import Mode, Runner
from warmgate.secrets import Secrets
from warmgate.server import status_server
from warmgate.status import Status, StatusDir, atomic_write, is_ready, read_status
from warmgate.targets import compile_targets

GRACE = 1.5
"""Seconds the runner gets to wind down after a signal before it is cancelled."""


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[str]:
    """SIGTERM and SIGINT set ``stop``; returns a list that records which signal came."""
    received: list[str] = []

    def on_signal(name: str) -> None:
        received.append(name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
    return received


def execute(config: Config, secrets: Secrets, *, mode: Mode, report: Path | None = None) -> Status:
    """Run ``run`` or ``prime`` to the end; returns the final status.

    At the end of a warm-up the report goes to the log (a table and chart for people, one
    ``report`` event in JSON), and to ``report`` (.html or .svg) when given: its directory is
    checked before any traffic, so a wrong path fails at once rather than after the warm-up.
    """
    if report is not None:
        check_report_path(report)
    compiled = compile_targets(config)
    status_dir = StatusDir(config.status_dir) if config.status_dir is not None else None
    if status_dir is not None:
        status_dir.prepare()
    log = Log.for_format(config.log_format, secrets)
    registry = CollectorRegistry()
    metrics = Metrics(registry, tuple(item.target.name for item in compiled))
    runner = Runner(config, compiled, mode=mode, metrics=metrics, log=log, status_dir=status_dir)
    server = None
    if mode == "run":
        server = status_server(config.server.host, config.server.port, runner.snapshot, registry)
        port = server.start()
        log.event(
            "listening",
            f"serving /readyz, /status and /metrics on port {port}",
            host=config.server.host,
            port=port,
        )
    log.event(
        "start",
        f"warmgate {__version__} {mode}: {len(compiled)} target(s), "
        f"concurrency {config.load.concurrency}",
        mode=mode,
    )
    try:
        status = asyncio.run(_supervise(runner))
    finally:
        log.close()
        if server is not None:
            server.stop()
    if runner.record is not None and mode == "prime":
        publish_report(runner.record, log, report)
    return status


async def _supervise(runner: Runner) -> Status:
    stop = asyncio.Event()
    received = install_stop_signals(asyncio.get_running_loop(), stop)
    task = asyncio.create_task(runner.run(stop))
    stop_waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        done, _ = await asyncio.wait({task}, timeout=GRACE)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    stop_waiter.cancel()
    if received:
        await runner.stopped(received[0])
    elif task.done() and not task.cancelled():
        task.result()  # re-raise anything the runner raised
    return runner.status


def report_format(path: Path, option: str = "--report") -> str:
    """``html`` or ``svg`` from the file name, or a ConfigError naming ``option``."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("html", "svg"):
        raise ConfigError(
            f"{option}: {path} must end in .html (a page with the chart) or .svg (the chart)."
        )
    return suffix


def check_report_path(path: Path, option: str = "--report") -> None:
    """Raise a ConfigError naming ``option`` unless a report can be written to ``path``."""
    report_format(path, option)
    directory = path.parent
    if path.is_dir():
        raise ConfigError(
            f"{option}: {path} is a directory; name a file in it, such as report.html."
        )
    if not directory.is_dir():
        raise ConfigError(
            f"{option}: {directory} does not exist; create it or write the report elsewhere."
        )
    try:
        tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-").close()
    except OSError as exc:
        raise ConfigError(
            f"{option}: {directory} is not writable ({exc.strerror or type(exc).__name__}); "
            "write the report to a writable directory."
        ) from None


def write_report(record: Record, path: Path, option: str = "--report") -> None:
    """Render ``record`` as the .html page or .svg chart ``path`` names, and write it atomically.

    Raises a ConfigError naming ``option`` when the file cannot be written.
    """
    from warmgate.render import render_html, render_svg

    text = render_html(record) if report_format(path, option) == "html" else render_svg(record)
    try:
        atomic_write(path, text.encode())
    except OSError as exc:
        raise ConfigError(
            f"{option}: cannot write {path} ({exc.strerror or type(exc).__name__}); "
            "write the report to a writable directory."
        ) from None


def publish_report(record: Record, log: Log, path: Path | None) -> None:
    """Show the report in the log, and write it to ``path`` if given.

    The report describes the warm-up, it does not decide it: a failed write is logged and the
    warm-up's outcome (and exit code) stands.
    """
    from warmgate.render import phase_durations, render_text

    if log.human:
        log.write_block(render_text(record))
    else:
        phases = {
            name: {phase: histogram.summary() for phase, histogram in by_phase.items()}
            for name, by_phase in record.targets.items()
        }
        durations = {f"{k}_s": round(v, 3) for k, v in phase_durations(record).items()}
        log.event("report", f"warm-up {record.outcome}", targets=phases, **durations)
    if path is None:
        return
    try:
        write_report(record, path)
    except ConfigError as exc:
        log.event("report", f"the report was not written: {exc}", path=str(path), error=True)
        return
    log.event("report", f"report written to {path}", path=str(path))


def load_record(directory: Path) -> Record:
    """The warm-up record in ``directory``, or a StatusDirError saying why there is none."""
    import json

    from warmgate.status import REPORT_FILE

    path = directory / REPORT_FILE
    try:
        return Record.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise StatusDirError(
            f"{path} does not exist: no warm-up has finished with this --status-dir yet."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StatusDirError(f"{path} cannot be read as a warm-up record ({exc}).") from None


def _safe_read(directory: Path) -> dict[str, Any] | None:
    try:
        return read_status(directory)
    except StatusDirError:
        return None


def directory_snapshot(directory: Path) -> tuple[bool, str, dict[str, Any]]:
    """``(ready, reason, status JSON)`` read from ``directory`` for the endpoint."""
    status = _safe_read(directory)
    if status is None:
        return False, f"no status in {directory} yet", {"state": "waiting", "ready": False}
    return is_ready(directory, status), str(status.get("reason", "")), status


def serve_directory(directory: Path, host: str, port: int, log_format: str = "auto") -> None:
    """``serve``: expose a status directory until SIGTERM/SIGINT."""
    registry = CollectorRegistry()
    registry.register(FileStatusCollector(directory))
    server = status_server(host, port, lambda: directory_snapshot(directory), registry)
    bound = server.start()
    log = Log.for_format(log_format, Secrets())
    log.event("listening", f"serving {directory} on port {bound}", host=host, port=bound)

    async def wait_for_signal() -> None:
        stop = asyncio.Event()
        install_stop_signals(asyncio.get_running_loop(), stop)
        await stop.wait()

    try:
        asyncio.run(wait_for_signal())
    finally:
        server.stop()
        log.event("stop", "stopped", at=time.time())
