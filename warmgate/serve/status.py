"""The status: one immutable snapshot, written atomically to ``<status-dir>/status.json``.

Layout of the status directory (a public contract)::

    status.json   the latest snapshot (see :meth:`Status.to_json`), replaced atomically
    ready         exists exactly while the gate is open; contains the reason
    report.json   the record of the last warm-up, for ``warmgate report``
    heartbeat     ``run`` only: its modification time is renewed every second while the
                  supervisor's loop turns; a reader treats a ``run`` status whose heartbeat
                  is older than :data:`HEARTBEAT_STALE`, or dated in the future, as not
                  ready (warmgate is gone, or the clock was set back)
    .lock         held (``flock``) by the one warmgate that writes the directory

A reader never sees a torn file: each write goes to a temporary file in the same directory, is
fsynced, then renamed over the old one (:func:`warmgate.kernel.files.atomic_write`).
When the gate opens, status.json is written before the marker appears; when it closes, the
marker goes first. File I/O blocks, so callers run these functions off the event loop.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warmgate import __version__
from warmgate.decide.lifecycle import PUBLIC_STATES
from warmgate.kernel.errors import StatusDirError
from warmgate.kernel.files import atomic_write, read_json

STATUS_FILE = "status.json"
READY_FILE = "ready"
REPORT_FILE = "report.json"
HEARTBEAT_FILE = "heartbeat"
LOCK_FILE = ".lock"
HEARTBEAT_STALE = 5.0
"""Seconds without a heartbeat after which a ``run`` status no longer counts as ready."""
HEARTBEAT_AHEAD = 1.0
"""Seconds a heartbeat may be dated ahead of the reader's clock and still count (file times and
clocks that tick in steps); further ahead, it is stale."""

STATES = PUBLIC_STATES
WAITING, WARMING, READY, FAILED, STOPPED = PUBLIC_STATES


def iso_time(timestamp: float | None) -> str | None:
    """The status JSON's timestamp form: ISO 8601 in UTC, to the millisecond."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Status:
    """What warmgate knows right now. Timestamps are wall-clock seconds since the epoch."""

    state: str
    ready: bool
    reason: str
    started_at: float
    updated_at: float
    phase_started_at: float
    armed_at: float | None = None
    """When the current warm-up began: the start, or the last re-arm."""
    outcome: str | None = None
    ready_at: float | None = None
    level: int = 0
    target_level: int = 0
    window: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    hold_required_s: float = 0.0
    hold_passing_s: float = 0.0
    timeout_s: float = 0.0
    rearms: int = 0
    elapsed_s: float = 0.0
    checks: tuple[dict[str, Any], ...] = ()
    mode: str = "prime"
    """``run`` (a supervisor renews the heartbeat) or ``prime`` (the status outlives it)."""
    target_answered: bool = False
    """Whether the target answered at all during this warm-up."""

    def warmup_seconds(self) -> float | None:
        """Seconds from the start of this warm-up (or re-arm) to ready; ``None`` until then."""
        if self.ready_at is None:
            return None
        armed = self.armed_at if self.armed_at is not None else self.started_at
        return round(self.ready_at - armed, 3)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape of ``status.json`` and ``GET /status``."""
        return {
            "state": self.state,
            "ready": self.ready,
            "reason": self.reason,
            "outcome": self.outcome,
            "started_at": iso_time(self.started_at),
            "updated_at": iso_time(self.updated_at),
            "phase_started_at": iso_time(self.phase_started_at),
            "armed_at": iso_time(self.armed_at),
            "ready_at": iso_time(self.ready_at),
            "warmup_seconds": self.warmup_seconds(),
            "concurrency": {"level": self.level, "target": self.target_level},
            "window": self.window,
            "targets": self.targets,
            "hold": {
                "required_s": round(self.hold_required_s, 3),
                "passing_s": round(self.hold_passing_s, 3),
            },
            "timeout_s": self.timeout_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "checks": list(self.checks),
            "rearms": self.rearms,
            "mode": self.mode,
            "target_answered": self.target_answered,
            "version": __version__,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Status:
        """The status :meth:`to_json` made (a primer's, read by its supervisor): timestamps
        back to seconds, to the millisecond. ``ValueError`` if ``data`` is not one."""
        try:
            concurrency = data.get("concurrency") or {}
            hold = data.get("hold") or {}
            return cls(
                state=_one_of(data["state"], STATES),
                ready=_flag(data["ready"]),
                reason=str(data["reason"]),
                started_at=_epoch(data["started_at"]),
                updated_at=_epoch(data["updated_at"]),
                phase_started_at=_epoch(data["phase_started_at"]),
                armed_at=_epoch_or_none(data.get("armed_at")),
                outcome=None if data.get("outcome") is None else str(data["outcome"]),
                ready_at=_epoch_or_none(data.get("ready_at")),
                level=int(concurrency.get("level", 0)),
                target_level=int(concurrency.get("target", 0)),
                window=dict(data.get("window") or {}),
                targets={str(k): dict(v) for k, v in (data.get("targets") or {}).items()},
                hold_required_s=float(hold.get("required_s", 0.0)),
                hold_passing_s=float(hold.get("passing_s", 0.0)),
                timeout_s=float(data.get("timeout_s", 0.0)),
                rearms=int(data.get("rearms", 0)),
                elapsed_s=float(data.get("elapsed_s", 0.0)),
                checks=tuple(dict(check) for check in data.get("checks") or ()),
                mode=_one_of(data.get("mode", "prime"), ("prime", "run")),
                target_answered=_flag(data.get("target_answered", False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a status: {exc}") from None


def _one_of(value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def _epoch(stamp: object) -> float:
    """Seconds since the epoch for an :func:`iso_time` stamp."""
    if not isinstance(stamp, str):
        raise TypeError(f"{stamp!r} is not a timestamp")
    return datetime.fromisoformat(stamp).timestamp()


def _epoch_or_none(stamp: object) -> float | None:
    return None if stamp is None else _epoch(stamp)


class StatusDir:
    """Writes the status file and ready marker of one directory."""

    interval = 1.0
    """At most one status write per this many seconds, unless the state changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: int | None = None

    def lock(self) -> int:
        """Take the directory for this process (and the processes it ``exec``s into); returns
        the descriptor that holds the lock, to hand over across ``exec``.

        Raises a :class:`StatusDirError` when another warmgate holds it: two writers would
        contradict each other's marker.
        """
        import fcntl

        path = self.path / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StatusDirError(
                f"--status-dir: cannot create {path} ({exc.strerror}); mount a writable "
                "volume there."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StatusDirError(
                f"--status-dir: {self.path} is in use by another warmgate (pid {holder}); "
                "give each warmgate its own status directory."
            ) from None
        try:  # who holds it, for the message above; the lock itself needs no room
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._lock = fd
        # Only now that the directory is ours: a marker left by an earlier run must not claim
        # readiness before this run decides (and a refused second warmgate touches nothing).
        self._remove_marker()
        return fd

    def beat(self) -> None:
        """Renew the heartbeat (``run``): a reader can tell a live warmgate from a dead one."""
        path = self.path / HEARTBEAT_FILE
        try:
            os.utime(path)
        except FileNotFoundError:
            path.touch()

    def prepare(self) -> None:
        """Create the directory if needed and prove it is writable."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.path, prefix=".probe-", delete=True)  # noqa: SIM115 - closed right below
            probe.close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise StatusDirError(
                f"--status-dir: {self.path} is not writable ({reason}); mount a writable "
                "volume there (an emptyDir) or pick another directory."
            ) from None

    def write(self, status: Status) -> None:
        """Write ``status.json`` atomically, then create or remove the marker to match."""
        self.write_json(status.to_json())

    def write_json(self, data: dict[str, Any]) -> None:
        """Write a status in its JSON shape; the marker follows ``data["ready"]``.

        The marker goes before the status when readiness ends, after it when it begins, so a
        reader that trusts either one never sees ready for longer than the status says.
        """
        ready = bool(data.get("ready"))
        if not ready:
            self._remove_marker()
        text = json.dumps(data, indent=2, sort_keys=False).encode() + b"\n"
        atomic_write(self.path / STATUS_FILE, text)
        if ready:
            atomic_write(self.path / READY_FILE, str(data.get("reason", "")).encode() + b"\n")

    def write_report(self, record: dict[str, Any]) -> None:
        """Write the warm-up record (``report.json``) for ``warmgate report``."""
        atomic_write(self.path / REPORT_FILE, json.dumps(record).encode() + b"\n")

    def _remove_marker(self) -> None:
        (self.path / READY_FILE).unlink(missing_ok=True)


def write_failure(where: object, exc: OSError) -> tuple[str, str]:
    """``(error, sentence)`` for a status directory write that failed: logged once per error."""
    error = exc.strerror or type(exc).__name__
    return error, (
        f"cannot write the status directory {where}: {error}; /readyz and /metrics still tell "
        "the truth"
    )


MAX_STATUS_BYTES = 1024 * 1024
"""The largest ``status.json`` read (warmgate writes a few KiB)."""


def read_status(directory: Path) -> dict[str, Any] | None:
    """The status JSON in ``directory``, or ``None`` if there is none yet.

    Raises :class:`StatusDirError` when the file exists but cannot be read or parsed.
    """
    path = directory / STATUS_FILE
    try:
        data = read_json(path, MAX_STATUS_BYTES)
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise StatusDirError(f"{path} does not hold a status object; was it written by warmgate?")
    return data


def heartbeat_age(directory: Path, now: float | None = None) -> float | None:
    """Seconds since the ``run`` supervisor's last heartbeat (negative if it is dated in the
    future); ``None`` if there is none. A reader in another process can only compare wall
    clocks: the file's modification time with its own."""
    import time

    try:
        mtime = (directory / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        return None
    return (time.time() if now is None else now) - mtime


def heartbeat_problem(age: float | None) -> str | None:
    """Why a heartbeat of ``age`` seconds vouches for nothing, or ``None`` while it is fresh.

    A heartbeat from the future is stale too: the clock was set back after it was written (or
    the file was touched), so it says nothing about whether ``run`` is still alive. Up to
    :data:`HEARTBEAT_AHEAD` is allowed for clocks that tick in steps.
    """
    if age is None:
        return "warmgate run is gone (heartbeat: none)"
    if age < -HEARTBEAT_AHEAD:
        return (
            f"warmgate run's heartbeat is dated {-age:.0f}s in the future, so it cannot tell "
            "whether run is alive (was the clock set back?)"
        )
    if age > HEARTBEAT_STALE:
        return f"warmgate run is gone (heartbeat: the last {age:.0f}s ago)"
    return None


def readiness(
    status: dict[str, Any] | None, marker: bool, heartbeat: float | None
) -> tuple[bool, str]:
    """``(ready, reason)`` from what a status directory holds: the status JSON, whether the
    ``ready`` marker exists, and the age of the heartbeat (``run``).

    Ready only when the status says so *and* the marker exists (they agree while warmgate
    runs), and, for ``run``, while its heartbeat is fresh: a killed warmgate vouches for
    nothing. The reason names what is missing first, then what the status said.
    """
    if status is None:
        return False, "no status yet"
    said = str(status.get("reason", ""))
    if not status.get("ready"):
        return False, said
    if not marker:
        return False, (
            f"status.json says ready but the {READY_FILE} marker does not exist (it was "
            f"deleted, or readiness is being withdrawn right now); it said: {said}"
        )
    if status.get("mode") == "run":
        problem = heartbeat_problem(heartbeat)
        if problem is not None:
            return False, f"{problem}; it said: {said}"
    return True, said


def is_ready(directory: Path, status: dict[str, Any] | None) -> bool:
    """Whether ``directory`` vouches for the app (see :func:`readiness`)."""
    return _readiness(directory, status)[0]


def _readiness(directory: Path, status: dict[str, Any] | None) -> tuple[bool, str]:
    marker = (directory / READY_FILE).exists()
    needs_beat = bool(status and status.get("ready") and status.get("mode") == "run")
    return readiness(status, marker, heartbeat_age(directory) if needs_beat else None)


def snapshot(directory: Path) -> tuple[bool, str, dict[str, Any]]:
    """``(ready, reason, status JSON)`` of a status directory, for ``serve`` and ``check``.

    A status that cannot be read, or a ``run`` status whose heartbeat has stopped, is not ready,
    and the reason says why.
    """
    try:
        status = read_status(directory)
    except StatusDirError as exc:
        return False, str(exc), {"state": WAITING, "ready": False}
    if status is None:
        return False, f"no status in {directory} yet", {"state": WAITING, "ready": False}
    ready, reason = _readiness(directory, status)
    return ready, reason, status
