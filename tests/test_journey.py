"""Journeys: their config rules, the plan `validate` prints, and virtual users against a real app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import run_cli
from tests.journeys import PASSWORD, login_journey
from warmgate.config.advice import config_warnings
from warmgate.config.loader import load_config
from warmgate.config.model import TrafficConfig
from warmgate.decide.outcomes import CAPTURE_FAILED, ERROR, OK, UNEXPECTED_STATUS
from warmgate.decide.window import Sample
from warmgate.demo.simapp import Behavior, SimApp
from warmgate.kernel.errors import ConfigError, TemplateError
from warmgate.traffic.driver import Outcome
from warmgate.traffic.loadgen import Load
from warmgate.traffic.targets import compile_targets
from warmgate.traffic.web.driver import make_client
from warmgate.traffic.web.journey import JourneyDriver
from warmgate.traffic.web.matcher import Matcher, OverBudgetError

ENV = {"APP_PASSWORD": PASSWORD}


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets compile with the process environment, as in a container."""
    monkeypatch.setenv("APP_PASSWORD", PASSWORD)


def config_of(target: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    config, _ = load_config(
        None, {"targets": [target]}, environ=ENV if environ is None else environ
    )
    return config


def step(target: dict[str, Any], index: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = target["journey"]["steps"]
    return steps[index]


def test_a_step_that_can_write_needs_allow_methods() -> None:
    """POST is refused unless the journey lists it, with the step named and the fix."""
    target = login_journey(8080)
    target["journey"]["allow_methods"] = []
    with pytest.raises(ConfigError, match=r"step 'login' uses POST.*allow_methods: \[POST\]"):
        config_of(target)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: step(t, 0).update(capture={"t": {"json": "$.a", "header": "X"}}), "exactly one"),
        (lambda t: step(t, 0).update(capture={"t": {"json": "$.items[*]"}}), "from character 8 on"),
        (lambda t: step(t, 0).update(capture={"t": {"regex": "(a)(b)"}}), "has 2 groups"),
        (lambda t: step(t, 0).update(capture={"range": {"json": "$.a"}}), "cannot be a template"),
        (lambda t: step(t, 1).update(judged=False) or step(t, 2).update(judged=False), "judge"),
        (lambda t: step(t, 1)["http"].update(confirm_read_only=True), "allow_methods instead"),
        (lambda t: step(t, 1).update(name="login"), "two steps are named 'login'"),
        (lambda t: t["journey"]["secrets"].update(token={"env": "X"}), "also a secret's name"),
        (lambda t: t.update(http={"url": "http://a/"}), "has both http: and journey:"),
    ],
)
def test_journey_config_mistakes(change: Callable[[dict[str, Any]], Any], message: str) -> None:
    """Each mistake in a journey is one sentence naming what to change."""
    target = login_journey(8080)
    change(target)
    with pytest.raises(ConfigError, match=message):
        config_of(target)


def test_a_variable_captured_later_is_an_error_at_compile() -> None:
    """A step naming a value no earlier step captures fails validate, listing the known names."""
    target = login_journey(8080)
    step(target, 0)["http"]["headers"]["X-Early"] = "{{ token }}"
    with pytest.raises(TemplateError, match=r"steps\[0\]\.http\.headers\.X-Early: 'token' is"):
        compile_targets(config_of(target))


def test_secrets_come_from_env_or_a_file(tmp_path: Path) -> None:
    """A missing env secret is a config error; a file secret loses its trailing newline."""
    with pytest.raises(ConfigError, match=r"reads \$APP_PASSWORD, which is not set"):
        config_of(login_journey(8080), environ={})
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    target = login_journey(8080)
    target["journey"]["secrets"] = {"password": {"file": str(secret)}}
    config, secrets = load_config(None, {"targets": [target]}, environ={})
    (compiled,) = compile_targets(config)
    assert compiled.journey is not None
    assert compiled.journey.secrets == {"password": PASSWORD}
    assert secrets.redact(f"body {PASSWORD}") == "body ***"


def test_validate_prints_the_journey_plan_and_what_can_change_state(tmp_path: Path) -> None:
    """validate lists the steps in order, what they capture, which can write; no secret."""
    path = tmp_path / "journey.yaml"
    path.write_text(json.dumps({"targets": [login_journey(8080)]}))
    result = run_cli("validate", "--config", str(path), env=ENV)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1. login: POST http://127.0.0.1:8080/login" in out
    assert "captures token from $.token; not judged" in out
    assert "3. profile: GET http://127.0.0.1:8080/account/profile" in out
    assert "CAN CHANGE STATE: 'login' (POST)" in out
    assert "password from $APP_PASSWORD" in out
    assert PASSWORD not in out + result.stderr


async def run_users(port: int, users: int, steps: int, capture: str = "$.token") -> list[Outcome]:
    """``users`` virtual users, each sending ``steps`` requests in turn."""
    config = config_of(login_journey(port, capture))
    (compiled,) = compile_targets(config)
    assert compiled.journey is not None
    client = make_client(4, TrafficConfig())
    warnings: list[str] = []
    try:
        driver = JourneyDriver("account", compiled.journey, client, warnings.append)
        virtual = [driver.for_user() for _ in range(users)]
        outcomes = []
        for _ in range(steps):
            outcomes += await asyncio.gather(*(user.execute() for user in virtual))
    finally:
        await client.aclose()
    if capture != "$.token":
        assert len(warnings) == 1
        assert warnings[0].startswith(f"target 'account': step 'login': no `{capture}`")
    return outcomes


def test_each_virtual_user_and_iteration_has_its_own_session(
    sim_app: Callable[..., SimApp],
) -> None:
    """Two users, two iterations each: four logins, four sessions, no cookie carried over."""
    app = sim_app(Behavior(password=PASSWORD))
    outcomes = asyncio.run(run_users(app.port, users=2, steps=6))
    assert {outcome.outcome for outcome in outcomes} == {OK}
    stats = app.stats
    assert stats.logins == 4
    assert len(stats.session_pages) == 4
    assert set(stats.session_pages.values()) == {2}
    assert (stats.login_with_cookie, stats.mismatched, stats.unauthorized) == (0, 0, 0)


def test_a_failed_capture_fails_the_rest_of_the_iteration(sim_app: Callable[..., SimApp]) -> None:
    """A capture that finds nothing skips the iteration's pages, with the reason on each."""
    app = sim_app(Behavior(password=PASSWORD))
    outcomes = asyncio.run(run_users(app.port, users=1, steps=6, capture="$.jwt"))
    reason = "step 'login': no `$.jwt` in the response (status 200)"
    assert [(o.outcome, o.detail) for o in outcomes] == [("capture_failed", reason)] * 6
    assert app.stats.logins == 2
    assert app.stats.page_served == {}


def test_a_wrong_password_fails_the_pages_with_the_status(sim_app: Callable[..., SimApp]) -> None:
    """A login answering 401 fails the judged pages of that iteration with the reason."""
    app = sim_app(Behavior(password="something-else"))  # noqa: S106 - not the one sent
    outcomes = asyncio.run(run_users(app.port, users=1, steps=3))
    assert outcomes[0] == Outcome(UNEXPECTED_STATUS, 401, "answered 401")
    skipped = Outcome(UNEXPECTED_STATUS, None, "step 'login': answered 401")
    assert outcomes[1:] == [skipped, skipped]


def test_the_load_runs_one_journey_per_worker_and_records_judged_steps_only(
    sim_app: Callable[..., SimApp],
) -> None:
    """Under the load, unjudged logins are never samples, and workers never share sessions."""
    app = sim_app(Behavior(password=PASSWORD))
    samples: list[Sample] = []

    async def main() -> None:
        (compiled,) = compile_targets(config_of(login_journey(app.port)))
        assert compiled.journey is not None
        client = make_client(4, TrafficConfig())
        driver = JourneyDriver("account", compiled.journey, client)
        enough = asyncio.Event()

        def record(sample: Sample) -> None:
            samples.append(sample)
            if len(samples) >= 200:
                enough.set()

        load = Load([driver], [1.0], 4, record)
        load.start()
        load.configure(4)
        async with asyncio.timeout(20):
            await enough.wait()
        await load.stop(grace=5)
        await client.aclose()

    asyncio.run(main())
    stats = app.stats
    served = sum(stats.page_served.values())
    assert len(samples) >= 200
    assert all(sample.ok and sample.target == "account" for sample in samples)
    assert len(samples) <= served <= len(samples) + 4
    assert stats.logins >= served // 2
    assert max(stats.session_pages.values()) <= 2
    assert (stats.login_with_cookie, stats.mismatched, stats.unauthorized) == (0, 0, 0)


def test_unknown_keys_in_a_journey_get_a_suggestion() -> None:
    """A typo inside a capture or a secret (sections kept by name) gets a did-you-mean."""
    target = login_journey(8080)
    step(target, 0)["capture"] = {"token": {"jsn": "$.token"}}
    target["journey"]["secrets"]["password"] = {"evn": "APP_PASSWORD"}
    with pytest.raises(ConfigError) as error:
        config_of(target)
    assert "capture.token: unknown key 'jsn'; did you mean 'json'?" in str(error.value)
    assert "secrets.password: unknown key 'evn'; did you mean 'env'?" in str(error.value)


def test_a_template_using_a_secret_shows_itself_not_its_render(tmp_path: Path) -> None:
    """A failed first render of a template that uses a secret (a journey's, or a ${VAR} one)
    names the field and shows the template, never what it rendered, transformed or not."""
    target = login_journey(8080)
    step(target, 1)["http"]["url"] = "http://h{{ password | upper }}:99999/x"
    with pytest.raises(TemplateError) as error:
        compile_targets(config_of(target))
    message = str(error.value)
    assert message.startswith("targets[0].journey.steps[1].http.url: once rendered, it is not")
    assert "uses a secret: 'http://h{{ password | upper }}:99999/x'." in message
    assert PASSWORD.upper() not in message
    path = tmp_path / "plain.yaml"
    path.write_text(
        "targets: [{http: {url: \"http://h{{ '${APP_PASSWORD}' | reverse }}:99999/x\"}}]"
    )
    result = run_cli("validate", "--config", str(path), env=ENV)
    assert result.returncode == 2
    assert "uses a secret: 'http://h{{ '***' | reverse }}:99999/x'." in result.stderr
    assert PASSWORD[::-1] not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_run_watches_every_host_a_journey_talks_to() -> None:
    """The supervisor's re-arm watch gets each step's host and port once; probes use the first."""
    target = login_journey(8080)
    step(target, 2)["http"]["url"] = "http://127.0.0.2:8081/account/profile"
    (compiled,) = compile_targets(config_of(target))
    assert compiled.endpoints() == [("127.0.0.1", 8080), ("127.0.0.2", 8081)]
    assert compiled.journey is not None
    assert (compiled.journey.host, compiled.journey.port) == ("127.0.0.1", 8080)


def test_a_rate_too_low_for_the_judged_steps_is_warned_about() -> None:
    """load.rate counts unjudged logins too: when judged answers cannot fill the window, say so."""
    overrides: dict[str, Any] = {
        "targets": [login_journey(8080)],
        "load": {"rate": 3},
        "gate": {"window": "10s", "min_requests": 25},
    }
    config, _ = load_config(None, overrides, environ=ENV)
    (warning,) = config_warnings(config)
    assert warning.startswith("only 67% of requests are judged")
    assert "at most 20 judged answers" in warning
    assert "raise load.rate to at least 3.75" in warning
    overrides["load"]["rate"] = 4
    config, _ = load_config(None, overrides, environ=ENV)
    assert config_warnings(config) == []


@pytest.mark.parametrize("name", ["J\u00fcrgen", "a\r\nX-Injected: 1"])
def test_a_captured_value_a_header_cannot_carry_fails_the_iteration(name: str) -> None:
    """A value no request can carry fails its step with a reason naming it, and never shows."""
    logins: list[str] = []

    async def login(_: web.Request) -> web.Response:
        logins.append("")
        return web.json_response({"name": name})

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def scenario() -> list[Outcome]:
        application = web.Application()
        application.router.add_post("/login", login)
        application.router.add_get("/page", page)
        runner = web.AppRunner(application)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        steps = [
            {"name": "login", "judged": False, "http": {"method": "POST", "url": f"{base}/login"},
             "capture": {"who": {"json": "$.name"}}},
            {"name": "page", "http": {"url": f"{base}/page", "headers": {"X-Who": "{{ who }}"}}},
        ]  # fmt: skip
        target = {"name": "walk", "journey": {"allow_methods": ["POST"], "steps": steps}}
        (compiled,) = compile_targets(config_of(target))
        assert compiled.journey is not None
        try:
            async with make_client(1, TrafficConfig()) as client:
                user = JourneyDriver("walk", compiled.journey, client, lambda _: None).for_user()
                return [await user.execute() for _ in range(4)]
        finally:
            await runner.cleanup()

    outcomes = asyncio.run(scenario())
    assert [outcome.outcome for outcome in outcomes] == [OK, ERROR, OK, ERROR]
    assert outcomes[1].detail is not None
    assert outcomes[1].detail.startswith("step 'page': the request cannot be sent")
    assert name not in outcomes[1].detail
    assert len(logins) == 2  # the failed iteration ended; the next one logged in again


async def capture_from(
    handler: Callable[[web.Request], Any],
    regex: str = "token=([a-z0-9-]+);",
    matcher: Matcher | None = None,
) -> Outcome:
    """One step with a regex capture (of ``token=...;``) against ``handler``: its outcome."""
    application = web.Application()
    application.router.add_get("/big", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/big"
    steps = [{"name": "big", "http": {"url": url, "timeout": "20s"},
              "capture": {"t": {"regex": regex}}}]  # fmt: skip
    (compiled,) = compile_targets(config_of({"name": "walk", "journey": {"steps": steps}}))
    assert compiled.journey is not None
    try:
        async with make_client(1, TrafficConfig()) as client:
            driver = JourneyDriver(
                "walk", compiled.journey, client, lambda _: None, matcher=matcher
            )
            try:
                return await driver.for_user().execute()
            finally:
                await driver.aclose()
    finally:
        await runner.cleanup()


def test_a_capture_reads_an_endless_compressed_answer_only_as_far_as_it_keeps() -> None:
    """A gzip answer that never ends: the capture decodes its first MiB at most, then stops."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        await response.prepare(request)
        gzip = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        await response.write(gzip.compress(b"token=tok-4711;") + gzip.flush(zlib.Z_SYNC_FLUSH))
        decoded = 0
        with contextlib.suppress(ConnectionError):
            while decoded < 2**40:  # until the client goes
                await response.write(gzip.compress(b"a" * 2**16) + gzip.flush(zlib.Z_SYNC_FLUSH))
                decoded += 2**16
                await asyncio.sleep(0)  # the client shares this event loop
        return response

    assert asyncio.run(capture_from(endless)) == Outcome(OK, 200)


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", zlib.MAX_WBITS | 16), ("deflate", zlib.MAX_WBITS), ("deflate", -zlib.MAX_WBITS),
     ("identity", None), ("br", None)],
    ids=["gzip", "deflate", "raw-deflate", "identity", "unknown"],
)  # fmt: skip
def test_a_capture_reads_each_content_encoding(encoding: str, wbits: int | None) -> None:
    """gzip, deflate with or without its zlib header, and bodies sent as they are."""
    body = b"<p>token=tok-4711;</p>" * 3
    if wbits is not None:
        packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
        body = packer.compress(body) + packer.flush()

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding})

    assert asyncio.run(capture_from(answer)) == Outcome(OK, 200)


def test_a_body_that_does_not_inflate_is_an_error() -> None:
    """An answer that says gzip and is not fails its step as an error, not a crash."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=b"token=tok-4711; not gzip", headers={"Content-Encoding": "gzip"})

    outcome = asyncio.run(capture_from(answer))
    assert (outcome.outcome, outcome.detail) == (ERROR, "step 'big': DecodingError")


def test_a_match_runs_off_the_event_loop() -> None:
    """A job that waits for the loop to release it finishes: the loop kept running meanwhile."""
    released = threading.Event()

    async def scenario() -> bool:
        matcher = Matcher(budget=60)
        try:
            waiting = asyncio.ensure_future(matcher.run(lambda: released.wait(60)))
            await asyncio.sleep(0)  # the job is handed over before the loop sets the event
            released.set()
            return await waiting
        finally:
            matcher.close()

    assert asyncio.run(scenario()) is True


def test_a_job_over_budget_fails_and_one_no_longer_awaited_never_starts() -> None:
    """Past the budget the caller gets OverBudgetError at once; a job queued behind a slow one
    whose caller gave up is skipped; the next job runs once the slow one is done."""
    release = threading.Event()
    started: list[str] = []

    def slow() -> str:
        started.append("slow")
        release.wait(60)
        return "slow"

    def queued() -> str:
        started.append("queued")
        return "queued"

    async def scenario() -> str:
        matcher = Matcher(budget=0.05)
        try:
            with pytest.raises(OverBudgetError):
                await matcher.run(slow)
            with pytest.raises(OverBudgetError):
                await matcher.run(queued)  # the slow job still holds the thread
            release.set()
            matcher.budget = 60
            return await matcher.run(lambda: "after")
        finally:
            matcher.close()

    assert asyncio.run(scenario()) == "after"
    assert started == ["slow"]


def test_a_capture_over_its_budget_fails_the_step_with_the_reason() -> None:
    """A regex slow on this answer (RE2's slowest mode: seconds here) fails its step within the
    budget, naming the regex."""
    rng = random.Random(7)
    body = "".join(rng.choice("ab") for _ in range(64 * 1024))

    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=f"token={body};")

    regex = "(?:a|b)*a" + "[ab]{1000}" * 4 + "(c)"
    outcome = asyncio.run(capture_from(answer, regex, Matcher(budget=0.01)))
    assert outcome.outcome == CAPTURE_FAILED
    assert outcome.detail is not None
    assert outcome.detail.startswith("step 'big': the regex `(?:a|b)*a[ab]{1000}")
    assert "did not finish within 0.01s on the response (65,543 characters, status 200)" in (
        outcome.detail
    )
