"""URL sets: the `URL [WEIGHT]` file format, its errors by line number, weighted picks."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmgate.config.loader import load_config
from warmgate.kernel.errors import ConfigError
from warmgate.traffic.targets import compile_targets
from warmgate.traffic.templating import Templates
from warmgate.traffic.url_set import load_url_set, parse_line


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("http://a/x", ("http://a/x", 1.0)),
        ("  http://a/x   12  ", ("http://a/x", 12.0)),
        ("http://a/x\t0.5", ("http://a/x", 0.5)),
        ("http://a/{{ randint(1, 5) }}", ("http://a/{{ randint(1, 5) }}", 1.0)),
        ("http://a/{{ randint(1, 5) }} 3", ("http://a/{{ randint(1, 5) }}", 3.0)),
        ("# a comment 3", None),
        ("   ", None),
    ],
)
def test_lines_parse(line: str, parsed: tuple[str, float] | None) -> None:
    """A line is a URL template and an optional weight; comments and blanks are skipped."""
    assert parse_line(line) == parsed


@pytest.mark.parametrize("weight", ["0", "-2", "1e999", "1.2.3"])
def test_a_weight_must_be_a_positive_number(weight: str) -> None:
    """A weight that is zero, negative, infinite or garbled is an error, not part of the URL."""
    with pytest.raises(ValueError, match=f"weight {weight} must be a number above 0"):
        parse_line(f"http://a/x {weight}")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text(text)
    return path


def test_picks_follow_the_weights(tmp_path: Path) -> None:
    """Every pick is a line of the file (templates rendered), chosen in proportion to weight."""
    path = write(
        tmp_path,
        "# mined\nhttp://app:8080/a 3\n\nhttp://app:8080/b/{{ randint(1, 9) }} 1\n",
    )
    urls = load_url_set(path, Templates(), "urls_file")
    random.seed(7)
    picks = Counter(urls.render().rsplit("/", 1)[0] for _ in range(4000))
    assert set(picks) == {"http://app:8080", "http://app:8080/b"}
    assert 0.70 < picks["http://app:8080"] / 4000 < 0.80
    assert urls.first == "http://app:8080/a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://a/x\n/orders/1\n", r"line 2: '/orders/1' is not a URL; write a full URL"),
        ("http://a/x\nhttp://b/y\n", r"line 2: 'http://b' is not the host of line 1"),
        ("http://a/x\nhttp://a/y 0\n", r"line 2: weight 0 must be a number above 0"),
        ("http://a/x\nhttp://a/{{ nope }}\n", r"line 2\.url|line 2: 'nope' is undefined"),
        ("http://a/x\nhttp://a/{{ 1 +\n", r"line 2: the template has a syntax error"),
        ("# only comments\n\n", r"holds no URL"),
        ("http://u:hunter22@a/x\n", r"carries a user or password"),
        ("http://{{ choice(['a']) }}/x\n", r"line 1: the host is a template"),
    ],
)
def test_bad_lines_are_named_by_number(tmp_path: Path, text: str, message: str) -> None:
    """A bad line is a config error naming the file and line, and says how to fix it."""
    with pytest.raises(ConfigError, match=message) as error:
        load_url_set(write(tmp_path, text), Templates(), "targets[0].http.urls_file")
    assert "hunter22" not in str(error.value)


def test_a_target_takes_url_or_urls_file(tmp_path: Path) -> None:
    """Exactly one of url and urls_file; a urls_file target compiles to the first line's host."""
    path = write(tmp_path, "http://127.0.0.1:8081/a\n")
    for http in ({}, {"url": "http://a/", "urls_file": str(path)}):
        with pytest.raises(ConfigError, match=r"exactly one of url .* or urls_file"):
            load_config(None, {"targets": [{"http": http}]}, environ={})
    config, _ = load_config(None, {"targets": [{"http": {"urls_file": str(path)}}]}, environ={})
    (compiled,) = compile_targets(config)
    assert compiled.http is not None
    assert (compiled.http.host, compiled.http.port) == ("127.0.0.1", 8081)


def test_a_missing_urls_file_is_a_config_error(tmp_path: Path) -> None:
    """A urls_file that is not there fails at compile time (validate), naming the field."""
    config, _ = load_config(
        None, {"targets": [{"http": {"urls_file": str(tmp_path / "no.txt")}}]}, environ={}
    )
    with pytest.raises(ConfigError, match=r"targets\[0\]\.http\.urls_file: .* does not exist"):
        compile_targets(config)


def test_a_large_set_gives_back_its_lines_whole(tmp_path: Path) -> None:
    """Past the chunks the loader joins, every pick is still exactly one line's URL."""
    lines = [f"http://app:8080/p/{number}/{'x' * (number % 7)}" for number in range(10_000)]
    urls = load_url_set(write(tmp_path, "\n".join(lines) + "\n"), Templates(), "urls_file")
    random.seed(3)
    picks = {urls.render() for _ in range(20_000)}
    assert len(urls) == 10_000
    assert picks <= set(lines)
    assert len(picks) > 8_000


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a config error, not a traceback."""
    path = tmp_path / "urls.txt"
    path.write_bytes(b"http://a/x\nhttp://a/\xff\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_url_set(path, Templates(), "urls_file")


PATHS = st.from_regex(r"/[A-Za-z0-9/_.?=&%-]{0,30}", fullmatch=True)


@given(
    PATHS,
    st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e6)),
    st.sampled_from([" ", "\t", "   "]),
)
def test_a_written_line_parses_back(path: str, weight: float | None, space: str) -> None:
    """Property: `URL WEIGHT` as warmgate paths writes it parses back to the same pair."""
    url = f"http://app:8080{path}"
    line = url if weight is None else f"{url}{space}{weight!r}"
    assert parse_line(line) == (url, 1.0 if weight is None else weight)
