"""The ``run`` supervisor in-process: fake primers on real pipes, a fake clock, a fake probe.

The subprocess tests (tests/test_lifecycle.py) prove the wiring; these drive the supervisor's
loop one turn at a time, so each rule is shown by what the supervisor shows and does next.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from warmgate.decide.lifecycle import Policy
from warmgate.decide.reach import Reach
from warmgate.kernel.redaction import Secrets
from warmgate.runtime.handover import Supervised, SupervisorHandover
from warmgate.runtime.supervisor import SILENT_LIMIT, Supervisor
from warmgate.serve.logs import Log
from warmgate.serve.status import READY_FILE, STATUS_FILE, Status

APP = ("127.0.0.1", 8080)
POLICY = Policy(wait_timeout=30, gate_timeout=60, rearm_after=5, retry_after=10)


class FakePrimer:
    """A primer that says what the test tells it to, on the real pipe the supervisor made."""

    def __init__(self, command: list[str], fd: int) -> None:
        self.supervised = Supervised.from_json(command[command.index("--supervised") + 1])
        self._fd: int | None = os.dup(fd)  # the supervisor closes its own copy
        self.returncode: int | None = None
        self.terminated = False

    def say(self, **message: Any) -> None:
        """One line up the pipe."""
        assert self._fd is not None
        os.write(self._fd, json.dumps(message).encode() + b"\n")

    def end(self, code: int) -> None:
        """Exit with ``code``: the pipe closes."""
        self.returncode = code
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True
        self.end(-15)

    def kill(self) -> None:
        self.end(-9)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            raise subprocess.TimeoutExpired("primer", timeout or 0.0)
        return self.returncode


class Harness:
    """A supervisor, the primers it started, the app's probe answer and the clock."""

    def __init__(self, directory: Path, policy: Policy = POLICY) -> None:
        self.now = 100.0
        self.primers: list[FakePrimer] = []
        self.reach = Reach.UP
        self.log = io.StringIO()
        plan = SupervisorHandover(
            argv=["prime", "--url", "http://127.0.0.1:8080/"],
            listen_fd=-1,
            status_dir=str(directory),
            watch=[APP],
            policy=asdict(policy),
            status=status("waiting", reason="starting").to_json(),
        )
        self.supervisor = Supervisor(
            plan,
            Log(self.log, secrets=Secrets()),
            clock=lambda: self.now,
            wall=lambda: 1_000_000.0 + self.now,
            spawn=self._spawn,
            probe=lambda host, port: self.reach,
        )
        self.directory = directory

    def _spawn(self, command: list[str], fd: int) -> FakePrimer:
        primer = FakePrimer(command, fd)
        self.primers.append(primer)
        return primer

    @property
    def primer(self) -> FakePrimer:
        return self.primers[-1]

    def hear(self, document: Status, **extra: Any) -> None:
        """The current primer says ``document``; the supervisor takes it in on one turn."""
        self.primer.say(status=document.to_json(), **extra)
        assert self.supervisor.turn(wait=10.0)

    def turn_after(self, seconds: float) -> bool:
        self.now += seconds
        return self.supervisor.turn()

    def shown(self) -> tuple[str, bool, str]:
        ready, reason, document = self.supervisor.surfaces.snapshot()
        return document["state"], ready, reason

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def on_disk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.directory / STATUS_FILE).read_text())
        return data


def status(state: str, *, reason: str = "", outcome: str | None = None, **changes: Any) -> Status:
    """A primer's status."""
    values: dict[str, Any] = {
        "state": state, "ready": state == "ready", "reason": reason or state,
        "started_at": 1_000_000.0, "updated_at": 1_000_001.0, "phase_started_at": 1_000_001.0,
        "outcome": outcome, "mode": "run", "target_answered": True,
    }  # fmt: skip
    values.update(changes)
    return Status(**values)


WARM = status("ready", reason="warm: p95 12ms <= 200ms", outcome="warm")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """A supervisor whose first primer has started."""
    harness = Harness(tmp_path)
    harness.supervisor.start()
    yield harness
    for primer in harness.primers:
        primer.end(0)


def test_a_primer_phase_is_shown_and_its_outcome_opens(harness: Harness) -> None:
    """Warming is shown as warming and not ready; the warm outcome is ready everywhere."""
    assert len(harness.primers) == 1
    harness.hear(status("warming", reason="p95 412ms > 200ms at concurrency 16"))
    assert harness.shown() == ("warming", False, "p95 412ms > 200ms at concurrency 16")
    harness.hear(WARM)
    assert harness.shown() == ("ready", True, "warm: p95 12ms <= 200ms")
    assert harness.on_disk()["ready"] is True
    assert (harness.directory / READY_FILE).exists()


def test_only_the_lifecycle_says_ready(harness: Harness) -> None:
    """A primer's status that says ready without an outcome is shown as not ready."""
    harness.hear(status("warming", ready=True, reason="priming"))
    assert harness.shown() == ("warming", False, "priming")
    assert not (harness.directory / READY_FILE).exists()


def test_a_refused_connection_while_ready_withdraws_and_rearms(harness: Harness) -> None:
    """The app's port refuses: not ready at once, with the reason, and a new primer starts."""
    harness.hear(WARM)
    harness.primer.end(0)
    harness.turn_after(1.0)
    harness.reach = Reach.REFUSED
    harness.turn_after(1.0)
    state, ready, reason = harness.shown()
    assert (state, ready) == ("waiting", False)
    assert reason.startswith("re-arming: 127.0.0.1:8080 refused a connection")
    assert not (harness.directory / READY_FILE).exists()
    assert len(harness.primers) == 2
    assert harness.primer.supervised.rearms == 1
    assert harness.on_disk()["rearms"] == 1


def test_a_busy_app_is_overload_not_a_restart(harness: Harness) -> None:
    """While ready, connects that time out never withdraw readiness or start a primer."""
    harness.hear(WARM)
    harness.primer.end(0)
    harness.reach = Reach.BUSY
    for _ in range(40):
        harness.turn_after(1.0)
    assert harness.shown()[:2] == ("ready", True)
    assert len(harness.primers) == 1


def test_an_unreachable_app_rearms_after_rearm_after(harness: Harness) -> None:
    """No route to the app re-arms only once it has lasted rearm_after seconds."""
    harness.hear(WARM)
    harness.primer.end(0)
    harness.reach = Reach.UNREACHABLE
    harness.turn_after(1.0)
    harness.turn_after(4.0)
    assert harness.shown()[:2] == ("ready", True)
    harness.turn_after(1.5)
    state, ready, reason = harness.shown()
    assert (state, ready) == ("waiting", False)
    assert "has been unreachable for 5s" in reason


def test_a_primer_that_dies_without_an_outcome_is_replaced_after_a_back_off(
    harness: Harness,
) -> None:
    """Killed by SIGKILL: the reason suspects the OOM killer, and another starts after 1 s."""
    harness.primer.end(-9)
    assert harness.supervisor.turn(wait=10.0)  # the end of its pipe
    harness.turn_after(0.0)
    state, ready, reason = harness.shown()
    assert (state, ready) == ("waiting", False)
    assert "perhaps the out-of-memory killer" in reason
    assert len(harness.primers) == 1
    harness.turn_after(1.0)
    assert len(harness.primers) == 2


def test_a_silent_primer_is_stopped_as_hung(harness: Harness) -> None:
    """A primer that says nothing for SILENT_LIMIT is terminated and reported as hung."""
    harness.turn_after(SILENT_LIMIT + 1)
    assert harness.primers[0].terminated
    crashed = [e for e in harness.events() if e["event"] == "primer_crashed"]
    assert (
        "hung (it said nothing for 31s) and was stopped by the supervisor"
        in (crashed[0]["message"])
    )


def test_a_primer_that_refuses_the_config_stops_the_supervisor(harness: Harness) -> None:
    """Exit code 2 (a config the primer refused) ends the supervisor's loop, with 2."""
    harness.primer.end(2)
    assert not harness.supervisor.turn(wait=10.0)
    assert harness.supervisor.exit_code == 2


def test_crashing_primers_open_at_the_deadline(harness: Harness) -> None:
    """Primers that never reach an outcome while the app never answers: the supervisor opens
    anyway at the deadline of wait + gate + its grace, with outcome opened_on_timeout."""
    harness.reach = Reach.UNREACHABLE
    for _ in range(200):
        if harness.primer.returncode is None:
            harness.primer.end(1)
            harness.supervisor.turn(wait=10.0)
        harness.turn_after(1.0)
        if harness.shown()[1]:
            break
    state, ready, reason = harness.shown()
    assert (state, ready) == ("ready", True)
    assert reason == "opened anyway: no primer reached an outcome in time"
    assert harness.on_disk()["outcome"] == "opened_on_timeout"
    assert harness.now >= 100.0 + 30 + 60 + 10


def test_a_signal_stops_the_primer_and_withdraws_readiness(harness: Harness) -> None:
    """SIGTERM: the primer is terminated, the status says stopped, the marker is gone."""
    harness.hear(WARM)
    harness.supervisor.request_stop("SIGTERM")
    assert not harness.supervisor.turn()
    harness.supervisor.shutdown()
    assert harness.primers[0].terminated
    state, ready, reason = harness.shown()
    assert (state, ready) == ("stopped", False)
    assert reason == "stopped by SIGTERM; not vouching for the app any more"
    assert not (harness.directory / READY_FILE).exists()
    assert harness.on_disk()["state"] == "stopped"


def test_a_keep_warm_primer_updates_a_ready_status_without_changing_readiness(
    harness: Harness,
) -> None:
    """After the outcome, a keep-warm primer's statuses refresh what is shown; still ready."""
    harness.hear(WARM)
    harness.hear(status("ready", reason="keeping warm", outcome="warm", level=1))
    assert harness.shown() == ("ready", True, "keeping warm")
    assert harness.supervisor.status.level == 1


def test_the_primer_record_lands_in_the_status_directory(harness: Harness) -> None:
    """A primer's warm-up record is kept as report.json."""
    harness.primer.say(report={"outcome": "warm"})
    assert harness.supervisor.turn(wait=10.0)
    assert json.loads((harness.directory / "report.json").read_text()) == {"outcome": "warm"}
