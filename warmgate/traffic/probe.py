"""Probing a target's port: does it accept a TCP connection, and if not, how did it fail.

The wait phase probes every target until all are up; how a probe failed is classified once,
by :func:`~warmgate.decide.reach.reach_of` (exception type and errno), and the phrase for
people is made here from the same error, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from warmgate.decide.reach import Down, reach_of

TCP_PROBE_TIMEOUT = 1.0
"""Seconds a probe's TCP connect may take; longer is a busy target (a full accept queue)."""


def connect_phrase(error: OSError) -> str:
    """A short phrase for a failed connect: ``connection refused``, ``host name not found``..."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "host name not found"
    if isinstance(error, TimeoutError):
        return "connect timed out"
    return (error.strerror or type(error).__name__).lower()


async def tcp_probe(host: str, port: int) -> Down | None:
    """``None`` if ``host:port`` accepts a TCP connection, else how it failed and why, in a
    phrase that starts with ``host:port``."""
    try:
        async with asyncio.timeout(TCP_PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:  # TimeoutError included
        return Down(reach_of(exc), f"{host}:{port}: {connect_phrase(exc)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
