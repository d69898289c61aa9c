"""Journeys end to end: `warmgate prime` logs in to the simulated app and warms its pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.journeys import PASSWORD, login_journey
from warmgate.simapp import Behavior, SimApp

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
