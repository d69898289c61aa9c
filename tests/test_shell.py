"""The ordering rules of publishing: what the endpoint and the status directory say, and when."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from warmgate.config.model import Config
from warmgate.kernel.redaction import Secrets
from warmgate.runtime.publisher import Publisher
from warmgate.runtime.shell import Surfaces, WriteFailures
from warmgate.serve.logs import Log
from warmgate.serve.metrics import Metrics
from warmgate.serve.status import Status, StatusDir

NOT_READY = Status(
    state="warming", ready=False, reason="warming", started_at=1.0, updated_at=1.0,
    phase_started_at=1.0, mode="run",
)  # fmt: skip
READY = replace(NOT_READY, state="ready", ready=True, reason="warm", outcome="warm")


class WatchedDir(StatusDir):
    """A status directory that notes, at each write, what the endpoint says at that moment."""

    def __init__(self, path: Path, surfaces: list[Surfaces]) -> None:
        super().__init__(path)
        self.surfaces = surfaces
        self.seen: list[tuple[bool, bool]] = []
        """(ready written, ready on the endpoint while writing)."""

    def write_json(self, data: dict[str, Any]) -> None:
        self.seen.append((bool(data["ready"]), self.surfaces[0].snapshot()[0]))
        super().write_json(data)


def watched(tmp_path: Path) -> tuple[Surfaces, WatchedDir]:
    log = Log(io.StringIO(), secrets=Secrets())
    holder: list[Surfaces] = []
    surfaces = Surfaces(NOT_READY, tmp_path, log)
    holder.append(surfaces)
    directory = WatchedDir(tmp_path, holder)
    surfaces.directory = directory
    return surfaces, directory


def test_ready_reaches_the_directory_before_the_endpoint(tmp_path: Path) -> None:
    """While ready is written, the endpoint still says not ready."""
    surfaces, directory = watched(tmp_path)
    assert surfaces.show(READY, 10.0)
    assert directory.seen == [(True, False)]
    assert surfaces.snapshot()[0] is True


def test_not_ready_reaches_the_endpoint_before_the_directory(tmp_path: Path) -> None:
    """While not ready is written, the endpoint says not ready already."""
    surfaces, directory = watched(tmp_path)
    surfaces.show(READY, 10.0)
    assert surfaces.show(NOT_READY, 11.0)
    assert directory.seen[-1] == (False, False)


def test_unchanged_statuses_are_written_at_most_once_a_second(tmp_path: Path) -> None:
    """The same state again is written after FILE_INTERVAL, or at once when forced."""
    surfaces, directory = watched(tmp_path)
    surfaces.show(NOT_READY, 10.0)
    surfaces.show(NOT_READY, 10.5)
    assert len(directory.seen) == 1
    surfaces.show(NOT_READY, 10.6, force=True)
    surfaces.show(NOT_READY, 11.7)
    assert len(directory.seen) == 3


def test_a_write_failure_is_logged_once_per_kind_and_forgotten_on_success(
    tmp_path: Path,
) -> None:
    """Two failures of one kind log one line; after a success the same failure logs again."""
    stream = io.StringIO()
    failures = WriteFailures(Log(stream, secrets=Secrets()), tmp_path)

    def fail() -> None:
        raise OSError(28, "No space left on device")

    assert not failures.run(fail)
    assert not failures.run(fail)
    assert failures.run(lambda: None)
    assert not failures.run(fail)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["status_write_failed"] * 2
    assert "No space left on device" in lines[0]["message"]


class GatedSink:
    """A sink whose first write waits until the test opens the gate."""

    interval = 0.0

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.written: list[str] = []

    def write(self, status: Status) -> None:
        if not self.written:
            self.gate.wait(10.0)
        self.written.append(status.reason)

    def write_report(self, record: dict[str, Any]) -> None:
        self.written.append("record")


def test_a_write_abandoned_by_a_cancelled_publish_still_lands_before_later_ones() -> None:
    """A publish cancelled while its write waits: that write lands, then the next one."""
    sink = GatedSink()
    config = Config.model_validate({"targets": [{"http": {"url": "http://127.0.0.1:8080/"}}]})
    publisher = Publisher(
        config, Metrics(CollectorRegistry()), Log(io.StringIO(), secrets=Secrets()), sink
    )

    async def scenario() -> None:
        first = asyncio.create_task(publisher.publish("warming", False, "first"))
        await asyncio.sleep(0)
        first.cancel()
        second = asyncio.create_task(publisher.publish("ready", True, "second"))
        await asyncio.sleep(0)
        sink.gate.set()
        await second

    asyncio.run(scenario())
    publisher.close()
    assert sink.written == ["first", "second"]
