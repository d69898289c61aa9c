"""The journey engine with plain data: JSON paths, captures, one virtual user's walk."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmgate.capture import (
    Answer,
    CaptureError,
    Extract,
    JsonPathError,
    Walk,
    extract,
    parse_json_path,
    resolve,
)

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
SCALARS = st.one_of(st.text(max_size=10), st.integers(), st.booleans())


def test_json_path_segments() -> None:
    """Names, quoted names and indexes, negative ones included, become segments."""
    assert parse_json_path("$.data.items[0].id") == ("data", "items", 0, "id")
    assert parse_json_path("$['a key'][\"b\"][-1]") == ("a key", "b", -1)
    assert parse_json_path("$") == ()


@pytest.mark.parametrize("path", ["token", "$.items[*]", "$..id", "$.a[1:2]", "$.a[?@.x]", "$."])
def test_json_path_outside_the_subset_is_refused(path: str) -> None:
    """Wildcards, slices, filters and descendants select many values: refused, with a fix."""
    with pytest.raises(JsonPathError, match=r"must start with|names and list indexes"):
        parse_json_path(path)


@st.composite
def nested(draw: st.DrawFn) -> tuple[Any, str, Any]:
    """A JSON document, a path into it written as a string, and the value at that path."""
    leaf: Any = draw(SCALARS)
    value: Any = leaf
    path = ""
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            name = draw(NAMES)
            value = {**draw(st.dictionaries(NAMES, SCALARS, max_size=2)), name: value}
            path = f".{name}{path}" if draw(st.booleans()) else f"['{name}']{path}"
        else:
            before = draw(st.lists(SCALARS, max_size=2))
            path = f"[{len(before)}]{path}"
            value = [*before, value]
    return value, "$" + path, leaf


@given(nested())
def test_a_path_written_to_a_value_finds_it(case: tuple[Any, str, Any]) -> None:
    """Property: a path built along a document reaches the value it was built to."""
    document, path, leaf = case
    assert resolve(json.loads(json.dumps(document)), parse_json_path(path)) == leaf


def test_json_capture_and_its_reasons() -> None:
    """A JSON capture gives scalars as text; a miss says what was missing and the status."""
    answer = Answer(200, body='{"token": "abc", "n": 3, "ok": true, "user": {"id": 7}}')
    assert extract(Extract.of("json", "$.token"), answer) == "abc"
    assert extract(Extract.of("json", "$.n"), answer) == "3"
    assert extract(Extract.of("json", "$.ok"), answer) == "true"
    assert extract(Extract.of("json", "$.user.id"), answer) == "7"
    with pytest.raises(CaptureError) as missing:
        extract(Extract.of("json", "$.jwt"), answer)
    assert str(missing.value) == "no `$.jwt` in the response (status 200)"
    with pytest.raises(CaptureError, match=r"`\$.user` is an object, not one value"):
        extract(Extract.of("json", "$.user"), answer)
    with pytest.raises(CaptureError, match=r"not JSON \(status 502\)"):
        extract(Extract.of("json", "$.token"), Answer(502, body="<html>bad gateway"))


def test_header_cookie_and_regex_captures() -> None:
    """Headers match whatever their case; cookies come from the jar; a regex gives its group."""
    answer = Answer(
        200,
        headers=[("location", "/next"), ("X-Csrf", "t1")],
        cookies={"SESSION": "s1"},
        body='<input name="csrf" value="f00">',
    )
    assert extract(Extract.of("header", "Location"), answer) == "/next"
    assert extract(Extract.of("cookie", "SESSION"), answer) == "s1"
    assert extract(Extract.of("regex", r'name="csrf" value="([^"]+)"'), answer) == "f00"
    assert extract(Extract.of("regex", r"f0+"), answer) == "f00"
    with pytest.raises(CaptureError, match="no header `ETag`"):
        extract(Extract.of("header", "ETag"), answer)
    with pytest.raises(CaptureError, match="no cookie `JSESSIONID`"):
        extract(Extract.of("cookie", "JSESSIONID"), answer)
    with pytest.raises(CaptureError, match="matched nothing"):
        extract(Extract.of("regex", "nope"), answer)


def test_walk_runs_steps_in_order_and_starts_again_empty() -> None:
    """Steps come in order; captures accumulate; a new iteration starts with no variables."""
    walk = Walk(["login", "home", "orders"], [False, True, True])
    assert (walk.upcoming(), walk.judged()) == (0, False)
    walk.succeeded({"token": "t"})
    assert (walk.upcoming(), walk.judged(), walk.variables) == (1, True, {"token": "t"})
    walk.succeeded({})
    walk.succeeded({})
    assert (walk.upcoming(), walk.iteration, walk.variables) == (0, 1, {})


def test_a_failure_fails_the_rest_of_the_iteration() -> None:
    """After a failure the judged steps left fail with its reason; unjudged ones are passed."""
    walk = Walk(["login", "home", "token", "orders"], [True, True, False, True])
    walk.succeeded({})
    failure = walk.failed("capture_failed", "no `$.token` in the response (status 200)")
    assert failure.detail == "step 'home': no `$.token` in the response (status 200)"
    assert walk.upcoming() == 3  # "token" is not judged: passed over
    assert walk.skipped() == failure
    assert (walk.upcoming(), walk.iteration, walk.failure) == (0, 1, None)


@given(st.lists(st.booleans(), min_size=1, max_size=6), st.lists(st.booleans(), max_size=60))
def test_walk_invariants(judged: list[bool], results: list[bool]) -> None:
    """Property: a failed iteration never offers an unjudged step, nor sends one; variables
    never survive into a new iteration; the position is always a step."""
    judged[0] = judged[0] or not any(judged)
    walk = Walk([f"s{i}" for i in range(len(judged))], judged)
    for ok in results:
        iteration = walk.iteration
        index = walk.upcoming()
        assert 0 <= index < len(judged)
        if walk.iteration != iteration:
            assert walk.variables == {}
        if walk.failure is not None:
            assert judged[index]
            walk.skipped()
        elif ok:
            walk.succeeded({f"v{walk.iteration}": "x"})
            assert set(walk.variables) == {f"v{walk.iteration}"}
        else:
            walk.failed("timeout", "timed out")


def test_walk_needs_a_judged_step() -> None:
    """A walk where nothing is judged is refused (the config refuses it first)."""
    with pytest.raises(ValueError, match="one judged"):
        Walk(["a"], [False])
    with pytest.raises(ValueError, match="only a failed iteration"):
        Walk(["a"], [True]).skipped()


def test_json_nested_too_deep_to_parse_is_a_failed_capture() -> None:
    """An answer nested deeper than the parser goes is a capture that found nothing."""
    deep = Answer(200, body="[" * 200_000)
    with pytest.raises(CaptureError, match=r"no `\$.a` in the response: it is not JSON"):
        extract(Extract.of("json", "$.a"), deep)
