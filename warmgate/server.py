"""The readiness endpoint: ``/readyz``, ``/livez``, ``/status``, ``/metrics``.

aiohttp's server (already a dependency through the HTTP transport) runs on its own event loop
in its own thread, so a busy priming loop never delays the kubelet's probe. Handlers only read:
an immutable :class:`~warmgate.status.Status` published by the runner (a single reference swap,
safe across threads) or the status directory in ``serve`` mode, and the metrics registry.
Nothing mutates, nothing secret is served.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from warmgate.errors import ServeError

StatusSource = Callable[[], tuple[bool, str, dict[str, Any]]]
"""Returns ``(ready, reason, status_json)`` for the current moment."""


def build_app(source: StatusSource, registry: CollectorRegistry) -> web.Application:
    """The aiohttp application with the four read-only routes."""

    async def readyz(_: web.Request) -> web.Response:
        ready, reason, _status = source()
        return web.Response(status=200 if ready else 503, text=reason + "\n")

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def status(_: web.Request) -> web.Response:
        _ready, _reason, data = source()
        return web.Response(text=json.dumps(data, indent=2) + "\n", content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app


class BackgroundServer:
    """Serves an aiohttp application from a background thread with its own event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: OSError | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port. Raises :class:`ServeError` if it cannot."""
        self._thread = threading.Thread(target=self._serve, name="warmgate-server", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            reason = self._error.strerror or str(self._error)
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
        except OSError as exc:
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
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
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


def status_server(
    host: str, port: int, source: StatusSource, registry: CollectorRegistry
) -> BackgroundServer:
    """The readiness endpoint for ``source`` and ``registry``, not yet started."""
    return BackgroundServer(build_app(source, registry), host, port)
