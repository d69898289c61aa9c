"""Process lifecycle for the commands: one event loop, signals, a bounded shutdown.

Signal handlers only set an event. The runner notices it within a tick; if it has not finished
``GRACE`` seconds later it is cancelled. Either way a final status is written, then the
endpoint stops.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from warmgate import __version__
from warmgate.config import Config
from warmgate.errors import ConfigError, StatusDirError
from warmgate.logs import Log
from warmgate.metrics import Metrics
from warmgate.report import Record
from warmgate.runner import Mode, Runner
from warmgate.secrets import Secrets
from warmgate.server import status_server
from warmgate.status import STATES, Status, StatusDir, is_ready, read_status
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
    ``report`` event in JSON), and to ``report`` (.html or .svg) when given.
    """
    if report is not None:
        report_format(report)
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


def report_format(path: Path) -> str:
    """``html`` or ``svg`` from the file name, or a ConfigError saying what to write."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("html", "svg"):
        raise ConfigError(
            f"--report: {path} must end in .html (a page with the chart) or .svg (the chart)."
        )
    return suffix


def publish_report(record: Record, log: Log, path: Path | None) -> None:
    """Show the report in the log, and write it to ``path`` if given."""
    from warmgate.render import phase_durations, render_html, render_svg, render_text

    if log.human:
        log.write_block(render_text(record))
    else:
        phases = {
            name: {phase: histogram.summary() for phase, histogram in by_phase.items()}
            for name, by_phase in record.targets.items()
        }
        durations = {f"{k}_s": round(v, 3) for k, v in phase_durations(record).items()}
        log.event("report", f"warm-up {record.outcome}", targets=phases, **durations)
    if path is not None:
        text = render_html(record) if report_format(path) == "html" else render_svg(record)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise StatusDirError(f"--report: cannot write {path} ({exc.strerror}).") from None
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


class FileStatusCollector(Collector):
    """``serve`` mode metrics: readiness and state read from the status directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Any:
        """Yield ``warmgate_ready``, ``warmgate_state`` and ``warmgate_build_info``."""
        status = _safe_read(self.directory)
        ready = GaugeMetricFamily("warmgate_ready", "1 while the gate is open, else 0.")
        ready.add_metric([], 1 if is_ready(self.directory, status) else 0)
        yield ready
        state = GaugeMetricFamily(
            "warmgate_state", "The gate's current state.", labels=["warmgate_state"]
        )
        current = status.get("state") if status else None
        for name in STATES:
            state.add_metric([name], 1 if name == current else 0)
        yield state
        build = InfoMetricFamily("warmgate_build", "Which warmgate is serving.")
        build.add_metric([], {"version": __version__})
        yield build


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
