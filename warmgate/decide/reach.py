"""How a target answered a probe: up, refused, busy or unreachable, classified once.

Theory of operation. A sidecar talks to its own pod, so what a connection attempt ends in says
what happened to the app, and the lifecycle (``lifecycle.py``) acts on that alone:

- :attr:`Reach.REFUSED`: nothing listens on the port; the app's process is gone (a restart);
- :attr:`Reach.BUSY`: the port is open but did not answer in time, or answered that it is not
  ready: an overloaded or starting app, never a restart (a full accept queue drops SYNs, so
  even a connect can time out);
- :attr:`Reach.UNREACHABLE`: no way to the target at all (no route, unknown host, a reset, a
  database that turned the connection away);
- :attr:`Reach.UP`: it answers.

:func:`reach_of` decides from an exception's *type and errno*, never from its message: the
drivers' libraries wrap the socket's error (httpx over aiohttp, PyMySQL, asyncio), so the chain
of causes is followed to the first ``OSError`` or ``TimeoutError``. A failure that carries no
such error (a database's own refusal, an HTTP status) is what the caller says it is.

Pure: exceptions in, a :class:`Reach` out; nothing here does I/O.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum


class Reach(StrEnum):
    """What a probe found."""

    UP = "up"
    REFUSED = "refused"
    BUSY = "busy"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Down:
    """A probe that did not find the target up: how, and a short phrase for people."""

    reach: Reach
    reason: str


_REFUSED = frozenset({errno.ECONNREFUSED})
_BUSY = frozenset({errno.ETIMEDOUT, errno.EAGAIN})
_CAUSES = ("os_error", "original_exception")
"""Attributes under which libraries keep the error they wrapped (aiohttp, PyMySQL)."""
_DEPTH = 8


def reach_of(error: BaseException, default: Reach = Reach.UNREACHABLE) -> Reach:
    """The :class:`Reach` a failed probe stands for, from the first socket-level error in the
    chain of ``error``'s causes; ``default`` when there is none."""
    for cause in _causes(error):
        if isinstance(cause, TimeoutError) or (isinstance(cause, OSError) and cause.errno in _BUSY):
            return Reach.BUSY  # the probe's own deadline, a connect timeout (a full queue)
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno in _REFUSED
        ):
            return Reach.REFUSED
        if isinstance(cause, OSError) and cause.errno is not None:
            return Reach.UNREACHABLE  # no route, no such host (getaddrinfo's errors), a reset
    return default


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it wraps, breadth first, each once, a few levels deep."""
    seen: set[int] = set()
    level = [error]
    for _ in range(_DEPTH):
        following: list[BaseException] = []
        for item in level:
            if id(item) in seen:
                continue
            seen.add(id(item))
            yield item
            wrapped = [getattr(item, name, None) for name in _CAUSES]
            wrapped += [item.__cause__, item.__context__]
            following += [cause for cause in wrapped if isinstance(cause, BaseException)]
        if not following:
            return
        level = following


def most_telling(downs: list[Down | None]) -> Down | None:
    """Of several targets' probe results, the one that says most: a refusal anywhere (a process
    is gone) over anything else, else the first target that is not up; ``None`` if all are up."""
    refused = next((down for down in downs if down and down.reach is Reach.REFUSED), None)
    return refused or next((down for down in downs if down is not None), None)
