"""Configuration: durations, env expansion, did-you-mean, flags over file, templates."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from warmgate.config.advice import config_warnings
from warmgate.config.bounded_yaml import MAX_CONFIG_BYTES
from warmgate.config.describe import describe
from warmgate.config.flags import overrides_from_flags
from warmgate.config.loader import load_config, load_for_command
from warmgate.kernel.errors import ConfigError, TemplateError
from warmgate.kernel.redaction import redact_url
from warmgate.kernel.units import format_duration, parse_duration
from warmgate.traffic.targets import compile_targets
from warmgate.traffic.templating import Templates

URL = "http://127.0.0.1:8080/items/1"


def write(tmp_path: Path, text: str) -> Path:
    """A config file with ``text``."""
    path = tmp_path / "warmup.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("10s", 10.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0), ("2.5s", 2.5),
])  # fmt: skip
def test_durations_parse(text: str, seconds: float) -> None:
    """Durations need a unit and may combine parts."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("200", "'200' has no unit; write '200ms' or '200s'"),
    ("10 parsecs", "is not a duration"),
    ("", "empty"),
])  # fmt: skip
def test_bad_durations_say_how_to_fix(text: str, message: str) -> None:
    """A duration without a unit or with a bad one is rejected with the fix."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


def test_format_duration_round_trips_common_values() -> None:
    """Human durations read back as the same seconds."""
    for seconds in (0.25, 1.0, 5.0, 90.0, 300.0, 3600.0):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_yaml_config_loads_with_defaults(tmp_path: Path) -> None:
    """A minimal YAML file gets sensible defaults and named targets."""
    path = write(tmp_path, f"targets:\n  - http: {{url: '{URL}'}}\ngate:\n  p95: 200ms\n")
    config, _ = load_config(path)
    assert config.targets[0].name == "target-1"
    assert config.gate.p95 == pytest.approx(0.2)
    assert config.gate.success_rate == 0.99
    assert config.gate.window == 10.0
    assert config.traffic.headers == {}


def test_flags_override_the_file(tmp_path: Path) -> None:
    """Command-line values win over the file, field by field."""
    path = write(tmp_path, f"targets:\n  - http: {{url: '{URL}'}}\ngate: {{hold: 30s, p95: 1s}}\n")
    overrides = overrides_from_flags({"hold": "5s", "concurrency": 4, "url": None})
    config, _ = load_config(path, overrides)
    assert config.gate.hold == 5.0
    assert config.gate.p95 == 1.0
    assert config.load.concurrency == 4


def test_unknown_key_gets_a_suggestion(tmp_path: Path) -> None:
    """A misspelt key is named with its path and the likely intended key."""
    path = write(tmp_path, f"targets:\n  - http: {{url: '{URL}'}}\ngate:\n  windw: 5s\n")
    with pytest.raises(
        ConfigError, match=re.escape("gate: unknown key 'windw'; did you mean 'window'?")
    ):
        load_config(path)


def test_unknown_nested_key_in_a_target(tmp_path: Path) -> None:
    """Did-you-mean works inside list items too."""
    path = write(tmp_path, f"targets:\n  - http: {{url: '{URL}', methd: GET}}\n")
    with pytest.raises(ConfigError, match=re.escape("targets[0].http: unknown key 'methd'; did you mean 'method'?")):  # fmt: skip
        load_config(path)


def test_duration_without_unit_names_the_field(tmp_path: Path) -> None:
    """'p95: 200' fails naming gate.p95 and saying to write 200ms."""
    path = write(tmp_path, f"targets:\n  - http: {{url: '{URL}'}}\ngate:\n  p95: 200\n")
    with pytest.raises(ConfigError, match=re.escape("gate.p95: '200' has no unit; write '200ms'")):
        load_config(path)


def test_env_expansion_and_secret_redaction(tmp_path: Path) -> None:
    """${VAR} expands; secret-looking variables are redacted from the plan."""
    path = write(
        tmp_path,
        "targets:\n  - http:\n      url: 'http://127.0.0.1:${PORT}/x'\n"
        "      headers: {Authorization: 'Bearer ${API_TOKEN}'}\n"
        "  - sql: {url: 'postgresql://app:${APP_PASSWORD}@db/x', query: SELECT 1}\n",
    )
    env = {"APP_PASSWORD": "hunter2-secret", "PORT": "8080", "API_TOKEN": "tok-123456"}
    config, secrets = load_config(path, environ=env)
    assert config.targets[0].http is not None
    assert config.targets[0].http.url == "http://127.0.0.1:8080/x"
    assert config.targets[0].http.headers == {"Authorization": "Bearer tok-123456"}
    plan = describe(config, secrets)
    assert "hunter2" not in plan
    assert "postgresql://app:***@db/x" in plan
    assert secrets.redact("Bearer tok-123456") == "Bearer ***"


def test_missing_env_var_is_a_config_error(tmp_path: Path) -> None:
    """An unset ${VAR} without a default names the field and the variable."""
    path = write(tmp_path, "targets:\n  - http: {url: 'http://${APP_HOST}/'}\n")
    with pytest.raises(ConfigError, match=re.escape("targets[0].http.url uses ${APP_HOST}")):
        load_config(path, environ={})


def test_env_default_is_used(tmp_path: Path) -> None:
    """${VAR:-default} falls back to the default."""
    path = write(tmp_path, "targets:\n  - http: {url: 'http://${APP_HOST:-127.0.0.1}:80/'}\n")
    config, _ = load_config(path, environ={})
    assert config.targets[0].http is not None
    assert config.targets[0].http.url == "http://127.0.0.1:80/"


def test_write_methods_need_confirmation() -> None:
    """POST is refused unless the user confirms the endpoint only reads."""
    overrides = {"targets": [{"http": {"url": URL, "method": "post"}}]}
    with pytest.raises(ConfigError, match="method POST may change data"):
        load_config(None, overrides)
    overrides["targets"][0]["http"]["confirm_read_only"] = True  # type: ignore[index]
    config, _ = load_config(None, overrides)
    assert config.targets[0].http is not None
    assert config.targets[0].http.method == "POST"


def test_no_targets_says_how_to_give_one() -> None:
    """Without --url or a config file the error says what to add."""
    with pytest.raises(ConfigError, match="give at least one --url"):
        load_config(None, {})


def test_bad_values_are_listed_together() -> None:
    """Several mistakes come back at once, one line each."""
    overrides = {
        "targets": [{"http": {"url": "ftp://x/"}}],
        "load": {"concurrency": 0},
        "gate": {"on_timeout": "maybe"},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    message = str(caught.value)
    assert message.startswith("the configuration has 3 problems:")
    assert "targets[0].http.url: 'ftp://x/' must start with http:// or https://" in message
    assert "load.concurrency: Input should be greater than or equal to 1" in message
    assert "gate.on_timeout: 'maybe' is not allowed" in message


def test_duplicate_target_names() -> None:
    """Two targets with one name are refused."""
    overrides = {"targets": [{"name": "a", "http": {"url": URL}}, {"name": "a", "http": {"url": URL}}]}  # fmt: skip
    with pytest.raises(ConfigError, match="two targets are named 'a'"):
        load_config(None, overrides)


def test_invalid_yaml_points_at_the_line(tmp_path: Path) -> None:
    """Broken YAML names the line."""
    path = write(tmp_path, "targets:\n  - http: {url: 'x'\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d+"):
        load_config(path)


def test_missing_config_file() -> None:
    """A config path that does not exist is a one-sentence error."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Path("/nonexistent/warmup.yaml"))


def test_config_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    """A config saved in another encoding is a sentence saying to save it as UTF-8."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(f"targets:\n  - http: {{url: '{URL}'}}  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8"
    ):
        load_config(path)


@pytest.mark.parametrize(("url", "message"), [
    ("http://[::1/", "targets[0].http.url: 'http://[::1/' is not a valid URL (invalid IPv6 URL); write http://host:port/path"),
    ("http://127.0.0.1:99999/", "targets[0].http.url: 'http://127.0.0.1:99999/' has port '99999'; write a port from 1 to 65535"),
    ("http://127.0.0.1:0/", "has port '0'; write a port from 1 to 65535"),
    ("http://127.0.0.1:80x/", "has port '80x'"),
    ("http:///items", "targets[0].http.url: 'http:///items' has no host"),
    ("http://app:s3cret@[::1/", "'http://app:***@[::1/' carries a user or password"),
])  # fmt: skip
def test_http_urls_need_a_host_and_a_valid_port(url: str, message: str) -> None:
    """A URL that cannot be parsed, or whose port is outside 1..65535, is refused naming the field."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"targets": [{"http": {"url": url}}]})
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_valid_http_urls_keep_their_port() -> None:
    """IPv6 hosts, explicit ports and templated paths pass, and the port is the one written."""
    for url, port in [("http://[::1]:8080/x", 8080), ("https://app.test/x", 443),
                      ("http://127.0.0.1:65535/{{ randint(1, 9) }}", 65535)]:  # fmt: skip
        config, _ = load_config(None, {"targets": [{"http": {"url": url}}]})
        [compiled] = compile_targets(config)
        assert compiled.http is not None
        assert compiled.http.port == port


def test_a_templated_host_is_checked_once_rendered() -> None:
    """A host or port that is a template is checked after its first render, naming the field."""
    config, _ = load_config(None, {"targets": [{"http": {"url": "http://{{ choice(['h:99999']) }}/x"}}]})  # fmt: skip
    with pytest.raises(TemplateError, match=re.escape("targets[0].http.url: once rendered, 'http://h:99999/x' has port '99999'")):  # fmt: skip
        compile_targets(config)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"targets": [{"http": {"url": URL, "timeout": "0s"}}]}, "targets[0].http.timeout: must be longer than 0s; write a duration such as '5s'"),
    ({"load": {"ramp_step": "0ms"}}, "load.ramp_step: must be longer than 0s; write a duration such as '1s'"),
    ({"wait": {"initial_backoff": "2s", "max_backoff": "1s"}}, "wait.max_backoff: 1s is shorter than wait.initial_backoff 2s; raise max_backoff or lower initial_backoff"),
    ({"after_ready": {"rearm_after": "50ms"}}, "after_ready.rearm_after: 50ms is too short to tell a restart from one slow answer; write 0s (never re-arm) or at least 100ms"),
    ({"wait": {"url": "127.0.0.1:8080/ready"}}, "wait.url: '127.0.0.1:8080/ready' must start with http:// or https://"),
    ({"wait": {"url": "http://127.0.0.1:70000/ready"}}, "wait.url: 'http://127.0.0.1:70000/ready' has port '70000'"),
    ({"load": {"rate": 1}}, "load.rate 1 req/s sends at most 10 requests in a gate.window of 10s, fewer than gate.min_requests 20, so the gate could never pass; raise load.rate to at least 2, lengthen gate.window to at least 20s or lower gate.min_requests to 10"),
    ({"load": {"rate": 0.05}}, "raise load.rate to at least 2 or lengthen gate.window to at least 6m40s"),
    ({"load": {"rate": 3}, "gate": {"window": "7s", "min_requests": 22}}, "raise load.rate to at least 3.15,"),
])  # fmt: skip
def test_values_that_cannot_work_are_refused(overrides: dict[str, object], message: str) -> None:
    """Zero timeouts and steps, inverted backoff, a twitchy re-arm, a bad wait URL and a rate
    too low to ever fill the window are refused with a sentence saying how to fix them."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"targets": [{"http": {"url": URL}}], **overrides})
    assert message in str(caught.value)


@pytest.mark.parametrize("overrides", [
    {"after_ready": {"rearm_after": "0s"}},
    {"after_ready": {"rearm_after": "100ms"}},
    {"wait": {"initial_backoff": "1s", "max_backoff": "1s", "url": "https://[::1]/ready"}},
    {"load": {"rate": 2}},
    {"load": {"rate": 0.1}, "gate": {"window": "200s"}},
    {"load": {"rate": 3.15}, "gate": {"window": "7s", "min_requests": 22}},
])  # fmt: skip
def test_values_at_the_limits_are_accepted(overrides: dict[str, object]) -> None:
    """The limits themselves are fine: never re-arm, 100ms, equal backoffs, a rate that just fills the window."""
    assert load_config(None, {"targets": [{"http": {"url": URL}}], **overrides})


def test_templates_render_per_request() -> None:
    """A template renders anew each time; constants never touch Jinja2."""
    templates = Templates()
    template = templates.compile("/items/{{ randint(1, 1000000) }}", "url")
    values = {template.render() for _ in range(20)}
    assert len(values) > 1
    assert all(re.fullmatch(r"/items/\d+", value) for value in values)
    assert templates.compile("/plain", "url").render() == "/plain"


def test_template_functions(tmp_path: Path) -> None:
    """choice, uuid4 and line(path) are available in templates."""
    ids = tmp_path / "ids.txt"
    ids.write_text("a1\n\nb2\n")
    templates = Templates()
    assert templates.compile("{{ choice(['x', 'y']) }}", "t").render() in {"x", "y"}
    assert re.fullmatch(r"[0-9a-f-]{36}", templates.compile("{{ uuid4() }}", "t").render())
    assert templates.compile(f"{{{{ line('{ids}') }}}}", "t").render() in {"a1", "b2"}


@pytest.mark.parametrize(("source", "message"), [
    ("{{ randnt(1, 2) }}", "url: 'randnt' is undefined; the functions are randint"),
    ("{{ randint(1, 2 }}", "url: the template has a syntax error at line 1"),
    ("{{ line('/nonexistent/ids.txt') }}", "url: line('/nonexistent/ids.txt'): /nonexistent/ids.txt does not exist; check the path."),
    ("{{ ''.__class__.__mro__ }}", "url: "),
    ("{{ 1 // 0 }}", "url: the template failed to render (ZeroDivisionError: integer division or modulo by zero); fix the expression."),
    ("{{ range(10**9) | list }}", "url: the template failed to render (OverflowError: "),
    ("{{ {}['missing'] }}", "url: "),
])  # fmt: skip
def test_template_errors_surface_at_start(source: str, message: str) -> None:
    """Template mistakes are caught when compiled, naming the field."""
    with pytest.raises(TemplateError, match=re.escape(message)):
        Templates().compile(source, "url")


def test_compile_targets_finds_the_endpoint() -> None:
    """Compiling a target renders its URL once to learn the host and port."""
    config, _ = load_config(None, {"targets": [{"http": {"url": "https://example.test/x/{{ 1 + 1 }}"}}]})  # fmt: skip
    [compiled] = compile_targets(config)
    assert compiled.http is not None
    assert (compiled.http.host, compiled.http.port, compiled.http.tls) == (
        "example.test",
        443,
        True,
    )


def test_redact_url() -> None:
    """Passwords in URLs are masked; URLs without one are unchanged."""
    assert redact_url("postgresql+psycopg://app:s3cret@db:5432/x") == (
        "postgresql+psycopg://app:***@db:5432/x"
    )
    assert redact_url("http://127.0.0.1:8080/a") == "http://127.0.0.1:8080/a"


def billion_laughs(levels: int = 10) -> str:
    """A YAML alias bomb: ten levels of nine references each, 10⁹ strings once expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join([*lines, f"targets: *a{levels - 1}", ""])


@pytest.mark.parametrize(("text", "message"), [
    (billion_laughs(), "expands to more than 50000 values once its aliases are expanded"),
    ("targets: " + "[" * 20000 + "]" * 20000 + "\n", "is not valid YAML"),
    ("targets:\n" + "".join("  " * i + "- x:\n" for i in range(1, 80)), "nests lists and mappings more than 64 deep (line 33); flatten it."),
    ("a: &a [*a]\ntargets: []\n", "the alias *a (line 1) refers to a node it is inside"),
    (f"targets:\n  - http: {{url: '{URL}'}}\ngate:\n  window: 5s\n  window: 20s\n", "at line 5, column 3: the key 'window' is written twice in one mapping (first at line 4); keep one."),
    (f"targets:\n  - http: {{url: '{URL}'}}\nload: {{concurrency: {'1' * 5000}}}\n", "has a number longer than 64 bits (line 3); quote it if it is text, or write a smaller one."),
    (f"targets:\n  - http: {{url: '{URL}'}}\nstatus_dir: 2001-02-30\n", "has a value YAML cannot build (day is out of range for month); quote it."),
    (f"targets: []\nlog_format: 0x{'f' * 5000}\n", "has a number longer than 64 bits (line 2); quote it if it is text, or write a smaller one."),
    ("targets: *nowhere\n", "the alias *nowhere (line 1) names no anchor written before it; write &nowhere on the node it stands for."),
])  # fmt: skip
def test_hostile_yaml_is_refused_before_it_is_built(
    tmp_path: Path, text: str, message: str
) -> None:
    """Alias bombs, deep nesting, self-reference, duplicate keys and unbuildable values are one sentence each."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_merge_key_may_repeat_what_it_merges(tmp_path: Path) -> None:
    """`<<: *base` then an own value for the same key is an override, not a duplicate."""
    path = write(
        tmp_path,
        f"base: &base {{window: 5s, hold: 1s}}\ntargets:\n  - http: {{url: '{URL}'}}\n"
        "gate: {<<: *base, window: 8s}\n",
    )
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        load_config(path)  # the anchor's home is itself an unknown key; the merge was fine
    path.write_text(f"targets:\n  - http: {{url: '{URL}'}}\n    <<: {{weight: 2}}\n    weight: 3\n")
    config, _ = load_config(path)
    assert config.targets[0].weight == 3


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    """A FIFO, a device and a directory are refused at once by kind; nothing blocks on the FIFO."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path, kind in [(fifo, "a named pipe"), (Path("/dev/zero"), "a device"), (tmp_path, "a directory")]:  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert str(caught.value) == (
            f"--config: {path} is {kind}, not a regular file; give the path of a file."
        )


def test_a_config_larger_than_the_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A sparse 2 GB file is refused by size; one byte under the cap is read."""
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:
        file.truncate(2 * 1024**3)
    message = f"--config: {huge} is larger than 256 KiB, the most a config may hold"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(huge)
    head = f"targets:\n  - http: {{url: '{URL}'}}\n# "
    path = write(tmp_path, head + "x" * (MAX_CONFIG_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(path)[0].targets[0].http is not None


def test_env_expansion_is_bounded(tmp_path: Path) -> None:
    """A value repeated through ${VAR} cannot grow the config past 1 MiB."""
    path = write(tmp_path, f"targets:\n  - http: {{url: '{URL}', body: '{'${BIG}' * 100}'}}\n")
    with pytest.raises(ConfigError, match=re.escape("targets[0].http.body: the ${VAR} references add more than 1024 KiB")):  # fmt: skip
        load_config(path, environ={"BIG": "x" * 100_000})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"targets": [{"http": {"url": URL}, "weight": float("inf")}]}, "targets[0].weight: 'inf' is not a finite number; write a number such as 10."),
    ({"load": {"rate": float("inf")}}, "load.rate: 'inf' is not a finite number"),
    ({"gate": {"success_rate": float("nan")}}, "gate.success_rate: 'nan' is not a finite number"),
    ({"gate": {"timeout": "1" * 400 + "s"}}, "gate.timeout: '111111111111111111111111111111111111111…' is longer than a year; write at most 8784h."),
    ({"gate": {"min_requests": 10**400}}, "gate.min_requests: Input should be less than or equal to 1000000000."),
    ({"targets": [{"http": {"url": URL, "headers": {"X-A": "a\r\nInjected: 1"}}}]}, "targets[0].http.headers: the value of header X-A contains a line break or control character, which would end the header; remove it."),
    ({"targets": [{"http": {"url": URL, "headers": {"X A": "1"}}}]}, "targets[0].http.headers: 'X A' is not a header name"),
    ({"traffic": {"headers": {"X-B": "b\n"}}}, "traffic.headers: the value of header X-B contains a line break"),
    ({"traffic": {"user_agent": "warmgate\r\nX: 1"}}, "traffic.user_agent: contains a line break or control character"),
    ({"targets": [{"http": {"url": "http://127.0.0.1/a\nb"}}]}, "contains a control character (a line break or tab); remove it."),
    ({"status_dir": ""}, "status_dir: is empty; write a directory such as /warmgate, or leave it out."),
    ({"status_dir": "  "}, "status_dir: is empty"),
    ({"server": {"port": 70000}}, "server.port: Input should be less than or equal to 65535."),
    ({"server": {"port": -1}}, "server.port: Input should be greater than or equal to 0."),
    ({"log_format": "xml"}, "log_format: 'xml' is not allowed; input should be 'auto', 'json' or 'human'."),
])  # fmt: skip
def test_values_that_can_never_work_are_refused(overrides: dict[str, object], message: str) -> None:
    """Infinity, NaN, endless durations, header injection, an empty status_dir, ports outside
    0-65535 and unknown log formats are refused naming the field."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"targets": [{"http": {"url": URL}}], **overrides})
    assert message in str(caught.value)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"gate": {"hold": "5m", "timeout": "5m"}}, "gate.hold 5m is not shorter than gate.timeout 5m, so the gate could never pass before the deadline; shorten gate.hold or lengthen gate.timeout."),
    ({"gate": {"timeout": "3s"}}, "gate.hold 5s is not shorter than gate.timeout 3s"),
    ({"targets": [{"name": "db", "rate": 0.5, "http": {"url": URL}}]}, "the targets' rate caps add up to 0.5 req/s, at most 5 requests in a gate.window of 10s, fewer than gate.min_requests 20, so the gate could never pass; raise the caps, lengthen gate.window to at least 40s or lower gate.min_requests to 5."),
    ({"targets": [{"name": "a", "rate": 1, "http": {"url": URL}}, {"name": "b", "rate": 0.5, "http": {"url": URL}}]}, "the targets' rate caps add up to 1.5 req/s"),
    ({"targets": [{"name": "a", "rate": 0.05, "http": {"url": URL}}, {"name": "b", "http": {"url": URL}}]}, "targets 'a' rate 0.05 req/s sends at most 0.5 requests in a gate.window of 10s, fewer than the 10 its weight's share of gate.min_requests asks for, so its check could never pass; raise its rate to at least 1 or lengthen gate.window to at least 3m20s."),
    ({"targets": [{"name": "a", "rate": 0.5, "http": {"url": URL}}, {"name": "b", "http": {"url": URL}}]}, "targets 'a' rate 0.5 req/s sends at most 5 requests in a gate.window of 10s, fewer than the 10 its weight's share of gate.min_requests asks for, so its check could never pass; raise its rate to at least 1 or lengthen gate.window to at least 20s."),
    ({"targets": [{"http": {"url": "http://bob:pa/ss@127.0.0.1/"}}]}, "targets[0].http.url: 'http://bob:***@127.0.0.1/' carries a user or password, which would show wherever the URL does; remove it and send the credentials in a header, such as headers: {Authorization: 'Basic ${APP_BASIC_AUTH}'}."),
    ({"targets": [{"http": {"url": "http://bob@127.0.0.1/"}}]}, "'http://bob@127.0.0.1/' carries a user or password"),
    ({"wait": {"url": "https://u:p@127.0.0.1/ready"}}, "wait.url: 'https://u:***@127.0.0.1/ready' carries a user or password"),
])  # fmt: skip
def test_plans_that_can_never_pass_are_refused(overrides: dict[str, object], message: str) -> None:
    """A hold as long as the deadline, rate caps that cannot fill the window and credentials in
    a URL are refused with the fix."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"targets": [{"http": {"url": URL}}], **overrides})
    assert message in str(caught.value)
    assert "pa/ss" not in str(caught.value)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/users/@me", "http://127.0.0.1/a?who=x@y", "http://[::1]:80/@",
])  # fmt: skip
def test_an_at_sign_in_the_path_is_not_a_credential(url: str) -> None:
    """An @ after the host and port is part of the path, and is accepted."""
    assert load_config(None, {"targets": [{"http": {"url": url}}]})


def test_a_templated_url_that_renders_credentials_is_refused() -> None:
    """Credentials that appear only once the URL renders are refused when targets compile."""
    config, _ = load_config(
        None, {"targets": [{"http": {"url": "http://{{ 'u:secret1\\x40h' }}/"}}]}
    )
    with pytest.raises(TemplateError, match=re.escape("once rendered, 'http://u:***@h/' carries a user or password")):  # fmt: skip
        compile_targets(config)


def test_a_timeout_longer_than_the_window_is_a_warning(tmp_path: Path) -> None:
    """A request timeout above the window still loads, with a warning on stderr naming the fix."""
    overrides = {"targets": [{"http": {"url": URL, "timeout": "20s"}}, {"http": {"url": URL}}]}
    stream = io.StringIO()
    config, _ = load_for_command(None, overrides, stream)
    assert config.targets[0].http is not None
    assert stream.getvalue() == (
        "warmgate: warning: targets[0].http.timeout 20s is longer than gate.window 10s: while "
        "requests hang that long the window holds no answers to judge; shorten the timeout or "
        "lengthen the window.\n"
    )
    assert config_warnings(load_config(None, {"targets": [{"http": {"url": URL}}]})[0]) == []


@pytest.mark.parametrize(("source", "why"), [
    ("{{ 'x' * 400000000 }}", "a repetition with *"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "its output"),
    ("{{ 'x'.ljust(1000000000) }}", "str.ljust"),
    ("{{ 'x'|center(1000000000) }}", "the center filter"),
    ("{{ 'x'|indent(1000000000, true) }}", "the indent filter"),
    ("{{ 'abc'.replace('', 'y' * 900000) }}", "str.replace"),
    ("{{ 'abc'|replace('', 'y' * 900000) }}", "the replace filter"),
    ("{{ ['y' * 900000, 'y' * 900000]|join }}", "the join filter"),
    ("{{ ''.join(['y' * 900000, 'y' * 900000]) }}", "str.join"),
    ("{{ '%1000000000d' % 1 }}", "a % format with a width of a million or more"),
    ("{{ '{:>1000000000}'.format(1) }}", "a format with a width of a million or more"),
    ("{{ '{:>{}}'.format(1, 1000000000) }}", "str.format"),
    ("{{ '%1000000000d'|format(1) }}", "a format with a width of a million or more"),
    ("{{ 7 ** 100000 }}", "a power with 4096+ bits"),
    ("{{ [['y' * 900000], ['y' * 900000]]|sum(start=[])|length }}", "the sum filter"),
    ("{{ [[0] * 100000] * 100000 }}", "a repetition with *"),
    ("{{ ['y' * 900000, 'y' * 900000] }}", "a value it prints"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "a value it builds"),
])  # fmt: skip
def test_a_template_cannot_render_a_huge_value(source: str, why: str) -> None:
    """Whatever builds a value past 1,000,000 characters is refused before it is built."""
    with pytest.raises(TemplateError) as caught:
        Templates().compile(source, "body")
    assert str(caught.value) == (
        f"body: the template would render more than 1,000,000 characters ({why}); render less."
    )


@pytest.mark.parametrize("source", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
])  # fmt: skip
def test_a_template_that_renders_for_long_is_refused_at_start(source: str) -> None:
    """The first render must finish within half a second, even when it outputs nothing."""
    with pytest.raises(TemplateError, match=re.escape("url: the template took more than 0.5s to render once; it renders for every request, so make it do less (smaller loops).")):  # fmt: skip
        Templates().compile(source, "url")


@pytest.mark.parametrize("source", [
    "{% for a in v %}{% for b in v %}{% endfor %}{% endfor %}",
    "{% if v|length > 1 %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}",
])  # fmt: skip
def test_a_render_slow_only_on_some_values_is_interrupted(source: str) -> None:
    """Fast at start-up, slow on a later value (a long capture looped over twice): that render
    stops with a sentence instead of holding the event loop for hours; others still render."""
    template = Templates().compile(source, "url", {"v": "x"})
    with pytest.raises(TemplateError, match=re.escape("url: the template took more than 0.25s to render; it renders for every request, so make it do less (smaller loops, shorter values looped over).")):  # fmt: skip
        template.render({"v": "x" * 100_000})
    assert template.render({"v": "x"}) == ""


def test_a_render_that_finishes_as_its_timer_fires_raises_only_inside_the_bound() -> None:
    """A timer signal that lands as the render returns is raised within the bounded call, never
    later in the caller's code."""
    from warmgate.traffic.template_bounds import TooSlowError, within

    outcomes = []
    for _ in range(200):
        try:
            within(1e-6, lambda: "".join(str(i) for i in range(50)))
        except TooSlowError:
            outcomes.append("too slow")
        else:
            outcomes.append("done")
        sum(range(100))  # bytecode after the call, where a stray signal would raise
    assert set(outcomes) <= {"done", "too slow"}


def test_templates_at_the_bounds_still_render(tmp_path: Path) -> None:
    """A million characters is allowed; lipsum is gone; line() refuses what is not a file."""
    assert len(Templates().compile("{{ 'x' * 1000000 }}", "body").render()) == 1_000_000
    with pytest.raises(TemplateError, match="'lipsum' is undefined"):
        Templates().compile("{{ lipsum(1000000) }}", "body")
    with pytest.raises(TemplateError, match=re.escape("url: line('/dev/zero'): /dev/zero is a device, not a regular file")):  # fmt: skip
        Templates().compile("{{ line('/dev/zero') }}", "url")


def test_a_rendering_past_the_bound_later_is_an_error_naming_the_field() -> None:
    """A template that renders small at start-up but huge later fails that request, naming the field."""
    templates = Templates()
    source = "{{ 'x' * choice([1, 2000000]) }}"
    for _ in range(200):
        with contextlib.suppress(TemplateError):
            template = templates.compile(source, "targets[0].http.body")
            break

    def render_many() -> None:
        for _ in range(200):
            template.render()

    with pytest.raises(TemplateError, match=re.escape("targets[0].http.body: the template would render more than 1,000,000 characters (a repetition with *); render less.")):  # fmt: skip
        render_many()


def test_accept_is_another_name_for_expect_status() -> None:
    """`accept` sets the statuses a plain target or a journey step counts as success."""
    step = {"name": "home", "http": {"url": "http://app:8080/", "accept": [200, "3xx"]}}
    plain = {"http": {"url": "http://app:8080/", "accept": [401]}}
    config, _ = load_config(
        None, {"targets": [plain, {"name": "walk", "journey": {"steps": [step]}}]}
    )
    assert config.targets[0].http is not None
    assert config.targets[0].http.expect_status == [401]
    assert config.targets[1].journey is not None
    assert config.targets[1].journey.steps[0].http.expect_status == [200, "3xx"]
    with pytest.raises(ConfigError, match="write only one of them"):
        load_config(None, {"targets": [{"http": {**plain["http"], "expect_status": [200]}}]})


def test_validate_puts_each_mode_in_words(tmp_path: Path) -> None:
    """The plan says how the ramp judges slow answers, what window: auto needs and why, and
    how an auto quantile is judged; a fixed window reads as before."""
    fixed, secrets = load_config(
        write(tmp_path, "targets: [{http: {url: 'http://127.0.0.1:9/'}}]\n"
                        "gate: {p95: 200ms, window: 5s, hold: 3s}\n")
    )  # fmt: skip
    plan = describe(fixed, secrets)
    assert "over the last 5s of at least 20 requests issued at concurrency 8" in plan
    assert "or once min(level / 2, 2) have answered when its answers take longer than 1s" in plan
    assert "plateau" not in plan

    auto, secrets = load_config(
        write(tmp_path, "targets: [{http: {url: 'http://127.0.0.1:9/'}}]\n"
                        "gate: {p95: 200ms, p99: auto, window: auto, hold: 3s}\n")
    )  # fmt: skip
    assert auto.gate.window == "auto"
    assert auto.gate.span == 60.0
    plan = describe(auto, secrets)
    assert "just enough of the most recent requests" in plan
    assert "with 95% confidence: at least 321" in plan
    assert (
        "success >= 99.0% needs 321 without a failure, more with each; p95 <= 200ms needs 59; "
        "min_requests 20" in plan
    )
    assert "never older than 1m" in plan
    assert "p99 plateau: the quantile of spans of 1s" in plan
    assert "in three groups of 3 spans (3s each)" in plan


def test_window_auto_is_the_only_word_a_window_takes(tmp_path: Path) -> None:
    """window: automatic is a mistake named in one sentence; auto and durations load."""
    path = write(tmp_path, "targets: [{http: {url: 'http://x/'}}]\ngate: {window: automatic}\n")
    with pytest.raises(ConfigError, match=r"gate\.window: 'automatic' is not a duration"):
        load_config(path)
    overrides = overrides_from_flags({"window": "auto"})
    path = write(tmp_path, "targets: [{http: {url: 'http://x/'}}]\n")
    config, _ = load_config(path, overrides=overrides)
    assert config.gate.window == "auto"
