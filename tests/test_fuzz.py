"""Fuzzing config loading, validation and template compilation, and the sweep's hostile cases.

Each fuzz target takes generated YAML, flag sets or templates; any exception other than
ConfigError (TemplateError is one), any traceback written to stderr, or any case that uses
more than a second of CPU (:data:`CPU_SECONDS`; CPU, not wall time, so a busy machine does
not change the verdict) fails. ``FUZZ_SECONDS`` (20 by default) bounds each
target: batches of examples with fresh seeds run until it has passed, so CI fuzzes for about a
minute in all. ``-m "not fuzz"`` skips them.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.test_config import billion_laughs
from warmgate.cli.main import app
from warmgate.config.describe import describe
from warmgate.config.flags import CONFIG_FLAGS, overrides_from_flags
from warmgate.config.loader import load_config
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.targets import compile_targets
from warmgate.traffic.templating import Templates

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "20"))
"""Seconds each fuzz target runs for (the name has no WARMGATE_ prefix: conftest clears those)."""
BATCH = settings(
    max_examples=25,  # small batches: a target stops within one batch of FUZZ_SECONDS
    deadline=None,  # wall time depends on what else the machine runs: see no_traceback
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)  # fmt: skip
ENVIRON = {"HOME": "/root", "DB_PASSWORD": "s3cret-pw"}
# Jinja2 and SQLAlchemy are imported once here, so no timed example pays for the import;
# grpcio and protobuf too.
Templates().compile("{{ 1 }}", "warm-up")
importlib.import_module("warmgate.traffic.grpc.driver")

KEYS = [
    "targets", "load", "gate", "wait", "after_ready", "server", "traffic", "status_dir",
    "log_format", "name", "weight", "rate", "http", "sql", "url", "method", "headers", "body",
    "expect_status", "timeout", "confirm_read_only", "query", "params", "rows", "min", "max",
    "concurrency", "ramp_step", "jitter", "success_rate", "p50", "p95", "p99",
    "plateau_tolerance", "min_requests", "window", "hold", "on_timeout", "initial_backoff",
    "max_backoff", "keep_warm_rate", "rearm_after", "retry_after", "host", "port", "user_agent",
    "tls", "verify", "ca_file", "client_cert", "client_key", "server_name", "grpc", "address",
    "request", "metadata", "expect", "plaintext", "descriptor_set",
]  # fmt: skip
WORDS = [
    "10s", "500ms", "0s", "1h", "auto", "ready", "fail", "json", "human", "GET", "POST", "2xx",
    "", " ", "http://127.0.0.1:9/x", "http://127.0.0.1:9/{{ randint(1, 9) }}", "https://[::1]/",
    "http://bob:pa/ss@h/", "http://h:99999/", "http://{{ 'h' }}:80/", "SELECT 1", "sqlite:///x.db",
    "postgresql+psycopg://u:${DB_PASSWORD}@127.0.0.1:1/db", "postgresql://u:a@b@h/db",
    "${HOME}", "${NOPE}", "${NOPE:-x}", "{{ 1 // 0 }}", "{{ 'x' * 9999999 }}", "a\r\nb", ".inf",
    "1e999s", "9" * 50 + "s", "{% for i in range(9) %}{{ i }}{% endfor %}", "{{ line('/x') }}",
]  # fmt: skip
TEMPLATE_TOKENS = [
    "{{", "}}", "{%", "%}", "for i in ", "range(", "100000", ")", "endfor", "if ", "endif",
    "set ns = namespace(s='x')", "set ns.s = ns.s ~ ns.s", "ns.s", "'x'", " * ", " ** ", " ~ ",
    " % ", " + ", "|join", "|center(", "|indent(", "|replace('', 'y')", "|format(", "|sum",
    "|list", ".ljust(", ".format(", "randint(1, 9)", "choice([1, 2])", "uuid4()", "random()",
    "line('/dev/zero')", "lipsum(", "x", "1", "9**9**9", "''.__class__", "[", "]", ",", "(",
    "macro f()", "f()", "endmacro", "-", "10**8",
]  # fmt: skip


def fuzz_for(seconds: float, target: Callable[[], None]) -> None:
    """Run ``target`` (a Hypothesis test) in batches with fresh seeds until ``seconds`` pass."""
    end = time.monotonic() + seconds
    batch = 0
    while batch == 0 or time.monotonic() < end:
        seed(batch)(target)()
        batch += 1


CPU_SECONDS = 1.0
"""The CPU time one case may take. A template's first render stops at 0.5 s of wall time, so
a busy machine only lowers the CPU a case gets through; a missing bound shows as more."""


def no_traceback(function: Callable[[], Any]) -> None:
    """Call ``function``; only a ConfigError may escape, nothing may print a traceback, and it
    takes less than :data:`CPU_SECONDS` of this thread's CPU time."""
    stderr = io.StringIO()
    started = time.thread_time()
    with contextlib.redirect_stderr(stderr), contextlib.suppress(ConfigError):
        function()
    assert "Traceback" not in stderr.getvalue()
    assert time.thread_time() - started < CPU_SECONDS


def check_config(path: Path | None, overrides: dict[str, Any] | None = None) -> None:
    """Load, validate, compile and describe, as ``warmgate validate`` does."""
    config, secrets = load_config(path, overrides, environ=ENVIRON)
    compile_targets(config)
    describe(config, secrets)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(WORDS),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
    ),
    max_leaves=25,
)


def mostly(*good: Any) -> st.SearchStrategy[Any]:
    """One of ``good`` nine times in ten, anything at all otherwise: deep enough to reach the
    checks after the first field, wild enough to hit each of them with junk."""
    choice = st.sampled_from(good)
    return st.sampled_from([choice] * 9 + [values]).flatmap(lambda strategy: strategy)


def section(
    required: dict[str, st.SearchStrategy[Any]] | None = None, **fields: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping with ``required`` and any subset of ``fields``; one in ten has an unknown key."""
    known = st.fixed_dictionaries(required or {}, optional=fields)
    return st.tuples(known, st.sampled_from(range(10)), values).map(
        lambda drawn: {**drawn[0], "extra": drawn[2]} if drawn[1] == 9 else drawn[0]
    )


DURATIONS = ("1s", "500ms", "20s", "0s", "5m", "1m30s")
http_targets = section(
    {"url": mostly("http://127.0.0.1:9/x", "http://127.0.0.1:9/{{ randint(1, 9) }}",
                   "https://[::1]:8443/a?b=c", "http://h/{{ choice(['a', 'b']) }}")},
    method=mostly("GET", "HEAD", "POST"), timeout=mostly(*DURATIONS),
    headers=mostly({"X-A": "1"}, {"Authorization": "Bearer ${DB_PASSWORD}"},
                   {"X-T": "{{ uuid4() }}"}),
    body=mostly('{"a": {{ randint(1, 9) }}}', None), expect_status=mostly([200], ["2xx", 404]),
    confirm_read_only=mostly(True, False),
    tls=mostly({"verify": False}, {"server_name": "app.internal"}, {"ca_file": "/nonexistent.pem"},
               {"ca_file": "/dev/null"}, {"ca_file": "/"}, {"client_key": "k.pem"}, None),
)  # fmt: skip
sql_targets = section(
    {"url": mostly("sqlite:///x.db", "postgresql+psycopg://u:${DB_PASSWORD}@127.0.0.1:1/db",
                   "postgresql://u@h/db", "mariadb://u:${DB_PASSWORD}@127.0.0.1:1/db",
                   "mysql://u@h/db?init_command=x"),
     "query": mostly("SELECT 1", "SELECT * FROM t WHERE id = :id", "DELETE FROM t",
                     "SELECT GET_LOCK('a', 1) # x", "SELECT 1 INTO @v")},
    params=mostly({"id": "{{ randint(1, 9) }}"}, {}), rows=mostly({"min": 1}, {"min": 1, "max": 10}),
    timeout=mostly(*DURATIONS),
)  # fmt: skip
grpc_targets = section(
    {"address": mostly("127.0.0.1:9", "[::1]:50051", "app", "http://h:1", "h:0"),
     "method": mostly("a.B/GetC", "shop.v1.Cart/AddItem", "GetItem",
                      "grpc.health.v1.Health/Check")},
    request=mostly('{"id": {{ randint(1, 9) }}}', "{}", "{{ 1 // 0 }}", "not json"),
    metadata=mostly({"x-a": "1"}, {"authorization": "Bearer ${DB_PASSWORD}"}, {"x-bin": "a"},
                    {"X-T": "{{ uuid4() }}"}),
    timeout=mostly(*DURATIONS), expect=mostly(["OK"], [0, "NOT_FOUND"], ["NOPE"], [], [True]),
    plaintext=mostly(True, False), confirm_read_only=mostly(True, False),
    tls=mostly({"verify": False}, {"server_name": "app.internal"}, {"ca_file": "/nonexistent.pem"},
               {"ca_file": "/dev/null"}, None),
    descriptor_set=mostly("/nonexistent.pb", "/dev/null", "/", None),
)  # fmt: skip
targets = st.one_of(
    section({"grpc": grpc_targets}, name=mostly("c", "catalog"), weight=mostly(1, 3)),
    section({"http": http_targets}, name=mostly("a", "db", "items-1"),
            weight=mostly(1, 2.5, 0.001), rate=mostly(5, 100)),
    section({"sql": sql_targets}, name=mostly("b", "orders"), weight=mostly(1, 3),
            rate=mostly(5, 0.5)),
)  # fmt: skip
documents = st.fixed_dictionaries(
    {"targets": st.lists(targets, min_size=1, max_size=3)},
    optional={
        "load": section(concurrency=mostly(1, 8, 4096), rate=mostly(1, 100),
                        ramp_step=mostly(*DURATIONS), jitter=mostly(*DURATIONS)),
        "gate": section(success_rate=mostly(0.99, 1), p50=mostly("50ms"),
                        p95=mostly("200ms", "auto"), p99=mostly("1s"),
                        plateau_tolerance=mostly(0.1), min_requests=mostly(1, 20),
                        window=mostly("10s", "1s"), hold=mostly("0s", "5s"),
                        timeout=mostly("5m", "1s"), on_timeout=mostly("ready", "fail")),
        "wait": section(url=mostly("http://127.0.0.1:9/ready"), timeout=mostly(*DURATIONS),
                        initial_backoff=mostly("100ms"), max_backoff=mostly("2s", "10ms")),
        "after_ready": section(keep_warm_rate=mostly(0, 1), rearm_after=mostly("5s", "50ms"),
                               retry_after=mostly("1m")),
        "server": section(host=mostly("127.0.0.1", "::"), port=mostly(0, 8099, 70000)),
        "traffic": section(user_agent=mostly("warmgate-test"),
                           headers=mostly({"X-Warmgate": "2"})),
        "status_dir": mostly("wg-status", ""),
        "log_format": mostly("json", "auto"),
    },
)  # fmt: skip
SNIPPETS = [
    "&a ", "*a", "<<: *a\n", "[[[[[[", "]]", "{", "? [a]\n: 1\n", "!!binary x", "!!set {a}",
    "!!python/object:os.system x", "%YAML 1.1\n---\n", "---\n", "\t", "\x00", "\ufeff", ": :",
    "- - -", "'", '"', "|\n", ">-\n", "#", "2001-02-30", "0o755", "1e999", "x: 1\nx: 2\n",
]  # fmt: skip


RAW_VALUES = [
    "2001-02-30", "2001-13-01 00:00:00", "1" * 5000, "0x" + "f" * 5000, ".inf", "-.inf", ".nan",
    "1e400", "*nowhere", "&x [*x]", "[" * 80 + "]" * 80, "!!binary =", "!!float x", "~", "",
    "{a: 1, a: 2}", "? [a]\n  : 1", "'a\\r\\nb'", '"a\\r\\nb"', "!!str", "0o9", "yes", "null",
]  # fmt: skip
"""YAML text (not Python values) that PyYAML turns into dates, huge ints, infinities, errors."""


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Lists or mappings nested up to 200 deep, flow or block style."""
    depth = draw(st.integers(1, 200))
    if draw(st.booleans()):
        return "targets: " + "[" * depth + "]" * depth + "\n"
    return "targets:\n" + "".join("  " * level + "- x:\n" for level in range(1, depth))


@st.composite
def alias_chains(draw: st.DrawFn) -> str:
    """Anchors that refer to earlier anchors: fan-out ** levels values once expanded."""
    levels, fanout = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    lines = ["a0: &a0 [x]"]
    lines.extend(
        f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * fanout)}]"
        for level in range(1, levels)
    )
    where = draw(st.sampled_from(["targets", "load", "gate"]))
    return "\n".join([*lines, f"{where}: *a{levels - 1}", ""])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A config-like document dumped as YAML, then mutated: raw hostile values put in place of
    some values, and hostile snippets inserted anywhere."""
    text = yaml.safe_dump(draw(documents), default_flow_style=draw(st.booleans()))
    values_at = [match.end() for match in re.finditer(r": ", text)]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        if values_at:
            at = draw(st.sampled_from(values_at))
            end = text.find("\n", at)
            text = (
                text[:at]
                + draw(st.sampled_from(RAW_VALUES))
                + text[end if end >= 0 else len(text) :]
            )
            values_at = [match.end() for match in re.finditer(r": ", text)]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(SNIPPETS) | st.text(max_size=5)) + text[at:]
    return text


def yaml_texts() -> st.SearchStrategy[str]:
    """Config-like YAML, mostly mutated documents, sometimes deep nesting or alias chains."""
    return st.one_of(mutated(), mutated(), mutated(), nested(), alias_chains())


def test_fuzz_smoke() -> None:
    """A few examples of every fuzz target run even when the time-bounded fuzzing is skipped."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "c.yaml"

        @settings(BATCH, max_examples=10)
        @given(yaml_texts())
        def yaml_target(text: str) -> None:
            path.write_text(text)
            no_traceback(lambda: check_config(path))

        yaml_target()


@pytest.mark.fuzz
def test_fuzz_yaml_configs() -> None:
    """Generated and mutated YAML configs load, or fail with one ConfigError, within a second."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "c.yaml"

        @BATCH
        @given(yaml_texts())
        def target(text: str) -> None:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            no_traceback(lambda: check_config(path))

        fuzz_for(FUZZ_SECONDS, target)


flag_values = st.one_of(st.text(max_size=12), st.sampled_from(WORDS), st.integers().map(str))


@pytest.mark.fuzz
def test_fuzz_flag_sets() -> None:
    """Generated flag sets, as values and through the real CLI parser, give a plan or exit 2."""
    runner = CliRunner()
    names = [flag.name for flag in CONFIG_FLAGS]

    @BATCH
    @given(st.dictionaries(st.sampled_from(names), flag_values, max_size=6))
    def target(flags: dict[str, str]) -> None:
        args = ["validate"]
        for name, value in flags.items():
            args += [f"--{name.replace('_', '-')}", value]
        result = runner.invoke(app, args, env=ENVIRON)
        assert result.exit_code in {0, 2}, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        typed: dict[str, Any] = {name: [value] if name == "url" else value
                                 for name, value in flags.items()}  # fmt: skip
        no_traceback(lambda: check_config(None, overrides_from_flags(typed)))

    fuzz_for(FUZZ_SECONDS, target)


atoms = st.sampled_from([
    "0", "1", "9", "-1", "100000", "10**8", "2**64", "1000000000", "'x'", "''", "'%1000000000d'",
    "'{:>9}'", "'a,b'", "randint(1, 9)", "random()", "uuid4()", "choice([1, 2])", "range(9)",
    "line('/dev/zero')", "ns.s", "i", "lipsum(9)", "[1, 2]", "{}", "namespace(s='x')",
])  # fmt: skip
OPERATORS = [" * ", " + ", " ** ", " % ", " ~ ", " // ", " - ", " if 1 else "]
FILTERS = [
    "|join", "|center(1000000000)", "|indent(9, true)", "|replace('', 'yy')", "|list", "|sum",
    "|format(1)", "|length", "|string", "|int", "|batch(2)|list", "|wordwrap(3)", "|tojson",
    ".ljust(1000000000)", ".replace('', 'y')", ".format(1)", ".join(['a'])", ".upper()",
    ".__class__", "[0]", ".s",
]  # fmt: skip
expressions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map("".join),
        st.tuples(inner, st.sampled_from(FILTERS)).map("".join),
        inner.map(lambda expression: f"({expression})"),
        inner.map(lambda expression: f"[{expression}] * 100000"),
    ),
    max_leaves=6,
)
statements = st.recursive(
    expressions.map(lambda expression: "{{ " + expression + " }}") | st.text(max_size=3),
    lambda body: st.one_of(
        st.tuples(expressions, body).map(lambda p: "{% for i in " + p[0] + " %}" + p[1] + "{% endfor %}"),
        st.lists(body, min_size=2, max_size=3).map("".join),
        body.map(lambda inner: "{% set ns = namespace(s='x') %}" + inner),
        st.tuples(expressions, body).map(lambda p: "{% set ns.s = " + p[0] + " %}" + p[1]),
        body.map(lambda inner: "{% macro f(n) %}" + inner + "{{ f(n) }}{% endmacro %}{{ f(1) }}"),
    ),
    max_leaves=5,
)  # fmt: skip
templates = st.one_of(
    statements, statements, st.lists(st.sampled_from(TEMPLATE_TOKENS) | st.text(max_size=4), max_size=12).map("".join)
)  # fmt: skip


@pytest.mark.fuzz
def test_fuzz_templates() -> None:
    """Generated templates compile, or fail with one TemplateError, within a second of CPU."""

    @BATCH
    @given(templates)
    def target(source: str) -> None:
        no_traceback(lambda: Templates().compile(source, "targets[0].http.url"))

    fuzz_for(FUZZ_SECONDS, target)


HOSTILE_FILES: dict[str, Callable[[Path], Path]] = {
    "/dev/zero": lambda _: Path("/dev/zero"),
    "/dev/urandom": lambda _: Path("/dev/urandom"),
    "a FIFO": lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1],
    "a 2 GB sparse file": lambda d: (os.truncate(_touch(d / "big"), 2 * 1024**3), d / "big")[1],
    "a billion laughs": lambda d: _text(d, billion_laughs()),
    "nesting 20,000 deep": lambda d: _text(d, "targets: " + "[" * 20000 + "]" * 20000),
    "duplicate keys": lambda d: _text(d, "targets: []\ngate: {hold: 1s}\ngate: {hold: 2s}\n"),
    "weight: .inf": lambda d: _text(d, "targets:\n  - {weight: .inf, http: {url: 'http://h/'}}\n"),
    "rate: .inf": lambda d: _text(d, "targets: [{http: {url: 'http://h/'}}]\nload: {rate: .inf}\n"),
    "CR/LF in a header": lambda d: _text(d, 'targets: [{http: {url: "http://h/", headers: {A: "1\\r\\nB: 2"}}}]\n'),
    "CR/LF in the user agent": lambda d: _text(d, 'targets: [{http: {url: "http://h/"}}]\ntraffic: {user_agent: "a\\nb"}\n'),
    "an empty status_dir": lambda d: _text(d, "targets: [{http: {url: 'http://h/'}}]\nstatus_dir: ''\n"),
    "a port of 70000": lambda d: _text(d, "targets: [{http: {url: 'http://h/'}}]\nserver: {port: 70000}\n"),
    "an unknown log_format": lambda d: _text(d, "targets: [{http: {url: 'http://h/'}}]\nlog_format: xml\n"),
    "a 400 MB template": lambda d: _text(d, "targets: [{http: {url: 'http://h/', body: \"{{ 'x' * 400000000 }}\"}}]\n"),
    "a template that loops for minutes": lambda d: _text(d, "targets: [{http: {url: 'http://h/', body: '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'}}]\n"),
    "a 40 KB URL with a password": lambda d: _text(d, f"targets: [{{http: {{url: 'http://bob:pa/ss@h/{'a' * 40000}'}}}}]\n"),
    "a 5000-digit hex number": lambda d: _text(d, f"targets: []\nlog_format: 0x{'f' * 5000}\n"),
    "a list printed as 10¹⁰ zeros": lambda d: _text(d, "targets: [{http: {url: 'http://h/', body: '{{ [[0] * 100000] * 100000 }}'}}]\n"),
    "credentials in a URL": lambda d: _text(d, "targets: [{http: {url: 'http://bob:pa/ss@h/'}}]\n"),
    "a hold as long as the deadline": lambda d: _text(d, "targets: [{http: {url: 'http://h/'}}]\ngate: {hold: 1m, timeout: 1m}\n"),
    "rate caps that cannot fill the window": lambda d: _text(d, "targets: [{rate: 1, http: {url: 'http://h/'}}]\n"),
}  # fmt: skip


def _touch(path: Path) -> Path:
    path.touch()
    return path


def _text(directory: Path, text: str) -> Path:
    path = directory / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_every_hostile_case_is_one_sentence_within_a_second(case: str, tmp_path: Path) -> None:
    """Each config of the hostile sweep is refused with one line, no traceback, within a second
    of CPU."""
    path = HOSTILE_FILES[case](tmp_path)
    stderr = io.StringIO()
    started = time.thread_time()
    with contextlib.redirect_stderr(stderr), pytest.raises(ConfigError) as caught:
        check_config(path)
    assert time.thread_time() - started < CPU_SECONDS
    assert "Traceback" not in stderr.getvalue()
    message = str(caught.value)
    assert message.strip()
    assert "pa/ss" not in message
    # A validation error lists one sentence a line; anything else is one line.
    assert "\n" not in message or message.startswith("the configuration has 1 problem:\n  - ")


def test_no_collection_runs_under_the_first_render_deadline() -> None:
    """The first render pauses the cyclic collector: a gc callback that met the deadline would
    lose the TooSlowError and, with it, the trace, leaving the template unbounded (found by
    test_fuzz_templates, whose Hypothesis registers such a callback)."""
    from warmgate.traffic.template_bounds import deadline

    assert gc.isenabled()
    with deadline(5.0):
        assert not gc.isenabled()
    assert gc.isenabled()
