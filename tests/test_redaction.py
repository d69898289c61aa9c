"""Secrets never leak: URL passwords made of reserved characters or whitespace, and secrets quoted
in long errors that are cut short, on every surface warmgate has."""

from __future__ import annotations

import asyncio
import html
import http.server
import io
import json
import string
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import pg
from tests.helpers import WarmgateProcess, http_get, run_cli
from warmgate.config.describe import describe
from warmgate.config.loader import load_config
from warmgate.decide.outcomes import ERROR
from warmgate.decide.reach import Down
from warmgate.decide.window import Sample
from warmgate.kernel.errors import ConfigError
from warmgate.kernel.redaction import Secrets, mask_url, redact_url, sql_url_secrets, url_passwords
from warmgate.serve.logs import Log
from warmgate.traffic.driver import Outcome
from warmgate.traffic.loadgen import Load
from warmgate.traffic.sql.check import Dialect
from warmgate.traffic.sql.outcomes import classify
from warmgate.traffic.targets import compile_targets

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


SHOWN_PART = 12
"""No run of this many characters of a secret may show anywhere."""
TOKEN_CHARS = string.ascii_letters + string.digits + "-_"
AROUND = ' :"()=,;\n\t…é'
"""Text around a secret in a message: shares no character with a token, so any run of a
token's characters that shows came from the token."""


def jwt_like(seed: int) -> str:
    """A 200-character token shaped like a JWT (three base64url parts), different per seed."""
    body = "".join(
        TOKEN_CHARS[(seed * 7919 + index * 104729) % len(TOKEN_CHARS)] for index in range(194)
    )
    return f"eyJ{body[:60]}.{body[60:140]}.{body[140:]}"


def shown_parts(token: str, text: str) -> list[str]:
    """The runs of :data:`SHOWN_PART` characters of ``token`` that ``text`` shows."""
    return [
        token[start : start + SHOWN_PART]
        for start in range(len(token) - SHOWN_PART + 1)
        if token[start : start + SHOWN_PART] in text
    ]


def assert_no_part(tokens: list[str], **surfaces: str) -> None:
    """No surface shows a run of :data:`SHOWN_PART` characters of any token."""
    for name, text in surfaces.items():
        for token in tokens:
            parts = shown_parts(token, text)
            assert not parts, f"{name} shows {parts[0]!r}: {text[:3000]}"


@given(
    st.text(TOKEN_CHARS, min_size=SHOWN_PART, max_size=300),
    st.text(AROUND, max_size=300),
    st.text(AROUND, max_size=40),
    st.integers(1, 700),
    st.booleans(),
)
def test_a_secret_is_redacted_before_a_text_is_cut(
    token: str, before: str, after: str, limit: int, first_line: bool
) -> None:
    """Wherever the cut falls, in or after a secret, no part of the secret is left to show."""
    shown = Secrets({token}).shorten(before + token + after, limit, first_line=first_line)
    assert len(shown) <= limit
    assert not shown_parts(token, shown)


def test_a_cut_inside_a_url_password_leaves_no_part_of_it() -> None:
    """A URL whose password is not known is masked by its shape before the cut, so a cut between
    the password and its @ cannot leave the password unmasked."""
    password = jwt_like(1)
    text = f"could not connect to http://app:{password}@db.internal:5432/orders: refused"
    for limit in range(20, len(text) + 2, 7):
        assert not shown_parts(password, Secrets().shorten(text, limit))


@pytest.mark.parametrize(
    "shown",
    ["Wx7 kq9Lm\tRt4vZ", "Wx7  kq9Lm Rt4vZ", "Wx7\nkq9Lm\n\n\tRt4vZ", "WX7 KQ9LM\tRT4VZ",
     "wx7 kq9lm\trt4vz", "Wx7%20kq9Lm%09Rt4vZ", "Wx7+kq9Lm%09Rt4vZ", "Wx7 kq9Lm\\tRt4vZ"],
)  # fmt: skip
def test_a_secret_holding_whitespace_is_masked_however_it_is_spaced(shown: str) -> None:
    """A secret with a space and a tab is masked re-spaced, re-cased, percent- and
    form-encoded, and JSON-escaped, as it is written."""
    secrets = Secrets({"Wx7 kq9Lm\tRt4vZ"})
    assert secrets.redact(f"password '{shown}' refused") == "password '***' refused"


def test_a_secret_is_masked_without_its_surrounding_whitespace() -> None:
    """A secret read with a trailing newline or leading space is masked when shown stripped."""
    assert Secrets({" hunter2-x\n"}).redact("login hunter2-x failed") == "login *** failed"


@pytest.mark.parametrize("password", ["pa ss", "pa\tss", " lead", "trail ", "a b@c d"])
def test_a_url_field_masks_a_password_holding_whitespace(password: str) -> None:
    """A config's URL is one value: its password runs to its last @ even across whitespace."""
    url = f"postgresql+psycopg://app:{password}@db:5432/orders"
    assert mask_url(url) == "postgresql+psycopg://app:***@db:5432/orders"
    assert url_passwords(url) == {password}


def test_a_password_option_holding_a_space_is_known_in_every_form() -> None:
    """?password= values are taken whole, and decoded as the database driver decodes them."""
    found = sql_url_secrets("postgresql+psycopg://app@db/orders?password=Wx7+kq9%09Lm z&x=1")
    assert {"Wx7+kq9%09Lm z", "Wx7 kq9\tLm z"} <= found


@pytest.mark.slow
def test_validate_hides_a_database_password_holding_a_space_or_a_tab(tmp_path: Path) -> None:
    """validate's plan hides a password with a space and a tab written in the URL, percent-
    or form-encoded, in ?password=, or from a ${VAR} whatever its name, on PostgreSQL and MySQL."""
    password = "Wx7 kq9Lm\tRt4vZ"  # noqa: S105 - planted to be hidden
    urls = {
        "literal": "postgresql+psycopg://app:Wx7 kq9Lm\\tRt4vZ@127.0.0.1:5432/test",
        "encoded": "postgresql+psycopg://app:Wx7%20kq9Lm%09Rt4vZ@127.0.0.1:5432/test",
        "option": "postgresql+psycopg://app@127.0.0.1:5432/test?password=Wx7 kq9Lm%09Rt4vZ",
        "form": "postgresql+psycopg://app@127.0.0.1:5432/test?password=Wx7+kq9Lm%09Rt4vZ",
        "variable": "postgresql+psycopg://app:${DB_PW}@127.0.0.1:5432/test",
        "mysql": "mysql://app:${DB_PW}@127.0.0.1:3306/test",
    }
    shown = {}
    for name, url in urls.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(f'targets:\n  - sql: {{url: "{url}", query: SELECT 1}}\n')
        result = run_cli("validate", "--config", str(config), env={"DB_PW": password})
        assert result.returncode == 0, result.stderr
        assert ":***@" in result.stdout or "password=***" in result.stdout
        shown[name] = result.stdout + result.stderr
    assert_hidden(["Wx7", "kq9Lm", "Rt4vZ"], **shown)


def test_a_database_message_quoting_a_secret_is_redacted_before_it_is_cut() -> None:
    """A MySQL error that quotes a 200-character secret gives a detail with no part of it."""
    import pymysql

    token = jwt_like(2)
    error = pymysql.err.ProgrammingError(1064, f"You have an error near '{token}' at line 1")
    outcome = classify(error, dialect=Dialect.MYSQL, secrets=Secrets({token}))
    assert outcome.detail.startswith("You have an error near '***' at line 1")
    assert not shown_parts(token, outcome.detail)


@pytest.mark.postgres
def test_a_postgresql_error_quoting_a_secret_is_redacted_before_it_is_cut() -> None:
    """PostgreSQL's own message quoting a bound 200-character secret is cut with none of it."""
    import psycopg

    pg.require_postgres()
    token = jwt_like(3)
    with pg.connect() as connection, pytest.raises(psycopg.Error) as caught:
        connection.execute("SELECT CAST(%s AS integer)", (token,))
    assert token[:SHOWN_PART] in str(caught.value)  # the server did quote it
    outcome = classify(caught.value, dialect=Dialect.POSTGRESQL, secrets=Secrets({token}))
    assert outcome.detail == 'invalid input syntax for type integer: "***"'


class _Raising:
    """A driver whose every request raises an error that quotes ``token``."""

    name = "raising"

    def __init__(self, token: str) -> None:
        self.token = token

    async def execute(self) -> Outcome:
        raise ValueError(f"the client refused the header value {self.token} (too long)")

    async def probe(self) -> Down | None:
        return None

    async def aclose(self) -> None:
        return None


def test_an_error_a_driver_raises_is_redacted_before_it_is_cut() -> None:
    """The error sample of a driver that raised keeps its message cut, with no part of a secret."""
    token = jwt_like(4)
    samples: list[Sample] = []

    async def scenario() -> None:
        first = asyncio.Event()

        def record(sample: Sample) -> None:
            samples.append(sample)
            first.set()

        load = Load([_Raising(token)], [1.0], 1, record, secrets=Secrets({token}))
        load.start()
        load.configure(1)
        await asyncio.wait_for(first.wait(), 30)
        await load.stop()

    asyncio.run(scenario())
    assert samples[0].outcome == ERROR
    assert samples[0].detail.startswith("ValueError: the client refused the header value ***")
    assert not shown_parts(token, samples[0].detail)


@contextmanager
def echoing_app() -> Iterator[int]:
    """An HTTP app that answers 500, echoing the request's X-Api-Key in its body and headers;
    yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            key = self.headers.get("X-Api-Key", "")
            body = f"invalid key {key}".encode()
            self.send_response(500)
            self.send_header("X-Echo", key)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def surfaces_of_a_failed_prime(directory: Path, db_token: str, api_token: str) -> dict[str, str]:
    """Every text warmgate shows after priming fails on errors that quote the tokens: a
    PostgreSQL error quoting the database password (bound as a parameter), and an app that echoes
    the header's token; in JSON and human logs."""
    env = {"DB_PASSWORD": db_token, "API_TOKEN": api_token}
    shown: dict[str, str] = {}
    with echoing_app() as port:
        config = directory / "failing.yaml"
        status = directory / "status"
        config.write_text(
            "targets:\n"
            "  - name: db\n"
            '    sql: {url: "postgresql+psycopg://postgres:${DB_PASSWORD}@127.0.0.1:'
            f'{pg.PORT}/test", query: "SELECT CAST(:t AS integer)", '
            'params: {t: "${DB_PASSWORD}"}, timeout: 2s}\n'
            "  - name: api\n"
            f"    http: {{url: 'http://127.0.0.1:{port}/', headers: {{X-Api-Key: '${{API_TOKEN}}'}}}}\n"
            "load: {concurrency: 2, ramp_step: 200ms}\n"
            "gate: {window: 1s, hold: 0s, min_requests: 5, timeout: 3s, on_timeout: fail}\n"
            f"status_dir: {status}\n"
        )
        report = directory / "report.html"
        for log_format in ("json", "human"):
            primed = run_cli("prime", "--config", str(config), "--report", str(report),
                             "--log-format", log_format, env=env)  # fmt: skip
            assert primed.returncode == 1, primed.stderr
            assert "invalid input syntax for type integer" in primed.stdout
            shown[f"prime {log_format} logs"] = primed.stdout + primed.stderr
    shown["status.json"] = (status / "status.json").read_text()
    shown["report.json"] = (status / "report.json").read_text()
    shown["report.html"] = report.read_text()
    shown["report"] = run_cli("report", "--status-dir", str(status)).stdout
    shown["check"] = run_cli("check", "--status-dir", str(status)).stdout
    with serving(status) as base:
        shown["/readyz"] = http_get(f"{base}/readyz")[1]
        shown["/status"] = http_get(f"{base}/status")[1]
        shown["/metrics"] = http_get(f"{base}/metrics")[1]
    return shown


@pytest.mark.slow
@pytest.mark.postgres
def test_no_part_of_a_long_token_shows_after_errors_that_quote_it(tmp_path: Path) -> None:
    """No 12 characters of a 200-character database password or API token show in the logs,
    status.json, report.json, the reports, /readyz, /status or /metrics after errors that
    quote them."""
    pg.require_postgres()
    db_token, api_token = jwt_like(5), jwt_like(6)
    shown = surfaces_of_a_failed_prime(tmp_path, db_token, api_token)
    reason = json.loads(shown["status.json"])["reason"]
    assert 'errors (invalid input syntax for type integer: "***")' in reason
    assert "invalid input syntax for type integer" in shown["/readyz"]
    assert_no_part([db_token, api_token], **shown)
