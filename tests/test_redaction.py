"""Secrets never leak: URL passwords made of reserved characters, on every surface warmgate has."""

from __future__ import annotations

import html
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import pg
from tests.helpers import WarmgateProcess, http_get, run_cli
from warmgate.errors import ConfigError
from warmgate.loading import describe, load_config
from warmgate.logs import Log
from warmgate.secrets import Secrets, redact_url, url_passwords
from warmgate.targets import compile_targets

RESERVED = ":/?#[]@!$&'()*+,;=%"
"""RFC 3986's reserved characters, and % (what a password may hold unencoded)."""

tokens = st.text(
    "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", min_size=3, max_size=6
)
reserved_runs = st.text(RESERVED, max_size=4)


@st.composite
def passwords(draw: st.DrawFn) -> tuple[str, list[str]]:
    """``(password, marks)``: reserved characters between distinctive marks; no surface may
    show any mark, so a password cut short anywhere is caught."""
    marks = [f"Zq{draw(tokens)}" for _ in range(draw(st.integers(1, 3)))]
    runs = [draw(reserved_runs) for _ in range(len(marks) + 1)]
    password = runs[0] + "".join(mark + run for mark, run in zip(marks, runs[1:], strict=True))
    return password, marks


def assert_hidden(marks: list[str], **surfaces: str) -> None:
    """No surface shows any mark of the password."""
    for name, text in surfaces.items():
        for mark in marks:
            assert mark not in text, f"{name} shows {mark!r}: {text[:2000]}"


@given(passwords(), st.sampled_from(["http", "https", "postgresql+psycopg", "redis"]))
@example(("pa/ss", ["pa", "ss"]), "http")
def test_a_url_password_is_masked_exactly(secret: tuple[str, list[str]], scheme: str) -> None:
    """Whatever reserved characters a password holds, exactly the password becomes ***."""
    password, _ = secret
    url = f"{scheme}://bob:{password}@host:5432/path?q=1"
    masked = f"{scheme}://bob:***@host:5432/path?q=1"
    assert redact_url(url) == masked
    assert (
        redact_url(f"connect to '{url}' failed; {url}.")
        == f"connect to '{masked}' failed; {masked}."
    )
    assert url_passwords(url) == {password}


@given(passwords())
def test_a_known_secret_is_masked_in_every_spelling(secret: tuple[str, list[str]]) -> None:
    """A secret is masked as written, percent-encoded, and escaped for JSON and HTML."""
    password, marks = secret
    secrets = Secrets({password})
    stream = io.StringIO()
    Log(stream, secrets=secrets).event("failed", f"token {password} refused", token=password)
    assert_hidden(
        marks,
        log=stream.getvalue(),
        text=secrets.redact(f"a {password} b"),
        json=secrets.redact(json.dumps({"token": password})),
        html=secrets.redact(f"<p>{html.escape(password)}</p>"),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(passwords())
@example(("Zqpa/Zqss", ["Zqpa", "Zqss"]))
def test_config_errors_and_the_plan_hide_the_password(secret: tuple[str, list[str]]) -> None:
    """Refusals of a credential URL, database URL errors and the validate plan never show it."""
    password, marks = secret
    shown: dict[str, str] = {}
    for name, overrides in {
        "http": {"targets": [{"http": {"url": f"http://bob:{password}@127.0.0.1/x"}}]},
        "wait": {"targets": [{"http": {"url": "http://127.0.0.1/"}}], "wait": {"url": f"http://bob:{password}@h/"}},
        "broken": {"targets": [{"sql": {"url": f"postgresql+psycopg://bob:{password}@[::1/x", "query": "SELECT 1"}}]},
        "sql": {"targets": [{"sql": {"url": f"postgresql+psycopg://bob:{password}@127.0.0.1:1/test", "query": "SELECT 1"}}]},
    }.items():  # fmt: skip
        try:
            config, secrets = load_config(None, overrides, environ={})
            compile_targets(config)
            shown[name] = describe(config, secrets)
        except ConfigError as exc:
            shown[name] = str(exc)
    assert "carries a user or password" in shown["http"]
    assert_hidden(marks, **shown)


@contextmanager
def serving(status_dir: Path) -> Iterator[str]:
    """``warmgate serve`` over ``status_dir``; yields its base URL."""
    with WarmgateProcess("serve", "--status-dir", str(status_dir), "--port", "0") as server:
        yield f"http://127.0.0.1:{server.port()}"


def surfaces_of_a_run(password: str, directory: Path) -> dict[str, str]:
    """Every text warmgate shows while it warms a real database with ``password``, fails
    closed against a closed port with it, and refuses it in an HTTP URL."""
    encoded = password.replace("%", "%25").replace("@", "%40")
    env = {"DB_PASSWORD": encoded, "API_PASSWORD": password}
    template = (
        "targets:\n"
        "  - name: db\n"
        '    sql: {{url: "postgresql+psycopg://postgres:${{DB_PASSWORD}}@127.0.0.1:{port}/test", '
        "query: SELECT 1, timeout: 1s}}\n"
        "load: {{concurrency: 2, ramp_step: 200ms}}\n"
        "gate: {{window: 1s, hold: 0s, min_requests: 5, timeout: {timeout}, on_timeout: fail}}\n"
        "wait: {{timeout: 1s}}\n"
        "traffic: {{headers: {{X-Api-Key: '${{API_PASSWORD}}'}}}}\n"
        "status_dir: {status}\n"
    )
    shown: dict[str, str] = {}
    for name, port, timeout in (("warm", pg.PORT, "30s"), ("failed", 1, "2s")):
        status = directory / name
        config = directory / f"{name}.yaml"
        config.write_text(template.format(port=port, timeout=timeout, status=status))
        report = directory / f"{name}.html"
        validated = run_cli("validate", "--config", str(config), env=env)
        assert validated.returncode == 0, validated.stderr
        shown[f"{name} validate"] = validated.stdout + validated.stderr
        primed = run_cli("prime", "--config", str(config), "--report", str(report),
                         "--log-format", "json", env=env)  # fmt: skip
        assert primed.returncode == (0 if name == "warm" else 1), primed.stderr
        shown[f"{name} prime logs"] = primed.stdout + primed.stderr
        shown[f"{name} status.json"] = (status / "status.json").read_text()
        # A run that never got past waiting has no warm-up to report.
        shown[f"{name} report.html"] = report.read_text() if report.exists() else ""
        shown[f"{name} report"] = run_cli("report", "--status-dir", str(status)).stdout
        shown[f"{name} check"] = run_cli("check", "--status-dir", str(status)).stdout
        with serving(status) as base:
            shown[f"{name} /status"] = http_get(f"{base}/status")[1]
            shown[f"{name} /metrics"] = http_get(f"{base}/metrics")[1]
            shown[f"{name} /readyz"] = http_get(f"{base}/readyz")[1]
    refused = run_cli("validate", "--url", f"http://bob:{password}@127.0.0.1/x")
    assert refused.returncode == 2
    shown["refusal"] = refused.stdout + refused.stderr
    return shown


@pytest.mark.slow
@pytest.mark.postgres
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(passwords())
@example(("Zqpa/ss@Zqend", ["Zqpa", "Zqend"]))
def test_no_surface_shows_the_password(secret: tuple[str, list[str]]) -> None:
    """Logs, status.json, /status, /metrics, /readyz, reports, check, validate and errors hide a
    password of reserved characters, in a warm run and in a failed one."""
    pg.require_postgres()
    password, marks = secret
    with tempfile.TemporaryDirectory() as directory:
        shown = surfaces_of_a_run(password, Path(directory))
    assert "warmgate_ready" in shown["warm /metrics"]
    assert_hidden(marks, **shown)
