"""The ``run`` supervisor: the small process that lives as long as the pod.

``warmgate run`` validates the configuration, takes the status directory's lock, binds the
readiness port, then ``exec``\\ s into this module (same PID, same lock, same socket), which
imports only the standard library, prometheus_client and warmgate's small modules. From then on:

- whenever the lifecycle machine arms (at start, after a restart of the app, to retry after
  failing closed) it starts a *primer* — ``warmgate prime`` with the same options, the very
  code ``prime`` runs — which sends its statuses, its request metrics and its record up a pipe;
- it serves ``/readyz``, ``/livez``, ``/status`` and ``/metrics`` from memory, writes the status
  directory (the only writer while it lives) and renews the heartbeat every second
  (``shell.py``);
- once the primer has ended, it watches the app's port and tells the machine what it sees,
  classified by :func:`~warmgate.decide.reach.reach_of`: a refused connection (the app's process
  is gone) withdraws readiness at once and re-arms;
- a primer that dies without an outcome (a crash, the OOM killer) or stops talking (a hung
  loop) is started again after a growing back-off; readiness is never claimed meanwhile.

So the heavy machinery (pydantic, httpx, aiohttp, SQLAlchemy) is resident only while priming,
and warmgate's own failures never cost a warm pod its readiness. Decisions are the machine's
(``decide/lifecycle.py``), the state and readiness shown included (:meth:`Lifecycle.public`,
given the phase the primer reports); this module carries out its actions. The clock, the way a
primer is started and the way the app is probed are injected, so tests drive it in-process.
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from warmgate.decide.gate import FAILED_CLOSED, OPENED_ON_TIMEOUT
from warmgate.decide.lifecycle import Action, Event, Lifecycle, Policy, State, Transition
from warmgate.decide.reach import Reach, reach_of
from warmgate.runtime.events import EventRelay
from warmgate.runtime.handover import Supervised, SupervisorHandover
from warmgate.runtime.shell import BEAT_INTERVAL, Surfaces, serve_process, wall_clock
from warmgate.serve.logs import Log
from warmgate.serve.status import Status

TICK = 0.25
"""Seconds between turns of the supervisor's loop while a primer runs (its words wake it
sooner)."""
WATCH_INTERVAL = 0.5
"""Seconds between probes of the app's port once the primer has ended: readiness drops within
this of a restart. The loop sleeps this long between turns then, so an idle sidecar costs
little CPU."""
PROBE_TIMEOUT = 1.0
LIVENESS_STALL = 10.0
"""Seconds without a turn of the loop after which ``/livez`` fails."""
SILENT_LIMIT = 30.0
"""Seconds a primer may go without a word before it counts as hung and is replaced."""
GRACE = 1.0
"""Seconds a primer gets to stop after SIGTERM before it is killed (the supervisor writes the
final status itself, so nothing of the primer's is lost)."""
SHUTDOWN_GRACE = 0.5
"""At SIGTERM the primer gets less: the whole sidecar must be gone within 2 s."""


class PrimerProcess(Protocol):
    """A started primer, as much of :class:`subprocess.Popen` as the supervisor uses."""

    @property
    def returncode(self) -> int | None:
        """Its exit code once it has ended (negative: the signal that ended it)."""
        ...

    def poll(self) -> int | None:
        """Its exit code if it has ended, else ``None``."""
        ...

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM)."""
        ...

    def kill(self) -> None:
        """End it (SIGKILL)."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to end; ``subprocess.TimeoutExpired`` past ``timeout``."""
        ...


Spawn = Callable[[list[str], int], PrimerProcess]
"""Starts a primer with a command line, handing it the descriptor of its pipe's write end."""
Probe = Callable[[str, int], Reach]
"""Probes one of the app's addresses."""


def spawn_primer(command: list[str], fd: int) -> PrimerProcess:
    """Start a primer as a child process that inherits ``fd``."""
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, pass_fds=(fd,))  # noqa: S603 - our own CLI


def probe_address(host: str, port: int) -> Reach:
    """One TCP connect to the app, classified by :func:`reach_of`: up, refused (nothing listens:
    the process is gone), busy (a connect that times out: a full accept queue, overload, not a
    restart) or unreachable (no route, no such host, and the like)."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return Reach.UP
    except OSError as exc:
        return reach_of(exc)


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

    process: PrimerProcess
    generation: int
    last_word: float
    outcome_seen: bool = False
    ended: bool = False
    """Its pipe has been read to the end: every word it said has been taken in."""
    phase: str | None = None
    """The public state it last reported (waiting or warming, until its outcome)."""


class Supervisor:
    """Starts primers, serves and writes what they say, watches the app, re-arms."""

    def __init__(
        self,
        handover: SupervisorHandover,
        log: Log,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        spawn: Spawn = spawn_primer,
        probe: Probe = probe_address,
    ) -> None:
        self.handover = handover
        self.log = log
        self.machine = Lifecycle(Policy(**handover.policy))
        self._clock = clock
        self._wall = wall_clock(clock, wall)
        self._spawner = spawn
        self._probe = probe
        directory = Path(handover.status_dir) if handover.status_dir else None
        self.surfaces = Surfaces(Status.from_json(handover.status), directory, log)
        self.events = EventRelay.from_handover(handover.events, log, handover.log_format)
        self._traffic = b""
        self._messages: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self._primer: Primer | None = None
        self._generation = 0
        self._turned = clock()
        self._beaten = float("-inf")
        self._watched = float("-inf")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._signal: str | None = handover.early_signal
        self._exit_code = 0

    @property
    def status(self) -> Status:
        """The status shown now."""
        return self.surfaces.status

    @property
    def exit_code(self) -> int:
        """What the process exits with: 2 once a primer refused the configuration, else 0."""
        return self._exit_code

    def liveness(self) -> tuple[bool, str]:
        """Alive while the loop keeps turning."""
        stalled = self._clock() - self._turned
        if stalled > LIVENESS_STALL:
            return False, f"the supervisor's loop has not turned for {stalled:.0f}s"
        return True, "ok"

    def metrics_text(self) -> bytes:
        """The status gauges, then the primer's request counters and histogram."""
        return self.surfaces.metrics_text(self._traffic)

    # -- the loop ---------------------------------------------------------------------------

    def request_stop(self, name: str) -> None:
        """Signal handlers call this: the loop stops at its next turn."""
        self._signal = self._signal or name
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Supervise until a signal (or a fatal primer error); the exit code."""
        self.start()
        while self.turn():
            self._wake.wait(TICK if self._primer is not None else WATCH_INTERVAL)
            self._wake.clear()
        self.shutdown()
        return self.exit_code

    def start(self) -> None:
        """Arm: the first primer starts."""
        now = self._clock()
        step = self.machine.handle(Event.SUPERVISE, now)
        if self.events is not None:
            self.events.observe(None, self.status, self._wall(now))
        self._apply(step, resume=self.handover.resume)

    def turn(self, wait: float = 0.0) -> bool:
        """One turn of the loop; whether to go on. ``wait``: how long to wait for the primer's
        first word of this turn, if none has arrived yet."""
        now = self._clock()
        self._turned = now
        self._beat(now)
        if self._signal is not None or self._stop.is_set():
            return False
        self._drain(now, wait)
        self._reap(now)
        step = self.machine.tick(now)
        if step is not None:
            self._apply(step, reason=self._rearm_reason(step))
        self._watch(now)
        if self.events is not None:
            self.events.tick(self._wall(now))
        return not self._exit_code

    def _beat(self, now: float) -> None:
        if now - self._beaten >= BEAT_INTERVAL:
            self._beaten = now
            self.surfaces.beat()

    def _drain(self, now: float, wait: float) -> None:
        """Take in what the primer said."""
        while True:
            try:
                generation, message = self._messages.get(timeout=wait or None, block=wait > 0)
            except queue.Empty:
                return
            wait = 0.0
            primer = self._primer
            if primer is None or generation != primer.generation:
                continue  # a primer that was replaced
            if message is None:
                primer.ended = True
                continue
            primer.last_word = now
            if "report" in message:
                self.surfaces.write_report(message["report"])
            document = message.get("status")
            if isinstance(document, dict):
                try:
                    status = Status.from_json(document)
                except ValueError:
                    continue  # not a status: words from a primer of another version
                self._traffic = str(message.get("metrics", "")).encode() or self._traffic
                self._from_primer(now, primer, status)

    def _from_primer(self, now: float, primer: Primer, status: Status) -> None:
        status = replace(status, started_at=self.status.started_at)
        if self.machine.state is not State.PRIMING:
            if status.state == "ready" and self.machine.state is State.READY:
                self._show(status, now)  # a keep-warm primer's progress; readiness unchanged
            return
        self.machine.note_answered(status.target_answered)
        primer.phase = status.state
        if status.outcome is not None and status.state in ("ready", "failed"):
            primer.outcome_seen = True
            ready = status.state == "ready"
            outcome = self.machine.primer_outcome(now, ready=ready, answered=status.target_answered)
            self._apply(outcome)
            self._show(status, now, force=True)
            return
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
        step = self.machine.primer_outcome(now, ready=None, answered=False)
        wait = (self.machine.respawn_at or now) - now
        reason = f"the primer {why} before an outcome; starting another in {wait:.0f}s"
        self.log.event("primer_crashed", reason, code=code)
        self._apply(step, reason=reason)

    def _watch(self, now: float) -> None:
        """Once the primer has ended: probe the app's port and tell the machine."""
        if self.machine.state not in (State.READY, State.FAILED):
            return
        if now - self._watched < WATCH_INTERVAL or not self.handover.watch:
            return
        self._watched = now
        results = [(address, self._probe(*address)) for address in self.handover.watch]
        worst = next((r for r in results if r[1] is Reach.REFUSED), None)
        worst = worst or next((r for r in results if r[1] is Reach.UNREACHABLE), results[0])
        (host, port), reach = worst
        step = self.machine.probe(reach, self._clock())
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
        now = self._clock()
        for action in step.actions:
            if action is Action.WITHDRAW or (action is Action.PUBLISH and reason):
                self._show(self._own_status(reason or step.event.value, now), now, True, own=True)
            elif action is Action.STOP_PRIMER:
                self._stop_primer()
            elif action is Action.SPAWN:
                self._spawn(now, resume=resume)
            elif (
                action is Action.FINISH
                and step.previous is State.PRIMING
                and step.event not in (Event.PRIMER_READY, Event.PRIMER_FAILED)
            ):
                verb = "failed closed" if step.state is State.FAILED else "opened anyway"
                why = f"{verb}: no primer reached an outcome in time"
                outcome = FAILED_CLOSED if step.state is State.FAILED else OPENED_ON_TIMEOUT
                status = self._own_status(why, now, outcome=outcome)
                self._show(status, now, force=True, own=True)

    def _own_status(self, reason: str, now: float, outcome: str | None = None) -> Status:
        """A status of the supervisor's own: the last one with a new reason and outcome."""
        stamp = self._wall(now)
        return replace(
            self.status, reason=reason, outcome=outcome, updated_at=stamp, phase_started_at=stamp
        )

    def _show(self, status: Status, now: float, force: bool = False, *, own: bool = False) -> None:
        """Make ``status`` current, with the state and readiness the machine says.

        ``own``: the supervisor's own decision, logged here (a primer logs its own phases).
        """
        primer = self._primer
        state, ready = self.machine.public(primer.phase if primer is not None else None)
        status = replace(status, state=state, ready=ready, rearms=self.machine.rearms, mode="run")
        before = self.surfaces.status
        changed = self.surfaces.show(status, now, force=force)
        if self.events is not None:
            self.events.observe(before, status, self._wall(now))
        if changed and own:
            self.log.event(
                "phase", status.reason, state=status.state, ready=status.ready,
                outcome=status.outcome,
            )  # fmt: skip

    def _spawn(self, now: float, *, resume: bool) -> None:
        """Start a primer with a pipe to talk up (not once stopping)."""
        self._stop_primer()
        self._primer = None
        if self._stop.is_set() or self._signal is not None:
            return
        read_end, write_end = os.pipe()
        self._generation += 1
        supervised = Supervised(
            fd=write_end,
            resume=resume,
            keep_warm=self.handover.keep_warm,
            rearms=self.machine.rearms,
            parent=os.getpid(),
        )
        command = [
            sys.executable, "-m", "warmgate", *self.handover.argv,
            "--supervised", supervised.to_json(),
        ]  # fmt: skip
        try:
            process = self._spawner(command, write_end)
        except OSError as exc:  # a pids or memory limit: a crash like any other, with a back-off
            os.close(read_end)
            reason = f"cannot start a primer ({exc.strerror or exc}); trying again"
            self.log.event("primer_crashed", reason)
            self.machine.primer_outcome(now, ready=None, answered=False)
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

    def shutdown(self) -> None:
        """Stop the primer and, after a signal, show that warmgate vouches for nothing now."""
        now = self._clock()
        if self.machine.state is not State.STOPPED:
            self.machine.handle(Event.STOP, now)
        self._stop_primer(SHUTDOWN_GRACE)
        if self.events is not None:
            self.events.close()
        if self._signal is not None:
            reason = f"stopped by {self._signal}; not vouching for the app any more"
            self._show(self._own_status(reason, now), now, force=True, own=True)
            self.log.event("stop", f"stopped by {self._signal}", state=self.status.state)


def main() -> None:
    """``python -m warmgate.runtime.supervisor HANDOVER``: what ``warmgate run`` ``exec``\\ s
    into."""
    handover = SupervisorHandover.from_json(sys.argv[1])
    serve_process(
        handover.listen_fd,
        handover.log_format,
        handover.early_signal,
        lambda log: Supervisor(handover, log),
        started="run: supervising",
    )


if __name__ == "__main__":
    main()
