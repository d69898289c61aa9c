"""One warm-up in-process, on the virtual clock: from the probes to the verdict to what is
published, with drivers that answer as the test says (no sockets)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from tests.virtual_time import run
from warmgate.config.model import Config
from warmgate.decide.outcomes import OK, UNEXPECTED_STATUS
from warmgate.decide.reach import Down, Reach
from warmgate.kernel.redaction import Secrets
from warmgate.runtime.warmup import WarmUp
from warmgate.serve.logs import Log
from warmgate.serve.metrics import Metrics
from warmgate.serve.status import Status
from warmgate.traffic.driver import Driver, Outcome
from warmgate.traffic.targets import CompiledTarget, compile_config


@dataclass
class ScriptedDriver:
    """Answers every request with ``outcome`` after ``latency`` seconds of the loop's clock;
    the probe is refused ``refusals`` times, then up."""

    name: str = "app"
    outcome: str = OK
    latency: float = 0.005
    refusals: int = 0
    probes: int = 0

    async def execute(self) -> Outcome:
        await asyncio.sleep(self.latency)
        return Outcome(self.outcome, status=200 if self.outcome == OK else 500)

    async def probe(self) -> Down | None:
        self.probes += 1
        if self.probes <= self.refusals:
            return Down(Reach.REFUSED, "127.0.0.1:8080: connection refused")
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class RecordingSink:
    """Keeps every status and record it is handed."""

    interval: float = 0.0
    statuses: list[Status] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def write(self, status: Status) -> None:
        self.statuses.append(status)

    def write_report(self, record: dict[str, Any]) -> None:
        self.records.append(record)


CONFIG: dict[str, Any] = {
    "targets": [{"name": "app", "http": {"url": "http://127.0.0.1:8080/"}}],
    "load": {"concurrency": 4, "ramp_step": "200ms", "jitter": "0s"},
    "gate": {"window": "2s", "hold": "1s", "timeout": "20s", "min_requests": 20},
    "wait": {"timeout": "10s", "initial_backoff": "100ms", "max_backoff": "100ms"},
}


def warm_up(driver: ScriptedDriver, **gate: Any) -> tuple[Status, RecordingSink]:
    """Run one warm-up of ``driver`` to its outcome; the final status and the sink."""
    config = Config.model_validate({**CONFIG, "gate": {**CONFIG["gate"], **gate}})
    compiled = compile_config(config).targets
    sink = RecordingSink()

    async def opener(
        _config: Config,
        _compiled: Sequence[CompiledTarget],
        _stack: AsyncExitStack,
        _warn: object,
        _secrets: Secrets,
    ) -> Sequence[Driver]:
        return [driver]

    async def scenario() -> Status:
        loop = asyncio.get_running_loop()
        warm_up = WarmUp(
            config,
            compiled,
            metrics=Metrics(CollectorRegistry(), ("app",)),
            log=Log(_Discard(), secrets=Secrets()),
            sink=sink,
            clock=loop.time,
            opener=opener,
            writer=InlineExecutor(),
        )
        try:
            return await warm_up.run(asyncio.Event())
        finally:
            warm_up.publisher.close()

    return run(scenario()), sink


class InlineExecutor(concurrent.futures.Executor):
    """Runs each write at once, on the loop's thread: the virtual clock never waits on a thread,
    and the writes still land in the order they were made."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller, as a thread would
            future.set_exception(exc)
        return future


class _Discard:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


def test_a_warm_app_opens_the_gate_after_waiting_then_warming() -> None:
    """Refused probes keep it waiting; then it warms and opens with outcome warm, and ready
    appears only in the last status, the one with the outcome."""
    final, sink = warm_up(ScriptedDriver(refusals=3))
    assert (final.state, final.ready, final.outcome) == ("ready", True, "warm")
    states = [status.state for status in sink.statuses]
    assert states[0] == "waiting"
    assert "warming" in states
    assert states.index("warming") > max(i for i, s in enumerate(states) if s == "waiting")
    assert [status.ready for status in sink.statuses].count(True) == 1
    assert sink.statuses[-1].ready
    assert sink.statuses[-1].outcome == "warm"
    waiting = [status.reason for status in sink.statuses if status.state == "waiting"]
    assert "waiting for the target to answer: 127.0.0.1:8080: connection refused" in waiting
    assert sink.records
    assert sink.records[-1]["outcome"] == "warm"


def test_an_app_that_never_copes_fails_closed_at_the_deadline() -> None:
    """Every answer a 500: never ready, and failed closed at the deadline with that reason."""
    final, sink = warm_up(ScriptedDriver(outcome=UNEXPECTED_STATUS), on_timeout="fail")
    assert (final.state, final.ready, final.outcome) == ("failed", False, "failed_closed")
    assert not any(status.ready for status in sink.statuses)
    assert "not warm after 20s, failed closed" in final.reason


def test_an_app_that_never_copes_opens_on_timeout_by_default() -> None:
    """Every answer a 500, on_timeout ready: ready at the deadline, saying it opened anyway."""
    final, _ = warm_up(ScriptedDriver(outcome=UNEXPECTED_STATUS))
    assert (final.state, final.ready, final.outcome) == ("ready", True, "opened_on_timeout")
    assert "opened anyway" in final.reason
