"""How a failed probe reads, from the error's type and errno alone (decide/reach.py)."""

from __future__ import annotations

import errno
import socket

import pytest

from warmgate.decide.reach import Down, Reach, most_telling, reach_of


class WrapperError(Exception):
    """A library's error that keeps the socket's error as an attribute, as aiohttp does."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__("could not connect")
        self.os_error = os_error


def chained(cause: BaseException) -> Exception:
    """An error raised ``from`` ``cause``, as httpx and aiomysql raise theirs."""
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = cause
    return wrapped


@pytest.mark.parametrize(
    ("error", "reach"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Reach.REFUSED),
        (OSError(errno.ECONNREFUSED, "Connection refused"), Reach.REFUSED),
        (TimeoutError(), Reach.BUSY),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), Reach.BUSY),
        (OSError(errno.EHOSTUNREACH, "No route to host"), Reach.UNREACHABLE),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), Reach.UNREACHABLE),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Reach.UNREACHABLE),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), Reach.UNREACHABLE),
        (ValueError("no socket here"), Reach.UNREACHABLE),
    ],
)
def test_the_socket_error_decides(error: BaseException, reach: Reach) -> None:
    """Refused, busy and unreachable by type and errno, however the error is wrapped."""
    assert reach_of(error) is reach
    assert reach_of(chained(error)) is reach
    if isinstance(error, OSError):
        assert reach_of(WrapperError(error)) is reach


def test_the_message_never_decides() -> None:
    """An error that only says 'connection refused' in words is not a refusal."""
    assert reach_of(RuntimeError("connection refused")) is Reach.UNREACHABLE
    assert reach_of(RuntimeError("connection refused"), Reach.BUSY) is Reach.BUSY


def test_a_cycle_of_causes_ends() -> None:
    """Errors whose causes point at each other are read once each."""
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__, second.__cause__ = second, first
    assert reach_of(first) is Reach.UNREACHABLE


def test_a_refusal_anywhere_says_most() -> None:
    """Of several targets, a refusal wins over a busy or unreachable one; all up is None."""
    busy, refused = Down(Reach.BUSY, "a"), Down(Reach.REFUSED, "b")
    assert most_telling([busy, None, refused]) is refused
    assert most_telling([None, busy]) is busy
    assert most_telling([None, None]) is None
