"""The journey driver: ordered HTTP steps, one virtual user per worker of the load.

The load asks a journey driver for one :class:`VirtualUser` per worker (:meth:`for_user`), and
each virtual user sends one step per ``execute``. What to send next, and what a failure does to
the rest of the iteration, is decided by the pure :class:`~warmgate.decide.walk.Walk`; this module
only renders, sends, reads and extracts. JSON, header and cookie captures are extracted on the
event loop (a JSON body is at most :data:`MAX_CAPTURE_BYTES`: tens of milliseconds at worst);
regex captures on the driver's :class:`~warmgate.traffic.web.matcher.Matcher`, under its time
budget.

Client policy: the requests go through the load's shared client, which keeps no cookies. A
virtual user keeps its own ``httpx.Cookies`` jar for one iteration and throws it away when the
walk starts the next: the jar adds the ``Cookie`` header to each request it sends and takes
``Set-Cookie`` from each answer. No jar is ever shared, so no session passes between virtual
users or iterations, and plain targets stay as stateless as before. A body is read and kept
(decoded, at most :data:`MAX_CAPTURE_BYTES`) only by a step with a JSON or regex capture; the
rest of a longer one is not read, and its connection is closed rather than reused. Other
answers are read in chunks and dropped, as plain targets do.
"""

from __future__ import annotations

import asyncio
import functools
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from warmgate.config.http_target import HttpTarget
from warmgate.config.journey import Journey
from warmgate.config.loader import journey_secret_values
from warmgate.decide.outcomes import CAPTURE_FAILED, ERROR, OK, UNEXPECTED_STATUS
from warmgate.decide.reach import Down
from warmgate.decide.walk import Answer, CaptureError, Extract, Walk, extract, too_slow
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import Secrets
from warmgate.traffic.driver import Outcome, Warn, warn_on_stderr
from warmgate.traffic.probe import tcp_probe
from warmgate.traffic.templating import Template, Templates
from warmgate.traffic.tls import Tls
from warmgate.traffic.web.diagnosis import Diagnosis
from warmgate.traffic.web.driver import REQUEST_ERRORS, classify, rendered_endpoint
from warmgate.traffic.web.matcher import Matcher, OverBudgetError

MAX_CAPTURE_BYTES = 1024 * 1024
"""The most of an answer's body kept (decoded) for a capture; the rest is not read."""
_UNSENDABLE = (
    "the request cannot be sent ({}): a value in its URL or headers holds a character they "
    "cannot carry, such as a line break or, in a header, a non-ASCII letter"
)
_EXAMPLE = "x"
"""The value captured variables take in the first render at start-up."""


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One step with its templates compiled and its captures parsed."""

    name: str
    judged: bool
    target: HttpTarget
    url: Template
    headers: tuple[tuple[str, Template], ...]
    body: Template | None
    captures: tuple[tuple[str, Extract], ...]
    needs_body: bool
    host: str
    port: int
    tls: bool


@dataclass(frozen=True, slots=True)
class JourneyPlan:
    """A journey's compiled steps and its secrets' values."""

    steps: tuple[StepPlan, ...]
    secrets: Mapping[str, str]

    @property
    def host(self) -> str:
        """The first step's host: the one the probes check."""
        return self.steps[0].host

    @property
    def port(self) -> int:
        """The first step's port."""
        return self.steps[0].port

    @property
    def tls(self) -> bool:
        """Whether any step uses https."""
        return any(step.tls for step in self.steps)

    @classmethod
    def compile(
        cls,
        journey: Journey,
        templates: Templates,
        where: str,
        environ: Mapping[str, str] | None = None,
    ) -> JourneyPlan:
        """Compile every step, rendering each template once with the names it may use: the
        secrets and what earlier steps capture. A name captured only later is a mistake here."""
        secrets = journey_secret_values(journey, os.environ if environ is None else environ)
        try:
            steps = cls._compile_steps(journey, templates, where, secrets)
        except ConfigError as exc:
            # A first render may show a secret ("once rendered, 'http://h<secret>:0/' has...").
            raise type(exc)(Secrets(set(secrets.values())).redact(str(exc))) from None
        return cls(tuple(steps), secrets)

    @staticmethod
    def _compile_steps(
        journey: Journey, templates: Templates, where: str, secrets: Mapping[str, str]
    ) -> list[StepPlan]:
        known: dict[str, str] = dict(secrets)
        steps = []
        for index, step in enumerate(journey.steps):
            at = f"{where}.steps[{index}].http"
            http = step.http
            assert http.url is not None  # noqa: S101 - a step's model requires url
            url = templates.compile(http.url, f"{at}.url", known, private=known)
            host, port, tls = rendered_endpoint(url, url.render(known), f"{at}.url")
            headers = tuple(
                (name, templates.compile(value, f"{at}.headers.{name}", known, private=known))
                for name, value in http.headers.items()
            )
            body = (
                None
                if http.body is None
                else templates.compile(http.body, f"{at}.body", known, private=known)
            )
            captures = tuple(
                (name, Extract.of(*capture.rule(), secrets=templates.secrets))
                for name, capture in step.capture.items()
            )
            steps.append(
                StepPlan(
                    name=step.name,
                    judged=step.judged,
                    target=http,
                    url=url,
                    headers=headers,
                    body=body,
                    captures=captures,
                    needs_body=any(rule.needs_body for _, rule in captures),
                    host=host,
                    port=port,
                    tls=tls,
                )
            )
            known.update(dict.fromkeys(step.capture, _EXAMPLE))
        return steps


async def _exchange(
    client: httpx.AsyncClient, request: httpx.Request, keep_body: bool, jar: httpx.Cookies
) -> tuple[httpx.Response, str | None]:
    """Send ``request``; the answer (body closed), its cookies taken into ``jar``, and its
    decoded body up to :data:`MAX_CAPTURE_BYTES` when ``keep_body``."""
    response = await client.send(request, stream=True)
    body = None
    try:
        jar.extract_cookies(response)
        if keep_body:
            body = (await _kept_body(response)).decode(response.encoding or "utf-8", "replace")
        elif not response.is_stream_consumed:
            async for _ in response.aiter_raw():
                pass  # the app did the work of sending it; nothing here needs it
    finally:
        await response.aclose()
    return response, body


async def _kept_body(response: httpx.Response) -> bytes:
    """The first :data:`MAX_CAPTURE_BYTES` of the answer's body, decoded; the rest is not read.

    gzip and deflate are inflated here, never more than the room left, so a small compressed
    answer that decodes to gigabytes (or never ends) costs at most that much memory and work.
    """
    if response.is_stream_consumed:  # built in memory (httpx.MockTransport): read already
        return response.content[:MAX_CAPTURE_BYTES]
    codings = [c.strip().lower() for c in response.headers.get("Content-Encoding", "").split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    wbits = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
    inflate = (
        zlib.decompressobj(wbits[codings[0]]) if len(codings) == 1 and codings[0] in wbits else None
    )
    kept = bytearray()
    async for chunk in response.aiter_raw():
        room = MAX_CAPTURE_BYTES - len(kept)
        try:
            kept += chunk[:room] if inflate is None else inflate.decompress(chunk, room)
        except zlib.error:
            if kept or codings != ["deflate"]:
                raise httpx.DecodingError(f"the body is not valid {codings[0]}") from None
            # "deflate" without its zlib header, as some servers send it
            inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                kept += inflate.decompress(chunk, room)
            except zlib.error:
                raise httpx.DecodingError("the body is not valid deflate") from None
        if len(kept) >= MAX_CAPTURE_BYTES:
            break  # the rest is never read: closing the answer drops the connection
    return bytes(kept)


class JourneyDriver:
    """Runs one journey target's steps; each worker of the load is a virtual user of it."""

    def __init__(
        self,
        name: str,
        plan: JourneyPlan,
        client: httpx.AsyncClient,
        warn: Warn = warn_on_stderr,
        tls: Tls | None = None,
        *,
        matcher: Matcher | None = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.client = client
        self.matcher = matcher or Matcher()
        self.extensions = tls.extensions if tls is not None else {}
        self._warn = warn
        self._warned: set[tuple[int, str, int | str | None]] = set()
        self._anonymous: VirtualUser | None = None
        # One diagnosis per https server, shared by the steps (and users) that reach it.
        by_server: dict[tuple[str, int], Diagnosis] = {}
        self.diagnoses: tuple[Diagnosis | None, ...] = tuple(
            by_server.setdefault(
                (step.host, step.port), Diagnosis(step.host, step.port, tls, step.target.timeout)
            )
            if tls is not None and step.tls
            else None
            for step in plan.steps
        )

    def for_user(self) -> VirtualUser:
        """A new virtual user: its own progress, captures and cookie jar."""
        return VirtualUser(self)

    async def execute(self) -> Outcome:
        """The next step of one virtual user kept by the driver (the load makes its own)."""
        if self._anonymous is None:
            self._anonymous = self.for_user()
        return await self._anonymous.execute()

    async def probe(self) -> Down | None:
        """Whether the first step's host and port accept TCP connections."""
        return await tcp_probe(self.plan.host, self.plan.port)

    async def aclose(self) -> None:
        """Let the matcher's thread go; the client is shared and owned by whoever made it."""
        self.matcher.close()

    async def capture(self, step: StepPlan, answer: Answer) -> dict[str, str]:
        """The values ``step`` captures from ``answer``, or :class:`CaptureError`."""
        captured = {}
        for name, rule in step.captures:
            if rule.kind != "regex":
                captured[name] = extract(rule, answer)
                continue
            try:
                captured[name] = await self.matcher.run(functools.partial(extract, rule, answer))
            except OverBudgetError:
                raise too_slow(rule, answer, self.matcher.budget) from None
        return captured

    def failed(self, index: int, outcome: Outcome, reason: str) -> None:
        """Log an iteration's failure once per step, outcome and status."""
        key = (index, outcome.outcome, outcome.status)
        if key not in self._warned and len(self._warned) < 64:
            self._warned.add(key)
            self._warn(
                f"target '{self.name}': {reason}; the rest of that iteration is skipped and its "
                "judged steps count as failures"
            )


class VirtualUser:
    """One virtual user of a journey: a :class:`Walk` and the cookie jar of its iteration."""

    __slots__ = ("_driver", "_jar", "_jar_iteration", "_walk", "name")

    def __init__(self, driver: JourneyDriver) -> None:
        self._driver = driver
        self.name = driver.name
        steps = driver.plan.steps
        self._walk = Walk([step.name for step in steps], [step.judged for step in steps])
        self._jar = httpx.Cookies()
        self._jar_iteration = self._walk.iteration

    @property
    def judged(self) -> bool:
        """Whether the next request counts toward the gate."""
        return self._walk.judged()

    async def execute(self) -> Outcome:
        """Send the upcoming step (or count it failed, in a failed iteration)."""
        walk = self._walk
        index = walk.upcoming()
        if walk.failure is not None:
            failure = walk.skipped()
            return Outcome(failure.outcome, detail=failure.detail)
        if self._jar_iteration != walk.iteration:
            self._jar = httpx.Cookies()  # a new iteration: the last one's session goes
            self._jar_iteration = walk.iteration
        step = self._driver.plan.steps[index]
        variables = {**self._driver.plan.secrets, **walk.variables}
        client = self._driver.client
        url = step.url.render(variables)
        headers = {name: value.render(variables) for name, value in step.headers}
        content = None if step.body is None else step.body.render(variables).encode()
        try:
            request = client.build_request(
                step.target.method,
                url,
                headers=headers,
                content=content,
                timeout=httpx.Timeout(step.target.timeout),
                extensions=self._driver.extensions,
            )
            self._jar.set_cookie_header(request)
            async with asyncio.timeout(step.target.timeout):
                response, body = await _exchange(client, request, step.needs_body, self._jar)
        except REQUEST_ERRORS as exc:
            outcome = classify(exc)
            diagnosis = self._driver.diagnoses[index]
            if diagnosis is not None:
                outcome = await diagnosis.explain(outcome)
            return self._fail(index, outcome)
        except (httpx.InvalidURL, ValueError) as exc:
            # A value rendered into the URL or a header (a captured one, most often) that a
            # request cannot carry: a non-ASCII header, a line break. Its text is not shown.
            return self._fail(index, Outcome(ERROR, detail=_UNSENDABLE.format(type(exc).__name__)))
        status = response.status_code
        if not step.target.accepts(status):
            return self._fail(index, Outcome(UNEXPECTED_STATUS, status, f"answered {status}"))
        captured = {}
        if step.captures:
            cookies = {cookie.name: cookie.value or "" for cookie in self._jar.jar}
            answer = Answer(status, response.headers.multi_items(), cookies, body)
            try:
                captured = await self._driver.capture(step, answer)
            except CaptureError as exc:
                return self._fail(index, Outcome(CAPTURE_FAILED, status, str(exc)))
        walk.succeeded(captured)
        return Outcome(OK, status)

    def _fail(self, index: int, outcome: Outcome) -> Outcome:
        """Fail the iteration at step ``index``; this step's own outcome."""
        failure = self._walk.failed(outcome.outcome, outcome.detail)
        self._driver.failed(index, outcome, failure.detail)
        if outcome.outcome == UNEXPECTED_STATUS:
            return outcome  # the status is counted, as for a plain target
        return Outcome(outcome.outcome, detail=failure.detail)
