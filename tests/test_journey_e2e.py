"""Journeys end to end: `warmgate prime` logs in to the simulated app and warms its pages."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import WarmgateProcess, run_cli
from tests.journeys import PASSWORD, login_journey
from warmgate.demo.simapp import Behavior, SimApp

pytestmark = pytest.mark.slow

COLD_PAGES = Behavior(password=PASSWORD, page_cold_latency=0.3, page_warm_requests=30)
"""Protected pages answer in 300ms for their first 30 requests, then in a millisecond."""


def prime(tmp_path: Path, target: dict[str, Any], timeout: str = "40s") -> tuple[int, str]:
    """Run prime on one journey target; exit code and everything it showed."""
    config = {
        "targets": [target],
        "load": {"concurrency": 4},
        "gate": {
            "p95": "100ms", "window": "3s", "hold": "1s", "min_requests": 40,
            "timeout": timeout, "on_timeout": "fail",
        },
        "status_dir": str(tmp_path / "wg"),
    }  # fmt: skip
    path = tmp_path / "journey.yaml"
    path.write_text(json.dumps(config))
    report = tmp_path / "report.html"
    result = run_cli(
        "prime", "--config", str(path), "--log-format", "json", "--report", str(report),
        env={"APP_PASSWORD": PASSWORD}, timeout=120,
    )  # fmt: skip
    shown = result.stdout + result.stderr + (tmp_path / "wg" / "status.json").read_text()
    shown += report.read_text() if report.exists() else ""
    return result.returncode, shown


def status_of(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "wg" / "status.json").read_text())
    return data


def test_a_journey_logs_in_warms_the_protected_pages_and_opens(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """Login, token captured, pages warmed past their cold start: ready, one session each."""
    app = sim_app(COLD_PAGES)
    code, shown = prime(tmp_path, login_journey(app.port))
    assert code == 0, shown[-2000:]
    status = status_of(tmp_path)
    assert status["outcome"] == "warm"
    assert (tmp_path / "wg" / "ready").exists()
    stats = app.stats
    assert min(stats.page_served.values()) >= COLD_PAGES.page_warm_requests
    assert stats.failed_logins == 0
    # Every session came from its own login and saw at most one iteration's two pages: no
    # virtual user and no iteration ever reused another's session.
    assert len(stats.session_pages) <= stats.logins
    assert max(stats.session_pages.values()) <= 2
    assert (stats.login_with_cookie, stats.mismatched, stats.unauthorized) == (0, 0, 0)
    assert PASSWORD not in shown


def test_a_wrong_password_gives_a_clear_reason_and_no_ready(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """The app refuses the login: fail closed, the reason names the step, no password shown."""
    app = sim_app(Behavior(password="not-the-one-sent"))  # noqa: S106 - the app's, not sent
    code, shown = prime(tmp_path, login_journey(app.port), timeout="6s")
    assert code == 1
    status = status_of(tmp_path)
    assert status["outcome"] == "failed_closed"
    assert "(step 'login': answered 401)" in str(status["reason"])
    assert not (tmp_path / "wg" / "ready").exists()
    assert "step 'login': answered 401; the rest of that iteration is skipped" in shown
    report = (tmp_path / "report.html").read_text()
    assert "step &#x27;login&#x27;: answered 401" in report  # HTML-escaped
    assert app.stats.page_served == {}
    assert PASSWORD not in shown


def test_a_capture_that_finds_nothing_is_the_reason(
    sim_app: Callable[..., SimApp], tmp_path: Path
) -> None:
    """A token path the app does not answer with: the reason quotes the path and the status."""
    app = sim_app(Behavior(password=PASSWORD))
    code, _ = prime(tmp_path, login_journey(app.port, capture="$.access_token"), timeout="6s")
    assert code == 1
    reason = str(status_of(tmp_path)["reason"])
    assert "failed captures (step 'login': no `$.access_token` in the response (status 200))" in (
        reason
    )
    assert app.stats.page_served == {}


MIB = 1024 * 1024
SLOW_REGEX = "(?:a|b)*a" + "[ab]{1000}" * 4 + "(c)"
"""On 1 MiB of random a and b, RE2's slowest mode: about 20 s a match on a 2-core machine."""


def random_ab(size: int) -> bytes:
    """``size`` bytes of a and b, in an order that keeps RE2's automaton from settling."""
    table = bytes(ord("a") + (byte & 1) for byte in range(256))
    return random.Random(7).randbytes(size).translate(table)


@pytest.fixture
def answering() -> Iterator[Callable[[bytes], str]]:
    """Start a local HTTP server that answers every GET with the given body; its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/page"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def capturing(url: str, regex: str) -> dict[str, Any]:
    """A journey target of one judged step that captures ``regex`` from ``url``'s answer."""
    step = {"name": "page", "http": {"url": url, "timeout": "10s"},
            "capture": {"csrf": {"regex": regex}}}  # fmt: skip
    return {"name": "form", "journey": {"steps": [step]}}


@pytest.mark.parametrize(
    ("regex", "body"),
    [(r'.*csrf="([^"]+)"', b"<p>" + b"a" * MIB + b"</p>"), (r"^(a+)+$", b"a" * 40 + b"b")],
    ids=["csrf-1mib", "nested-41-bytes"],
)
def test_a_capture_that_backtracks_catastrophically_ends_prime_by_its_deadline(
    answering: Callable[[bytes], str], tmp_path: Path, regex: str, body: bytes
) -> None:
    """Patterns that hold Python's re for hours on these answers fail their step at once, and
    prime fails closed at its deadline with that reason."""
    code, _ = prime(tmp_path, capturing(answering(body), regex), timeout="4s")
    assert code == 1
    status = status_of(tmp_path)
    assert status["outcome"] == "failed_closed"
    assert "(step 'page': the regex `" in status["reason"]
    assert "` matched nothing in the response (status 200))" in status["reason"]


def test_a_capture_over_its_budget_fails_the_step_and_prime_keeps_its_deadline(
    answering: Callable[[bytes], str], tmp_path: Path
) -> None:
    """A regex that takes RE2 many seconds on the answer fails each step after the 1 s budget,
    and prime still fails closed at its 4 s deadline, saying why."""
    code, shown = prime(tmp_path, capturing(answering(random_ab(MIB)), SLOW_REGEX), timeout="4s")
    assert code == 1, shown[-2000:]
    status = status_of(tmp_path)
    assert status["outcome"] == "failed_closed"
    said = "did not finish within 1s on the response (1,048,576 characters, status 200)"
    assert said in status["reason"]


def test_sigterm_ends_prime_while_a_capture_is_matching(
    answering: Callable[[bytes], str], tmp_path: Path
) -> None:
    """With a match of many seconds running, SIGTERM still ends prime at once: exit 1 and the
    stopped status written. (How long it takes is measured in benchmarks/shutdown.py.)"""
    config = tmp_path / "journey.yaml"
    target = capturing(answering(random_ab(MIB)), SLOW_REGEX)
    config.write_text(json.dumps({"targets": [target], "status_dir": str(tmp_path / "wg"),
                                  "gate": {"timeout": "10m"}}))  # fmt: skip
    with WarmgateProcess("prime", "--config", str(config)) as gate:
        gate.wait_for(lambda e: "did not finish within 1s" in str(e.get("message")), timeout=60)
        # A match has run past its budget and still holds the capture thread (for seconds more).
        started = time.monotonic()
        code = gate.stop(signal.SIGTERM, timeout=60)
        took = time.monotonic() - started
    assert code == 1
    status = status_of(tmp_path)
    assert (status["state"], status["ready"]) == ("stopped", False)
    assert status["reason"] == "stopped by SIGTERM before the target was warm"
    # Far below the match's own seconds, and below the 10-minute deadline by far.
    assert took < 8, took


def test_a_template_slow_on_a_captured_value_does_not_hold_prime_past_its_deadline(
    answering: Callable[[bytes], str], tmp_path: Path
) -> None:
    """A step whose URL loops twice over a captured value renders at once at start-up (the
    example value is one letter) and would take hours on the 100,000 letters captured: each such
    render is interrupted, and prime fails closed at its deadline, saying why."""
    url = answering(b"token=" + b"x" * 100_000 + b";")
    slow = url + "?q={% for a in token %}{% for b in token %}{% endfor %}{% endfor %}"
    steps = [
        {"name": "login", "judged": False, "http": {"url": url, "timeout": "10s"},
         "capture": {"token": {"regex": "token=(x+);"}}},
        {"name": "page", "http": {"url": slow, "timeout": "10s"}},
    ]  # fmt: skip
    code, shown = prime(tmp_path, {"name": "form", "journey": {"steps": steps}}, timeout="4s")
    assert code == 1, shown[-2000:]
    assert status_of(tmp_path)["outcome"] == "failed_closed"
    assert "the template took more than 0.25s to render" in status_of(tmp_path)["reason"]
