"""`warmgate paths` as a user runs it: the real CLI on files, gzip'd files and standard input."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import typer.main

from tests.helpers import REPO, cli_env, run_cli
from warmgate.cli.main import app

LINE = '10.0.0.{n} - - [29/Nov/2026:12:00:00 +0000] "{method} {target} HTTP/1.1" {status} 12 "-" "ua"\n'


def log_text(*requests: tuple[str, str, int], repeat: int = 1) -> str:
    """NCSA combined lines for ``(method, target, status)`` requests."""
    return "".join(
        LINE.format(n=n % 250, method=method, target=target, status=status)
        for n, (method, target, status) in enumerate(list(requests) * repeat)
    )


SHOP = log_text(
    ("GET", "/account/ann.lee@example.com/orders", 200),
    ("GET", "/unsubscribe/bob%40example.org", 200),
    ("GET", "/", 200),
    ("GET", "/", 200),
    ("GET", "/", 200),
    ("GET", "/order/12", 200),
    ("GET", "/order/345;jsessionid=0123456789ABCDEF?token=hunter2", 200),
    ("GET", "/search?q=socks&session=hunter3", 200),
    ("GET", "/static/site.css", 304),
    ("POST", "/cart", 200),
    ("GET", "/gone", 404),
)


def url_lines(text: str) -> list[tuple[str, int]]:
    """The ``URL WEIGHT`` lines of a URL set, comments skipped."""
    pairs = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        url, weight = line.rsplit(" ", 1)
        pairs.append((url, int(weight)))
    return pairs


def test_a_log_becomes_a_weighted_url_set_without_secrets(tmp_path: Path) -> None:
    """GET 2xx/304 paths ranked by count with templated ids; no query, token, session id or
    e-mail address."""
    log = tmp_path / "access.log"
    log.write_text(SHOP + "a line that is no request\n" + LINE[:40])
    result = run_cli("paths", str(log), "--base-url", "http://127.0.0.1:8080/")
    assert result.returncode == 0, result.stderr
    assert url_lines(result.stdout) == [
        ("http://127.0.0.1:8080/", 3),
        ("http://127.0.0.1:8080/order/{{choice([12,345])}}", 2),
        ("http://127.0.0.1:8080/search", 1),
        ("http://127.0.0.1:8080/static/site.css", 1),
    ]
    assert result.stdout.startswith("# URL set written by warmgate paths from access.log")
    for secret in ("hunter", "jsessionid", "0123456789ABCDEF", "socks", "?", "ann", "bob", "@"):
        assert secret not in result.stdout + result.stderr
    assert "read 13 lines" in result.stderr
    assert "kept 7 requests" in result.stderr
    assert "left out 2 with an e-mail address in the path" in result.stderr
    assert "left out 2 bad lines" in result.stderr
    assert "left out 1 not GET" in result.stderr
    assert "left out 1 with another status" in result.stderr
    assert "give --base-url" not in result.stderr
    relative = run_cli("paths", str(log), "-o", "-")
    assert url_lines(relative.stdout)[0] == ("/", 3)
    assert "the lines are paths: give --base-url" in relative.stderr


def test_gzip_stdin_top_min_count_exclude_and_output_file(tmp_path: Path) -> None:
    """A gzip'd log on stdin, filtered and cut, is written to -o as a file."""
    text = SHOP * 3 + log_text(("GET", "/rare", 200))
    out = tmp_path / "paths.txt"
    completed = subprocess.run(
        [sys.executable, "-m", "warmgate", "paths", "-", "-o", str(out), "--top", "2",
         "--min-count", "2", "--exclude", r"\.css$", "--ids", "range"],
        input=gzip.compress(text.encode()),
        capture_output=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == b""
    assert url_lines(out.read_text()) == [("/", 9), ("/order/{{randint(12,345)}}", 6)]
    stderr = completed.stderr.decode()
    assert "left out 3 excluded by --exclude" in stderr
    assert f"wrote 2 of 4 templates to {out}" in stderr


def test_several_logs_plain_and_gzip_and_a_truncated_one(tmp_path: Path) -> None:
    """Logs add up; a gzip'd log cut short gives what it held and a note, not a failure."""
    plain = tmp_path / "a.log"
    plain.write_text(log_text(("GET", "/a", 200), repeat=5000))  # more bytes than c.log.gz
    packed = tmp_path / "b.log.gz"
    packed.write_bytes(gzip.compress(log_text(("GET", "/b", 200), repeat=3).encode()))
    cut = tmp_path / "c.log.gz"
    cut_text = log_text(("GET", "/c", 200), repeat=2000).encode()
    cut.write_bytes(gzip.compress(cut_text)[:-30])
    result = run_cli("paths", str(plain), str(packed), str(cut))
    assert result.returncode == 0, result.stderr
    lines = dict(url_lines(result.stdout))
    assert (lines["/a"], lines["/b"]) == (5000, 3)
    assert 0 < lines["/c"] <= 2000
    stopped = re.search(rf"{cut}: stopped reading after ([\d,]+) bytes of log", result.stderr)
    assert stopped is not None, result.stderr
    assert 0 < int(stopped.group(1).replace(",", "")) < len(cut_text)  # this log's bytes alone
    assert "the gzip stream ends early" in result.stderr


def test_json_lines_from_stdin_with_named_fields() -> None:
    """JSON lines are detected; --json-field names the fields; bad JSON lines are counted."""
    lines = [
        json.dumps({"req": {"path": "/api/items/7"}, "verb": "GET", "code": 200}),
        json.dumps({"req": {"path": "/api/items/9"}, "verb": "GET", "code": 200}),
        json.dumps({"req": {"path": "/api/items/9"}, "verb": "DELETE", "code": 204}),
        "{not json",
    ]
    result = run_cli(
        "paths", "--json-field", "path=req.path", "--json-field", "method=verb",
        "--json-field", "status=code", stdin="\n".join(lines) + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert url_lines(result.stdout) == [("/api/items/{{choice([7,9])}}", 2)]
    assert "left out 1 bad lines" in result.stderr
    assert "left out 1 not GET" in result.stderr


def test_what_it_writes_is_accepted_by_validate(tmp_path: Path) -> None:
    """Every URL written, templates included, passes `warmgate validate --url`."""
    log = tmp_path / "access.log"
    log.write_text(SHOP + log_text(("GET", "/c/4/invoice/8", 200), ("GET", "/c/5/invoice/9", 200)))
    for ids in ("sample", "range", "keep"):
        result = run_cli("paths", str(log), "--base-url", "http://127.0.0.1:9", "--ids", ids)
        assert result.returncode == 0, result.stderr
        urls = [url for url, _ in url_lines(result.stdout)]
        args = [arg for url in urls for arg in ("--url", url)]
        validated = run_cli("validate", *args)
        assert validated.returncode == 0, validated.stderr


def test_usage_errors_exit_2_with_a_sentence(tmp_path: Path) -> None:
    """A missing log, a bad regex, a bad field spec and a log without requests exit 2."""
    log = tmp_path / "access.log"
    log.write_text(SHOP)
    cases = [
        (["paths", str(log), str(tmp_path / "nope.log")], "nope.log: it does not exist"),
        (["paths", str(tmp_path)], "it is not a file"),
        (["paths", str(log), "--exclude", "("], "--exclude '(': not a regular expression"),
        (["paths", str(log), "--json-field", "url"], "--json-field 'url': write KEY=FIELD"),
        (["paths", str(log), "--base-url", "127.0.0.1:8080"], "--base-url"),
        (["paths", str(log), "--status", "ok"], "--status 'ok'"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    empty = run_cli("paths", stdin="no access log here\n")
    assert empty.returncode == 2
    assert "found no successful GET request" in empty.stderr
    assert "left out 1 bad lines" in empty.stderr


def test_a_full_table_and_a_forced_format_are_reported(tmp_path: Path) -> None:
    """--max-templates caps the table and says what it cost; --format ncsa reads JSON as bad."""
    log = tmp_path / "unique.log"
    log.write_text(log_text(*[("GET", f"/p{n}", 200) for n in range(300)]) + SHOP)
    result = run_cli("paths", str(log), "--max-templates", "20", "--top", "1",
                     env={"WARMGATE_PATHS_IDS": "keep"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert url_lines(result.stdout) == [("/", 3)]
    assert "the template table was full" in result.stderr
    assert "(raise --max-templates, or leave paths out with --exclude)" in result.stderr
    assert "Ids: keep." in result.stdout
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text(json.dumps({"uri": "/a", "method": "GET", "status": 200}) + "\n")
    forced = run_cli("paths", str(jsonl), "--format", "ncsa")
    assert forced.returncode == 2
    assert "left out 1 bad lines" in forced.stderr


def test_the_docs_list_every_option() -> None:
    """docs/paths.md's option table has a row for each option of `warmgate paths`, and no other."""
    command = typer.main.get_command(app).commands["paths"]  # type: ignore[attr-defined]
    options = {opt for param in command.params for opt in param.opts if opt.startswith("--")}
    options.discard("--help")
    table = (REPO / "docs" / "paths.md").read_text().split("## Options", 1)[1]
    documented = set(re.findall(r"^\| (?:`-\w`, )?`(--[\w-]+)", table, re.MULTILINE))
    assert len(options) == 11
    assert documented == options


def test_a_mined_url_set_is_a_target_s_urls_file(tmp_path: Path) -> None:
    """The docs' three commands: mine with --base-url, point urls_file at the file, validate."""
    log = tmp_path / "access.log"
    log.write_text(SHOP)
    urls = tmp_path / "paths.txt"
    mined = run_cli("paths", str(log), "--base-url", "http://127.0.0.1:9", "-o", str(urls))
    assert mined.returncode == 0, mined.stderr
    config = tmp_path / "warmgate.yaml"
    config.write_text(f"targets:\n  - name: pages\n    http:\n      urls_file: {urls}\n")
    validated = run_cli("validate", "--config", str(config))
    assert validated.returncode == 0, validated.stderr
    assert f"a URL from {urls}" in validated.stdout
