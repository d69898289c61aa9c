"""The journey engine with plain data: JSON paths, captures, one virtual user's walk."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmgate.decide.walk import (
    MAX_PROGRAM_SIZE,
    Answer,
    CaptureError,
    Extract,
    JsonPathError,
    RegexError,
    Walk,
    compile_regex,
    extract,
    parse_json_path,
    resolve,
    too_slow,
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


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("pattern", "body"),
    [
        (r'.*csrf="([^"]+)"', "<p>" + "a" * MIB + "</p>"),
        (r'.*csrf="([^"]+)"', 'csrf="x' + "x" * MIB),
        (r"^(a+)+$", "a" * 40 + "b"),
        (r"^(a+)+$", "a" * MIB + "b"),
        (r"(a|aa)+$", "a" * MIB + "b"),
        (r"(x+x+)+y", "x" * MIB),
        (r"^(\w+\s?)*$", "word " * (MIB // 5) + "!"),
        (r"(.*a){12}", "a" * 11 + "b" * MIB),
    ],
    ids=["csrf", "csrf-unclosed", "nested-41", "nested-1mib", "alternation", "xx", "words", "n12"],
)
def test_patterns_that_backtrack_catastrophically_end_and_match_nothing(
    pattern: str, body: str
) -> None:
    """Patterns that take Python's re minutes or more on these answers end, finding nothing."""
    with pytest.raises(CaptureError, match="matched nothing in the response"):
        extract(Extract.of("regex", pattern), Answer(200, body=body))


def test_a_catastrophic_pattern_still_finds_a_match_that_is_there() -> None:
    """The same patterns capture what is there, as Python's re would."""
    body = "<p>" + "a" * MIB + '</p><input csrf="t0k3n">'
    assert extract(Extract.of("regex", r'.*csrf="([^"]+)"'), Answer(200, body=body)) == "t0k3n"
    assert extract(Extract.of("regex", r"^(a+)+$"), Answer(200, body="a" * 41)) == "a" * 41


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        (r"(a)\1", "uses a backreference"),
        (r"(?P<t>a)(?P=t)", "uses a backreference"),
        (r"token=(.+?)(?=;)", "uses a lookahead or lookbehind"),
        (r"(?<!x)token=(\w+)", "uses a lookahead or lookbehind"),
        (r"(?>a+)b", "uses an atomic group"),
        (r"a++b", "uses a possessive quantifier"),
        (r"(a)?(?(1)b|c)", "uses a conditional group"),
        (r"end\Z", r"write \z for the end of the text"),
        (r"(?x) a b", "uses the verbose flag"),
        (r"(unclosed", "is not a regular expression captures accept (missing )"),
        ("(?:a|b)*a" + "[ab]{1000}" * 5, f"more than {MAX_PROGRAM_SIZE}; simplify it"),
    ],
)
def test_a_regex_that_cannot_run_in_linear_time_is_refused_with_the_fix(
    pattern: str, said: str
) -> None:
    """What the linear-time engine lacks is named with a way to do without it."""
    with pytest.raises(RegexError, match=re.escape(said)):
        compile_regex(pattern)


def test_a_group_that_took_no_part_is_a_failed_capture() -> None:
    """An optional group that matched nothing gives no value, and says so."""
    with pytest.raises(CaptureError, match="its group took no part in the match"):
        extract(Extract.of("regex", r"(x)?b"), Answer(200, body="abc"))


def test_a_capture_over_its_budget_says_so() -> None:
    """The reason names the regex, the budget and the size of the answer."""
    error = too_slow(Extract.of("regex", "a+b"), Answer(200, body="a" * 2000), 1.0)
    assert str(error) == (
        "the regex `a+b` did not finish within 1s on the response (2,000 characters, "
        "status 200); simplify it"
    )


SIMPLE_REGEXES = st.recursive(
    st.sampled_from(["a", "b", "[ab]", ".", "[^a]", "\\d", "x"]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,3}", "*?", "+?"])).map(
            lambda t: f"(?:{t[0]}){t[1]}"
        ),
        st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})"),
    ),
    max_leaves=6,
)


@given(SIMPLE_REGEXES, st.text(alphabet="abx1 ", max_size=30), st.booleans())
def test_the_engine_finds_what_pythons_re_finds(pattern: str, body: str, grouped: bool) -> None:
    """For patterns both engines read alike, the capture is the one Python's re finds first."""
    if grouped:
        pattern = f"({pattern})"
    found = re.search(pattern, body)
    answer = Answer(200, body=body)
    if found is None:
        with pytest.raises(CaptureError, match="matched nothing"):
            extract(Extract.of("regex", pattern), answer)
    else:
        assert extract(Extract.of("regex", pattern), answer) == found.group(1 if grouped else 0)
