"""An aiohttp application served from a background thread: the simulated app's server.

The simulated app (``simapp.py``, for ``warmgate demo`` and the tests) is an aiohttp
application; this runs it on its own event loop in its own thread, so a test or the demo can
start and stop it around a warm-up.
"""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web

from warmgate.kernel.errors import ServeError


class BackgroundServer:
    """Serves an aiohttp application from a background thread with its own event loop."""

    def __init__(
        self, app: web.Application, host: str, port: int, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._app = app
        self._tls = tls
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: Exception | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises :class:`ServeError` if it cannot."""
        self._thread = threading.Thread(target=self._serve, name="warmgate-server", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            error = self._error
            reason = (error.strerror if isinstance(error, OSError) else None) or str(error)
            raise ServeError(
                f"cannot serve on {self.host}:{self.port} ({reason}); pick another --port "
                "or --host."
            )
        return self.port

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._bind())
        except Exception as exc:  # noqa: BLE001 - any failure to bind must reach start(), or it waits forever
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        loop.run_forever()
        if self._runner is not None:
            loop.run_until_complete(self._runner.cleanup())
        loop.close()

    async def _bind(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, ssl_context=self._tls)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and close the port; waits up to ``timeout`` seconds for the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
