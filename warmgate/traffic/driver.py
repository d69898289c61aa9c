"""Drivers turn one planned request into one outcome, behind a small Protocol.

The load generator does not know what a driver talks to: it asks a driver to ``execute`` one
request and gets an :class:`Outcome` back (its label one of :mod:`warmgate.decide.outcomes`),
never an exception for an ordinary failure. ``probe``
answers whether the target accepts connections at all (the wait phase), classified by
:mod:`warmgate.decide.reach`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from warmgate.decide.reach import Down


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended. ``detail`` is short and never holds a secret or a URL.

    ``status`` is an HTTP status, or the name of a gRPC status code (``UNAVAILABLE``)."""

    outcome: str
    status: int | str | None = None
    detail: str = ""


Warn = Callable[[str], None]
"""Where a driver sends a warning: one sentence, never a secret."""


def warn_on_stderr(message: str) -> None:
    """The default :data:`Warn`: one line on stderr, for callers that pass no log."""
    print(f"warmgate: warning: {message}", file=sys.stderr, flush=True)


class Driver(Protocol):
    """Sends synthetic requests to one target."""

    name: str

    async def execute(self) -> Outcome:
        """Render and send one request; report how it ended."""
        ...

    async def probe(self) -> Down | None:
        """``None`` when the target accepts connections, else how it failed and why."""
        ...

    async def aclose(self) -> None:
        """Release connections and pools."""
        ...


class VirtualUser(Driver, Protocol):
    """One virtual user of a driver whose requests follow each other (a journey's steps)."""

    @property
    def judged(self) -> bool:
        """Whether the next request counts toward the gate (a login step may not)."""
        ...


@runtime_checkable
class PerUser(Protocol):
    """A driver whose requests belong to virtual users: the load makes one per worker."""

    def for_user(self) -> VirtualUser:
        """A new virtual user with its own state."""
        ...
