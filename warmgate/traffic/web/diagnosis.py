"""Why a TLS exchange failed, when the failure itself does not say.

In TLS 1.3 the client's side of the handshake ends before the server has checked the client's
certificate; the server's refusal (the alert "certificate required" or "unknown CA") then races
the client's first request, and often loses to a reset or a broken pipe that says nothing. A
connection that sends nothing reads the alert every time (:func:`handshake_alert`); the HTTP
driver and the journey driver ask :class:`Diagnosis` for it when an https exchange
fails that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

from warmgate.decide.outcomes import CONNECTION_ERROR
from warmgate.traffic.driver import Outcome
from warmgate.traffic.handshake import handshake_reason
from warmgate.traffic.tls import Tls

DIAGNOSE_EVERY = 5.0
"""Seconds one diagnosis of an unclear TLS failure stands before another connection is spent."""
ALERT_WAIT = 1.0
"""Seconds a diagnostic connection waits for the server's alert after its handshake (a server
content with the handshake sends none, so a diagnosis that finds nothing takes this long)."""
_UNCLEAR = frozenset({"broken pipe", "connection reset by peer", "server disconnected"})
"""Details of a failed TLS exchange that do not say why: a diagnosis may."""


async def handshake_alert(host: str, port: int, tls: Tls, within: float) -> str | None:
    """Connect with ``tls`` (handshake ``within`` seconds), send nothing, and read: the
    handshake's reason if the server refuses (its alert), ``None`` if it does not or cannot be
    reached."""
    name = tls.settings.server_name
    try:
        async with asyncio.timeout(within):
            if name:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls.context, server_hostname=name
                )
            else:
                reader, writer = await asyncio.open_connection(host, port, ssl=tls.context)
    except ssl.SSLError as exc:
        return handshake_reason(exc)
    except (OSError, TimeoutError):
        return None
    try:
        async with asyncio.timeout(ALERT_WAIT):
            await reader.read(1)
    except ssl.SSLError as exc:
        return handshake_reason(exc)
    except (OSError, TimeoutError):
        pass  # no alert: whatever failed, it was not the handshake
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return None


class Diagnosis:
    """Why TLS exchanges with one server fail, when the failure itself does not say.

    In TLS 1.3 the client's side of the handshake ends before the server has checked the
    client's certificate; the server's refusal (the alert "certificate required" or "unknown
    CA") then races the client's request, and often loses to a reset or a broken pipe. A
    connection that sends nothing reads the alert every time (:func:`handshake_alert`). One
    diagnosis at a time, reused for :data:`DIAGNOSE_EVERY` seconds, so a failing server costs
    at most one extra connection that often. Its handshake may take ``timeout`` (the target's).
    """

    def __init__(
        self,
        host: str,
        port: int,
        tls: Tls,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = (host, port)
        self._tls = tls
        self._timeout = timeout
        self._clock = clock
        self._reason: str | None = None
        self._at = -DIAGNOSE_EVERY
        self._busy = False

    async def explain(self, outcome: Outcome) -> Outcome:
        """``outcome``, with the handshake's reason for a detail that gives none."""
        if outcome.outcome != CONNECTION_ERROR or outcome.detail not in _UNCLEAR:
            return outcome
        if not self._busy and self._clock() - self._at >= DIAGNOSE_EVERY:
            self._busy = True
            try:
                self._reason = await handshake_alert(*self._address, self._tls, self._timeout)
            finally:
                self._busy = False
                self._at = self._clock()
        return Outcome(CONNECTION_ERROR, detail=self._reason) if self._reason else outcome
