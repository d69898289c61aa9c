"""The ``run`` supervisor: the small process that lives as long as the pod.

``warmgate run`` validates the configuration, takes the status directory's lock, binds the
readiness port, then ``exec``\\ s into this module (same PID, same lock, same socket), which
imports only the standard library, prometheus_client and warmgate's pure modules. From then on:

- whenever the lifecycle machine arms (at start, after a restart of the app, to retry after
  failing closed) it starts a *primer* — ``warmgate prime`` with the same options, the very
  code ``prime`` runs — which sends its statuses, its request metrics and its record up a pipe;
- it serves ``/readyz``, ``/livez``, ``/status`` and ``/metrics`` from memory, writes the status
  directory (the only writer while it lives) and renews the heartbeat every second;
- once the primer has ended, it watches the app's port and tells the machine what it sees: a
  refused connection (the app's process is gone) withdraws readiness at once and re-arms;
- a primer that dies without an outcome (a crash, the OOM killer) or stops talking (a hung
  loop) is started again after a growing back-off; readiness is never claimed meanwhile.

So the heavy machinery (pydantic, httpx, aiohttp, SQLAlchemy) is resident only while priming,
and warmgate's own failures never cost a warm pod its readiness. Decisions are the machine's
(``machine.py``); this module carries out its actions.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from warmgate import __version__
from warmgate.decide.gate import FAILED_CLOSED, OPENED_ON_TIMEOUT
from warmgate.decide.lifecycle import Action, Event, Lifecycle, Policy, State, Transition
from warmgate.kernel.secrets import Secrets
from warmgate.serve.logs import Log
from warmgate.serve.status import (
    FAILED,
    READY,
    STOPPED,
    WAITING,
    StatusDir,
    iso_time,
    write_failure,
)

TICK = 0.25
"""Seconds between turns of the supervisor's loop while a primer runs (its words wake it
sooner)."""
WATCH_INTERVAL = 0.5
"""Seconds between probes of the app's port once the primer has ended: readiness drops within
this of a restart. The loop sleeps this long between turns then, so an idle sidecar costs
little CPU."""
PROBE_TIMEOUT = 1.0
BEAT_INTERVAL = 1.0
LIVENESS_STALL = 10.0
"""Seconds without a turn of the loop after which ``/livez`` fails."""
SILENT_LIMIT = 30.0
"""Seconds a primer may go without a word before it counts as hung and is replaced."""
GRACE = 1.0
"""Seconds a primer gets to stop after SIGTERM before it is killed (the supervisor writes the
final status itself, so nothing of the primer's is lost)."""
SHUTDOWN_GRACE = 0.5
"""At SIGTERM the primer gets less: the whole sidecar must be gone within 2 s."""
FILE_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything the supervisor needs, worked out by ``warmgate run`` before the ``exec``."""

    argv: list[str]
    """The primer's command line after ``python -m warmgate``."""
    listen_fd: int
    status_dir: str | None = None
    watch: list[tuple[str, int]] = field(default_factory=list)
    """The app's addresses; a refused connection on one means the app restarted."""
    policy: dict[str, Any] = field(default_factory=dict)
    keep_warm: bool = False
    resume: bool = False
    log_format: str = "auto"
    status: dict[str, Any] = field(default_factory=dict)
    """The first status to show, until the primer speaks."""
    early_signal: str | None = None

    def to_json(self) -> str:
        """The ``exec`` argument."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Read the ``exec`` argument back."""
        data = json.loads(text)
        data["watch"] = [(str(host), int(port)) for host, port in data["watch"]]
        return cls(**data)


def exec_supervisor(plan: Plan, keep: list[int]) -> None:
    """Become the supervisor: same PID, the descriptors in ``keep`` carried over."""
    for fd in keep:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "warmgate.runtime.supervisor", plan.to_json()])  # noqa: S606 - our own module, no shell


def probe_address(host: str, port: int) -> Event:
    """One TCP connect: up, refused (nothing listens: the process is gone) or unreachable.

    A connect that times out counts as up: an overloaded app's full accept queue drops SYNs,
    and overload is not a restart. Unreachable means no route, no such host, and the like.
    """
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return Event.UP
    except ConnectionRefusedError:
        return Event.REFUSED
    except TimeoutError:
        return Event.UP
    except OSError:
        return Event.UNREACHABLE


def primer_death(code: int, silent_for: float | None = None) -> str:
    """How a primer that ended without an outcome ended, for the reason that says so.

    ``silent_for``: the supervisor stopped it itself after that many seconds without a word, so
    whatever signal ended it was the supervisor's, not the out-of-memory killer's.
    """
    if silent_for is not None:
        return f"hung (it said nothing for {silent_for:.0f}s) and was stopped by the supervisor"
    if code == -signal.SIGKILL:
        return (
            "killed by signal 9 (perhaps the out-of-memory killer: raise the container's "
            "memory limit)"
        )
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"


@dataclass
class Primer:
    """One primer process and what it has said."""

    process: subprocess.Popen[bytes]
    generation: int
    last_word: float
    outcome_seen: bool = False
    ended: bool = False
    """Its pipe has been read to the end: every word it said has been taken in."""


class Supervisor:
    """Starts primers, serves and writes what they say, watches the app, re-arms."""

    def __init__(self, plan: Plan, log: Log) -> None:
        self.plan = plan
        self.log = log
        self.machine = Lifecycle(Policy(**plan.policy))
        self.status_dir = Path(plan.status_dir) if plan.status_dir else None
        self._dir = StatusDir(self.status_dir) if self.status_dir else None
        self.started = time.monotonic()
        self._wall_offset = time.time() - self.started
        self._status: dict[str, Any] = dict(plan.status)
        self._snapshot: tuple[bool, str, dict[str, Any]] = (False, "starting", self._status)
        self._traffic = b""
        self._messages: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self._primer: Primer | None = None
        self._generation = 0
        self._turned = self.started
        self._beaten = float("-inf")
        self._written = float("-inf")
        self._watched = float("-inf")
        self._write_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signal: str | None = plan.early_signal
        self._exit_code = 0

    # -- the surfaces -----------------------------------------------------------------------

    def snapshot(self) -> tuple[bool, str, dict[str, Any]]:
        """``(ready, reason, status JSON)`` for the endpoint thread (one reference read)."""
        return self._snapshot

    def liveness(self) -> tuple[bool, str]:
        """Alive while the loop keeps turning."""
        stalled = time.monotonic() - self._turned
        if stalled > LIVENESS_STALL:
            return False, f"the supervisor's loop has not turned for {stalled:.0f}s"
        return True, "ok"

    def metrics_text(self) -> bytes:
        """The status gauges, then the primer's request counters and histogram."""
        from prometheus_client import CollectorRegistry, generate_latest

        from warmgate.serve.metrics import StatusCollector

        registry = CollectorRegistry(auto_describe=False)
        ready, _, status = self._snapshot
        registry.register(StatusCollector(lambda: (ready, status)))
        return generate_latest(registry) + self._traffic

    # -- the loop ---------------------------------------------------------------------------

    def request_stop(self, name: str) -> None:
        """Signal handlers call this: the loop stops at its next turn."""
        self._signal = self._signal or name
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Supervise until a signal (or a fatal primer error); the exit code."""
        now = time.monotonic()
        self._apply(self.machine.handle(Event.SUPERVISE, now), resume=self.plan.resume)
        while True:
            now = time.monotonic()
            self._turned = now
            self._beat(now)
            if self._signal is not None or self._stop.is_set():
                break
            self._drain(now)
            self._reap(now)
            step = self.machine.tick(now)
            if step is not None:
                self._apply(step, reason=self._rearm_reason(step))
            self._watch(now)
            if self._exit_code:
                break
            self._wake.wait(TICK if self._primer is not None else WATCH_INTERVAL)
            self._wake.clear()
        self._shutdown()
        return self._exit_code

    def _beat(self, now: float) -> None:
        if self._dir is None or now - self._beaten < BEAT_INTERVAL:
            return
        self._beaten = now
        try:
            self._dir.beat()
        except OSError as exc:
            self._write_failed(exc)

    def _drain(self, now: float) -> None:
        """Take in what the primer said."""
        while True:
            try:
                generation, message = self._messages.get_nowait()
            except queue.Empty:
                return
            primer = self._primer
            if primer is None or generation != primer.generation:
                continue  # a primer that was replaced
            if message is None:
                primer.ended = True
                continue
            primer.last_word = now
            directory = self._dir
            if "report" in message and directory is not None:
                self._guarded(lambda d=directory, m=message: d.write_report(m["report"]))
            status = message.get("status")
            if isinstance(status, dict):
                self._traffic = str(message.get("metrics", "")).encode() or self._traffic
                self._from_primer(now, primer, status)

    def _from_primer(self, now: float, primer: Primer, status: dict[str, Any]) -> None:
        status = {**status, "started_at": self._status.get("started_at")}
        if self.machine.state is not State.PRIMING:
            if status.get("state") == READY and self.machine.state is State.READY:
                self._show(status, now)  # a keep-warm primer's progress; readiness unchanged
            return
        self.machine.note_answered(bool(status.get("target_answered")))
        outcome = status.get("outcome")
        if outcome is not None and status.get("state") in (READY, FAILED):
            primer.outcome_seen = True
            answered = bool(status.get("target_answered"))
            ready = status.get("state") == READY
            self._apply(self.machine.worker_outcome(now, ready=ready, answered=answered))
            self._show(status, now, force=True)
            return
        if status.get("ready"):
            status = {**status, "ready": False}  # only the machine says ready
        self._show(status, now)

    def _reap(self, now: float) -> None:
        """A primer that ended: fine after an outcome; a crash without one."""
        primer = self._primer
        if primer is None:
            return
        code = primer.process.poll()
        silent = now - primer.last_word
        if code is None and silent <= SILENT_LIMIT:
            return
        if code is not None and not primer.ended and silent <= SILENT_LIMIT:
            return  # its last words (an outcome, the record) are still in the pipe
        hung = code is None
        if code is None:
            self.log.event(
                "primer_hung", f"the primer said nothing for {silent:.0f}s; replacing it"
            )
            self._stop_primer()
            code = primer.process.wait()  # ended: _stop_primer waited for it
        self._primer = None
        if primer.outcome_seen:
            return
        if code == 2:
            self.log.event("primer_failed", "the primer refused the configuration; stopping")
            self._exit_code = 2
            return
        if self.machine.state is not State.PRIMING:
            return
        why = primer_death(code, silent if hung else None)
        step = self.machine.worker_outcome(now, ready=None, answered=False)
        wait = (self.machine.respawn_at or now) - now
        reason = f"the primer {why} before an outcome; starting another in {wait:.0f}s"
        self.log.event("primer_crashed", reason, code=code)
        self._apply(step, reason=reason)

    def _watch(self, now: float) -> None:
        """Once the primer has ended: probe the app's port and tell the machine."""
        if self.machine.state not in (State.READY, State.FAILED):
            return
        if now - self._watched < WATCH_INTERVAL or not self.plan.watch:
            return
        self._watched = now
        results = [(address, probe_address(*address)) for address in self.plan.watch]
        worst = next((r for r in results if r[1] is Event.REFUSED), None)
        worst = worst or next((r for r in results if r[1] is Event.UNREACHABLE), results[0])
        (host, port), event = worst
        step = self.machine.handle(event, time.monotonic())
        if step.changed:
            self._apply(step, reason=self._rearm_reason(step, f"{host}:{port}"))

    def _rearm_reason(self, step: Transition, where: str = "the target") -> str:
        """Why the machine armed again (logged as ``rearm``); empty if it did not."""
        if not (step.state is State.PRIMING and step.changed):
            return ""
        policy = self.machine.policy
        reasons = {
            Event.RESTARTED: f"{where} refused a connection: the app restarted, and a "
            "restarted app is cold",
            Event.GONE: f"{where} has been unreachable for {policy.rearm_after:g}s",
            Event.ANSWERED: f"{where} answers at last; it is cold",
            Event.RETRY: f"priming again {policy.retry_after:g}s after failing closed",
        }
        reason = f"re-arming: {reasons.get(step.event, step.event.value)}"
        self.log.event("rearm", reason, rearms=self.machine.rearms)
        return reason

    # -- actions ----------------------------------------------------------------------------

    def _apply(self, step: Transition, *, resume: bool = False, reason: str = "") -> None:
        now = time.monotonic()
        for action in step.actions:
            if action is Action.WITHDRAW or (action is Action.PUBLISH and reason):
                status = self._own_status(WAITING, reason or step.event.value, now)
                self._show(status, now, True, own=True)
            elif action is Action.STOP_WORKER:
                self._stop_primer()
            elif action is Action.SPAWN:
                self._spawn(now, resume=resume)
            elif (
                action is Action.FINISH
                and step.previous is State.PRIMING
                and step.event not in (Event.WORKER_READY, Event.WORKER_FAILED)
            ):
                verb = "failed closed" if step.state is State.FAILED else "opened anyway"
                why = f"{verb}: no primer reached an outcome in time"
                outcome = FAILED_CLOSED if step.state is State.FAILED else OPENED_ON_TIMEOUT
                status = self._own_status(step.state.public, why, now, outcome=outcome)
                self._show(status, now, force=True, own=True)

    def _own_status(
        self, state: str, reason: str, now: float, outcome: str | None = None
    ) -> dict[str, Any]:
        """A status of the supervisor's own, from the last one with new state and reason."""
        stamp = iso_time(self._wall(now))
        return {
            **self._status,
            "state": state,
            "ready": state == READY,
            "reason": reason,
            "outcome": outcome,
            "updated_at": stamp,
            "phase_started_at": stamp,
            "rearms": self.machine.rearms,
            "mode": "run",
        }

    def _show(
        self, status: dict[str, Any], now: float, force: bool = False, *, own: bool = False
    ) -> None:
        """Make ``status`` current: in memory for the endpoint, then in the status directory.

        ``own``: the supervisor's own decision, logged here (a primer logs its own phases).
        """
        status = {**status, "rearms": self.machine.rearms, "mode": "run"}
        status["ready"] = bool(status.get("ready")) and self.machine.ready
        previous = self._status
        changed = (previous.get("state"), previous.get("ready")) != (
            status["state"],
            status["ready"],
        )
        if changed and own:
            self.log.event(
                "phase", str(status.get("reason", "")), state=status["state"],
                ready=status["ready"], outcome=status.get("outcome"),
            )  # fmt: skip
        write = self._dir is not None and (changed or force or now - self._written >= FILE_INTERVAL)
        # Ready reaches the directory before the endpoint; not ready reaches the endpoint first.
        # So whoever reads either one never sees ready for longer than the other says it.
        if status["ready"] and write:
            self._write(status, now)
        self._status = status
        self._snapshot = (status["ready"], str(status.get("reason", "")), status)
        if not status["ready"] and write:
            self._write(status, now)

    def _write(self, status: dict[str, Any], now: float) -> None:
        self._written = now
        directory = self._dir
        if directory is not None:
            self._guarded(lambda: directory.write_json(status))

    def _guarded(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:
            self._write_failed(exc)
        else:
            self._write_error = None

    def _write_failed(self, exc: OSError) -> None:
        error, sentence = write_failure(self.status_dir, exc)
        if error != self._write_error:
            self._write_error = error
            self.log.event("status_write_failed", sentence)

    def _spawn(self, now: float, *, resume: bool) -> None:
        """Start a primer with a pipe to talk up (not once stopping)."""
        self._stop_primer()
        if self._stop.is_set() or self._signal is not None:
            return
        read_end, write_end = os.pipe()
        self._generation += 1
        supervised = {
            "fd": write_end,
            "resume": resume,
            "keep_warm": self.plan.keep_warm,
            "rearms": self.machine.rearms,
            "parent": os.getpid(),
        }
        command = [
            sys.executable, "-m", "warmgate", *self.plan.argv,
            "--supervised", json.dumps(supervised),
        ]  # fmt: skip
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, pass_fds=(write_end,))  # noqa: S603 - our own CLI
        except OSError as exc:  # a pids or memory limit: a crash like any other, with a back-off
            os.close(read_end)
            reason = f"cannot start a primer ({exc.strerror or exc}); trying again"
            self.log.event("primer_crashed", reason)
            self.machine.worker_outcome(now, ready=None, answered=False)
            return
        finally:
            os.close(write_end)
        self._primer = Primer(process, self._generation, now)
        reader = threading.Thread(
            target=self._read, args=(read_end, self._generation), daemon=True,
            name=f"warmgate-primer-{self._generation}",
        )  # fmt: skip
        reader.start()

    def _read(self, fd: int, generation: int) -> None:
        """Forward each line the primer sends to the loop; ``None`` at the end of the pipe."""
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._messages.put((generation, message))
                    self._wake.set()
        self._messages.put((generation, None))
        self._wake.set()

    def _stop_primer(self, grace: float = GRACE) -> None:
        primer = self._primer
        if primer is None or primer.process.poll() is not None:
            return
        primer.process.terminate()
        try:
            primer.process.wait(grace)
        except subprocess.TimeoutExpired:
            primer.process.kill()
            primer.process.wait()

    def _shutdown(self) -> None:
        now = time.monotonic()
        if self.machine.state is not State.STOPPED:
            self.machine.handle(Event.STOP, now)
        self._stop_primer(SHUTDOWN_GRACE)
        if self._signal is not None:
            reason = f"stopped by {self._signal}; not vouching for the app any more"
            self._show(self._own_status(STOPPED, reason, now), now, force=True, own=True)
            self.log.event("stop", f"stopped by {self._signal}", state=STOPPED)

    def _wall(self, monotonic: float) -> float:
        return self._wall_offset + monotonic


def main() -> None:
    """``python -m warmgate.runtime.supervisor PLAN``: what ``warmgate run`` ``exec``\\ s into."""
    supervisor: Supervisor | None = None
    early: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if supervisor is None:
            early.append(name)
        else:
            supervisor.request_stop(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plan = Plan.from_json(sys.argv[1])
    log = Log.for_format(plan.log_format, Secrets())
    supervisor = Supervisor(plan, log)
    for name in early:
        supervisor.request_stop(name)
    from warmgate.serve.server import Endpoint

    listener = socket.socket(fileno=plan.listen_fd)
    endpoint = Endpoint(
        supervisor.snapshot,
        supervisor.metrics_text,
        liveness=supervisor.liveness,
        report=lambda line: log.event("endpoint", line),
    )
    port = endpoint.start(listener)
    log.event(
        "listening",
        f"serving /readyz, /status and /metrics on port {port}",
        host=listener.getsockname()[0],
        port=port,
    )
    log.event("start", f"warmgate {__version__} run: supervising", mode="run")
    try:
        code = supervisor.run()
    finally:
        endpoint.stop()
        log.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
