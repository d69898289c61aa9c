"""The HTTP driver: httpx's API over the aiohttp transport.

Plain httpx adds hundreds of milliseconds of client-side latency under concurrency
(encode/httpx#3215); a gate that measures latency must not invent it, so requests go through
``httpx_aiohttp.AiohttpTransport`` (see ``benchmarks/``). The driver takes an injected
``httpx.AsyncClient``, so tests can hand it a real local server or ``httpx.MockTransport``.

Client policy, set on both layers because each has its own (httpx's client *and* the aiohttp
session the transport drives):

- cookies: none kept. httpx's jar ignores ``Set-Cookie`` and the aiohttp session has a
  ``DummyCookieJar``; without the latter aiohttp would keep and send back cookies for every host
  that is not an IP literal (``localhost``, ``app``), and priming would warm a returning user's
  path while new visitors still take the cold one;
- timeouts: each request carries its target's timeout to the transport, which turns it into
  aiohttp's connect and read timeouts (httpx's 5 s default would otherwise cut every longer
  timeout to 5 s), and ``asyncio.timeout`` bounds the whole exchange, body included;
- bodies: read in the transport's 16 KiB chunks and dropped, never joined and never
  decompressed, so a 1 GB or endless answer costs a few MiB and ends at the timeout;
- TLS: the target's ``ssl.SSLContext`` (``tls.py``) goes to the aiohttp connector, and its
  ``server_name`` rides on each request as httpx's ``sni_hostname`` extension, which the
  transport hands to aiohttp as ``server_hostname``: the name sent in SNI and verified. A failed
  handshake becomes a reason that says which check failed (:func:`classify`), and one hidden
  behind a reset is read from the server's alert (``diagnosis.py``).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from warmgate.config.fields import http_endpoint
from warmgate.config.http_target import HttpTarget
from warmgate.config.model import TrafficConfig
from warmgate.decide.outcomes import CONNECTION_ERROR, ERROR, OK, TIMEOUT, UNEXPECTED_STATUS
from warmgate.decide.reach import Down, Reach, reach_of
from warmgate.kernel.errors import TemplateError
from warmgate.traffic.driver import Outcome
from warmgate.traffic.handshake import handshake_reason
from warmgate.traffic.probe import connect_phrase, tcp_probe
from warmgate.traffic.templating import Template, Templates, hidden_render
from warmgate.traffic.tls import Tls
from warmgate.traffic.web.diagnosis import Diagnosis

REQUEST_ERRORS = (httpx.HTTPError, aiohttp.ClientError, OSError, TimeoutError)
"""What a request may raise for the target's reasons: each becomes an outcome."""
URL_PROBE_TIMEOUT = 2.0
"""Seconds the ``wait.url`` probe's request may take, connecting included."""
DEFAULT_TIMEOUT = 5.0
"""Seconds a request made through :func:`make_client` may take when it names no timeout."""
KEEPALIVE = 30.0
"""Seconds an idle pooled connection stays open."""
MARKER = ("X-Warmgate", "1")
"""The header on every synthetic request, so the app can keep them out of business metrics."""


@dataclass(frozen=True, slots=True)
class HttpPlan:
    """The compiled templates of one HTTP target."""

    method: str
    url: Template
    headers: tuple[tuple[str, Template], ...]
    body: Template | None
    host: str
    port: int
    tls: bool

    @classmethod
    def compile(cls, target: HttpTarget, templates: Templates, where: str) -> HttpPlan:
        """Compile every template of ``target`` (rendering each once to catch mistakes).

        A ``urls_file`` is read and compiled here too; its first line gives the host and port.
        """
        url: Template
        if target.urls_file is not None:
            from warmgate.traffic.url_set import load_url_set

            url = load_url_set(target.urls_file, templates, f"{where}.urls_file")
            rendered = url.first
        else:
            assert target.url is not None  # noqa: S101 - the model holds one of the two
            url = templates.compile(target.url, f"{where}.url")
            rendered = url.render()
        headers = tuple(
            (name, templates.compile(value, f"{where}.headers.{name}"))
            for name, value in target.headers.items()
        )
        body = None if target.body is None else templates.compile(target.body, f"{where}.body")
        host, port, tls = rendered_endpoint(url, rendered, f"{where}.url")
        return cls(target.method, url, headers, body, host, port, tls)


def rendered_endpoint(url: Template, rendered: str, where: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of what the URL template ``url`` rendered, or a TemplateError for
    the field ``where``, which names the rendered URL unless the template uses a secret."""
    try:
        return http_endpoint(rendered)
    except ValueError as exc:
        if url.sensitive:
            failure = (
                "once rendered, it is not an http(s) URL with a host, a port from 1 to 65535 "
                "and no user or password"
            )
            raise TemplateError(hidden_render(where, url, failure)) from None
        raise TemplateError(f"{where}: once rendered, {exc}.") from None


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Ignore ``Set-Cookie``: each synthetic request stands alone."""


class StatelessClient(httpx.AsyncClient):
    """An httpx client that keeps no cookies between requests.

    Warm-up requests must not share a session (the app would treat them as one user, and
    sticky sessions would pin them to one backend), and parsing every response's cookies costs
    about a tenth of the client's CPU per request.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty."""
        return _NoCookies()

    @cookies.setter
    def cookies(self, _: Any) -> None:
        raise AttributeError("synthetic traffic keeps no cookies")


def make_client(
    concurrency: int,
    traffic: TrafficConfig,
    tls: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> httpx.AsyncClient:
    """An httpx client over the aiohttp transport, pooled for ``concurrency`` connections.

    Every request carries ``traffic.user_agent`` and :data:`MARKER`, then ``traffic.headers``,
    which may override either. No layer keeps cookies. ``timeout`` applies to requests that do
    not set their own (the drivers do). ``tls`` is the context of https connections (see
    ``tls.py``); without one the client is for http URLs and loads no certificates (each CA
    bundle costs memory), and an https URL fails its handshake rather than go unverified.
    """
    from httpx_aiohttp import AiohttpTransport

    # A context that trusts nothing: loads no bundle, and verifies (and so refuses) everything.
    context = tls or ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    def session() -> aiohttp.ClientSession:
        # The transport calls this on its first request, inside the event loop.
        connector = aiohttp.TCPConnector(
            limit=concurrency, keepalive_timeout=KEEPALIVE, ssl=context
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            # The transport passes each request's own timeouts; nothing else may cut them.
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
            trust_env=False,
        )

    transport = AiohttpTransport(verify=context, trust_env=False, client=session)
    headers = httpx.Headers({"User-Agent": traffic.user_agent, MARKER[0]: MARKER[1]})
    headers.update(traffic.headers)  # case-insensitive: x-warmgate replaces X-Warmgate
    return StatelessClient(
        transport=transport,
        headers=headers,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )


def classify(exc: BaseException) -> Outcome:
    """The outcome of a request that raised ``exc`` (an httpx error or its aiohttp cause).

    A failed TLS handshake is a connection error whose detail says which check failed.
    """
    cause = exc.__cause__ or exc
    # httpx-aiohttp maps every aiohttp connection error to a ConnectTimeout: the cause decides.
    timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException) and not isinstance(
        cause, aiohttp.ClientConnectionError
    )
    if timed_out or isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        return Outcome(TIMEOUT, detail="timed out")
    detail = _connection_detail(cause)
    if detail is not None:
        return Outcome(CONNECTION_ERROR, detail=detail)
    return Outcome(ERROR, detail=type(cause).__name__)


def _connection_detail(cause: BaseException) -> str | None:
    """What went wrong with the connection, if that is why the request failed."""
    tls_error = _tls_error(cause)
    if tls_error is not None:
        return handshake_reason(tls_error)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return connect_phrase(cause.os_error)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(cause, OSError) and cause.strerror:  # a ClientOSError too: "broken pipe"
        return connect_phrase(cause)
    if isinstance(cause, aiohttp.ClientConnectionError | httpx.ConnectError | OSError):
        return "connection failed"
    return None


def _tls_error(cause: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind an aiohttp error, if TLS is why it failed.

    A failed certificate check carries it as ``certificate_error``; other handshake failures as
    ``os_error``; an alert that arrives after the client's side of the handshake (TLS 1.3's
    "certificate required") as the ``__cause__`` of the read's error.
    """
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        return (
            cause.certificate_error if isinstance(cause.certificate_error, ssl.SSLError) else None
        )
    if isinstance(cause, aiohttp.ClientConnectorError) and isinstance(cause.os_error, ssl.SSLError):
        return cause.os_error
    if isinstance(cause, aiohttp.ClientOSError) and isinstance(cause.__cause__, ssl.SSLError):
        return cause.__cause__
    return None


async def exchange(client: httpx.AsyncClient, request: httpx.Request) -> int:
    """Send ``request``, read its answer's body in chunks and drop them; the status code."""
    response = await client.send(request, stream=True)
    try:
        # A response built in memory (httpx.MockTransport) arrives read already.
        if not response.is_stream_consumed:
            async for _ in response.aiter_raw():
                pass  # the app did the work of sending it; nothing here needs it
    finally:
        await response.aclose()
    return response.status_code


class HttpDriver:
    """Sends one target's requests through an injected client."""

    def __init__(
        self,
        name: str,
        target: HttpTarget,
        plan: HttpPlan,
        client: httpx.AsyncClient,
        tls: Tls | None = None,
    ) -> None:
        self.name = name
        self._target = target
        self._plan = plan
        self._client = client
        self._extensions = tls.extensions if tls is not None else {}
        self._diagnosis = (
            Diagnosis(plan.host, plan.port, tls, target.timeout) if tls is not None else None
        )
        self._timeout = target.timeout
        self._timeouts = httpx.Timeout(target.timeout)

    async def execute(self) -> Outcome:
        """Render the templates, send the request, read and drop the answer, classify it."""
        plan = self._plan
        try:
            request = self._client.build_request(
                plan.method,
                plan.url.render(),
                headers={name: value.render() for name, value in plan.headers},
                content=None if plan.body is None else plan.body.render().encode(),
                timeout=self._timeouts,
                extensions=self._extensions,
            )
            async with asyncio.timeout(self._timeout):
                status = await exchange(self._client, request)
        except REQUEST_ERRORS as exc:
            outcome = classify(exc)
            return await self._diagnosis.explain(outcome) if self._diagnosis else outcome
        if self._target.accepts(status):
            return Outcome(OK, status)
        return Outcome(UNEXPECTED_STATUS, status, f"answered {status}")

    async def probe(self) -> Down | None:
        """Whether the target's host and port accept TCP connections."""
        return await tcp_probe(self._plan.host, self._plan.port)

    async def aclose(self) -> None:
        """The client is shared and owned by whoever made it; nothing to release here."""


class UrlProbe:
    """The wait probe when ``wait.url`` is set: the app is up when the URL answers 2xx."""

    def __init__(self, url: str, client: httpx.AsyncClient, tls: Tls | None = None) -> None:
        self._url = url
        self._client = client
        self._extensions = tls.extensions if tls is not None else {}
        host, port, _ = http_endpoint(url)
        self._diagnosis = Diagnosis(host, port, tls, URL_PROBE_TIMEOUT) if tls is not None else None

    async def probe(self) -> Down | None:
        """``None`` when the URL answered 2xx, else how it failed and why.

        An answer other than 2xx is an app that is up but not ready yet: busy, not gone.
        """
        try:
            request = self._client.build_request(
                "GET", self._url, timeout=URL_PROBE_TIMEOUT, extensions=self._extensions
            )
            async with asyncio.timeout(URL_PROBE_TIMEOUT):
                status = await exchange(self._client, request)
        except REQUEST_ERRORS as exc:
            outcome = classify(exc)
            if self._diagnosis is not None:
                outcome = await self._diagnosis.explain(outcome)
            return Down(reach_of(exc), f"wait.url: {outcome.detail}")
        if 200 <= status < 300:
            return None
        return Down(Reach.BUSY, f"wait.url answered {status}")
