"""One warm-up as a process: ``prime``, and each primer of ``run``: the event loop, signals,
shutdown, and where the statuses go (the status directory, or the pipe to the supervisor).

Signal handlers only set an event. The warm-up notices it within a tick; if it has not finished
``GRACE`` seconds later it is cancelled. Either way a final status is written. A signal that
arrives before the loop exists (while the command imports and validates) is remembered by the
handler ``cli.main`` installs first, and honoured the moment the loop starts.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from prometheus_client import CollectorRegistry

from warmgate import __version__
from warmgate.config.model import Config
from warmgate.kernel.errors import ConfigError, NotReadyError
from warmgate.kernel.redaction import Secrets
from warmgate.report.files import check_report_path, write_report
from warmgate.report.record import Record
from warmgate.runtime.daemon_pool import DaemonPool
from warmgate.runtime.handover import Supervised
from warmgate.runtime.publisher import Sink, Uplink
from warmgate.runtime.signals import EARLY as EARLY_SIGNALS
from warmgate.runtime.signals import die_with_parent
from warmgate.runtime.warmup import WarmUp
from warmgate.serve.logs import Log
from warmgate.serve.metrics import Metrics
from warmgate.serve.status import Status, StatusDir
from warmgate.traffic.targets import compile_config

GRACE = 0.5
"""Seconds the warm-up gets to wind down after a signal before it is cancelled: ``prime`` must be
gone within 1 s of SIGTERM, final status written (it usually winds down within one tick)."""
BEAT_INTERVAL = 1.0
"""Seconds between a primer's heartbeats to its supervisor."""


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[str]:
    """SIGTERM and SIGINT set ``stop``; returns a list that records which signal came."""
    received: list[str] = list(EARLY_SIGNALS)
    EARLY_SIGNALS.clear()

    def on_signal(name: str) -> None:
        received.append(name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
    if received:
        stop.set()
    return received


def supervised_option(text: str) -> Supervised:
    """The hidden ``--supervised`` option's value; a ConfigError if it is not one."""
    try:
        return Supervised.from_json(text)
    except ValueError:
        raise ConfigError("--supervised is internal to `warmgate run`; do not set it.") from None


def execute(
    config: Config,
    secrets: Secrets,
    *,
    report: Path | None = None,
    supervised: Supervised | None = None,
) -> Status:
    """Run one warm-up to its outcome (``prime``, or a primer of ``run``); the final status.

    At the end of a ``prime`` warm-up the report goes to the log (a table and chart for
    people, one ``report`` event in JSON), and to ``report`` (.html or .svg) when given: its
    directory is checked before any traffic, so a wrong path fails at once.
    """
    if report is not None:
        check_report_path(report)
    # A primer of run stays quiet about the files: run has warned once already.
    warn = secrets.warn if supervised is None else _quiet
    plan = compile_config(config, warn, secrets=secrets)
    compiled = plan.targets
    log = Log.for_format(config.log_format, secrets)
    registry = CollectorRegistry()
    metrics = Metrics(registry, tuple(item.target.name for item in compiled))
    sink: Sink | None = None
    if supervised is not None:
        die_with_parent(supervised.parent)
        sink = Uplink(supervised.fd, metrics)
    elif config.status_dir is not None:
        status_dir = StatusDir(config.status_dir)
        status_dir.prepare()
        status_dir.lock()
        sink = status_dir
    warm_up = WarmUp(
        config,
        compiled,
        metrics=metrics,
        log=log,
        sink=sink,
        mode="prime" if supervised is None else "run",
        resume=supervised is not None and supervised.resume,
        keep_warm=supervised is not None and supervised.keep_warm,
        rearms=0 if supervised is None else supervised.rearms,
        wait=plan.wait,
    )
    log.event(
        "start",
        f"warmgate {__version__} {'prime' if supervised is None else 'primer'}: "
        f"{len(compiled)} target(s), concurrency {config.load.concurrency}",
        mode="prime" if supervised is None else "primer",
    )
    try:
        status = asyncio.run(_supervise(warm_up))
    finally:
        log.close()
    if warm_up.record is not None and supervised is None:
        publish_report(warm_up.record, log, report)
    if isinstance(sink, StatusDir) and not warm_up.publisher.status_written:
        # An init container that exits 0 with no marker written leaves the pod unready for a
        # reason nobody can see; say it, and fail.
        raise NotReadyError(
            f"--status-dir: the final status could not be written to {sink.path} "
            f"({warm_up.publisher.write_error}); give the volume more room (sizeLimit) or "
            "fix its permissions."
        )
    return status


async def _supervise(warm_up: WarmUp) -> Status:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(DaemonPool())  # a hung DNS lookup never holds the exit
    received = install_stop_signals(loop, stop)
    task = asyncio.create_task(warm_up.run(stop))
    beats = asyncio.create_task(_beat(warm_up))
    stop_waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        done, _ = await asyncio.wait({task}, timeout=GRACE)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    stop_waiter.cancel()
    beats.cancel()
    try:
        if received:
            await warm_up.stopped(received[0])
        elif task.done() and not task.cancelled():
            task.result()  # re-raise anything the warm-up raised
    finally:
        warm_up.publisher.close()  # every write made has landed, in order
    return warm_up.status


async def _beat(warm_up: WarmUp) -> None:
    """A primer of ``run`` says it is alive every second, whatever it is doing (jitter, a long
    back-off, keeping warm): the supervisor replaces one that falls silent."""
    while True:
        await asyncio.sleep(BEAT_INTERVAL)
        await warm_up.publisher.beat()


def publish_report(record: Record, log: Log, path: Path | None) -> None:
    """Show the report in the log, and write it to ``path`` if given.

    The report describes the warm-up, it does not decide it: a failed write is logged and the
    warm-up's outcome (and exit code) stands.
    """
    from warmgate.report.render import phase_durations, render_text

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


def _quiet(_: str) -> None:
    """A warning sink that drops what was said already."""
