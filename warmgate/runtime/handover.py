"""What one warmgate process hands to the next, as one JSON value of one kind of type.

``run`` does its checks in the CLI process, then ``exec``\\ s into a small long-lived process
(the supervisor, or the open run when its optional config is missing), which later starts
primers. Each hand-over is a frozen dataclass that is a :class:`Handover`: written with
:meth:`Handover.to_json`, read back with :meth:`Handover.from_json`, which refuses anything but
exactly the fields of that type. :func:`exec_into` carries the descriptors over and becomes
the next process. This module imports only the standard library, since the processes that
read it must stay small.

- :class:`SupervisorHandover`: ``run`` → the supervisor (``supervisor.py``);
- :class:`OpenHandover`: ``run`` → the open run (``open_run.py``);
- :class:`Supervised`: the supervisor → each primer it starts (``--supervised``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn, Self


class Handover:
    """A frozen dataclass that crosses an ``exec`` or a process boundary as one JSON value."""

    def to_json(self) -> str:
        """The value's JSON text."""
        return json.dumps(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Read a value back; ``ValueError`` unless ``text`` holds exactly this type's fields."""
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError(f"not a {cls.__name__}: not JSON") from None
        names = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if not isinstance(data, dict) or not set(data) <= names:
            raise ValueError(f"not a {cls.__name__}: the fields are {sorted(names)}")
        try:
            return cls(**cls._decoded(data))
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"not a {cls.__name__}: {exc}") from None

    @classmethod
    def _decoded(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments from the JSON fields (JSON has no tuples)."""
        return data


@dataclass(frozen=True, slots=True)
class SupervisorHandover(Handover):
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
    """The first status to show (its JSON shape), until the primer speaks."""
    early_signal: str | None = None
    events: dict[str, str] | None = None
    """``kubernetes.events``: the pod's name, namespace and uid (those set); ``None``: off."""

    @classmethod
    def _decoded(cls, data: dict[str, Any]) -> dict[str, Any]:
        watch = [(str(host), int(port)) for host, port in data.get("watch", [])]
        return {**data, "watch": watch}


@dataclass(frozen=True, slots=True)
class OpenHandover(Handover):
    """What the open run needs, worked out by ``warmgate run`` before the ``exec``."""

    reason: str
    config_map: str
    listen_fd: int
    status_dir: str | None = None
    log_format: str = "auto"
    status: dict[str, Any] = field(default_factory=dict)
    early_signal: str | None = None


@dataclass(frozen=True, slots=True)
class Supervised(Handover):
    """What the supervisor tells a primer it starts (the hidden ``--supervised`` option)."""

    fd: int
    """The pipe to send statuses, metrics and the record up."""
    resume: bool = False
    """Confirm at the target level first: warmgate restarted while the app was ready."""
    keep_warm: bool = False
    rearms: int = 0
    parent: int = 0
    """The supervisor's PID: the primer ends with it."""

    @classmethod
    def _decoded(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "fd": int(data["fd"]),
            "resume": bool(data["resume"]),
            "keep_warm": bool(data["keep_warm"]),
            "rearms": int(data["rearms"]),
            "parent": int(data["parent"]),
        }


def exec_into(module: str, handover: Handover, keep: list[int]) -> NoReturn:
    """Become ``python -m module HANDOVER``: same PID, the descriptors in ``keep`` carried
    over (a status directory's lock, the listening socket)."""
    for fd in keep:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, handover.to_json()])  # noqa: S606 - our own module, no shell
