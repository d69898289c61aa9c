"""Access-log parsing and path counting, with plain data: real log lines and Hypothesis."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmgate.kernel.errors import ConfigError
from warmgate.paths.accesslog import (
    JsonFields,
    LogFormat,
    TruncatedError,
    detect,
    gunzip,
    parse_json,
    parse_ncsa,
    whole_lines,
)
from warmgate.paths.pathstats import IdMode, PathCounter, Policy, path_of, statuses_from, token_like
from warmgate.traffic.templating import Templates

# Written by Tomcat 10.1.60's AccessLogValve here, pattern "combined" (and "common" below).
TOMCAT_COMBINED = b"""\
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET / HTTP/1.1" 200 3 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /order/1 HTTP/1.1" 200 2 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /order/1;jsessionid=ABC123?x=1&token=secret HTTP/1.1" 200 2 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /missing HTTP/1.1" 404 768 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /index.html?q=a%20b HTTP/1.1" 200 3 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "POST / HTTP/1.1" 200 3 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "HEAD / HTTP/1.1" 200 - "-" "curl/7.88.1"
"""
TOMCAT_COMMON = b'127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /order/7 HTTP/1.1" 200 -\n'
# Apache httpd's documented common log format example (%h %l %u %t \"%r\" %>s %b).
APACHE_COMMON = (
    b'127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326\n'
)
# nginx writes bytes it must not log raw as \xHH, and a bad request line as it came.
NGINX_ODD = b"""\
127.0.0.1 - - [29/Nov/2026:12:10:01 +0000] "GET /caf\\xC3\\xA9 HTTP/1.1" 200 5 "-" "curl/7.88.1"
127.0.0.1 - - [29/Nov/2026:12:10:01 +0000] "\\x16\\x03\\x01\\x00" 400 157 "-" "-"
127.0.0.1 - - [29/Nov/2026:12:10:01 +0000] "GET http://app.example/order/9 HTTP/1.1" 200 5 "-" "-"
"""


def count(log: bytes, policy: Policy | None = None) -> PathCounter:
    """A counter fed ``log`` in one chunk."""
    counter = PathCounter(policy or Policy())
    counter.add(parse_ncsa(log))
    return counter


def urls(counter: PathCounter) -> dict[str, int]:
    """The URL set as a dict of URL to weight."""
    return {line.url: line.weight for line in counter.ranked()}


def test_tomcat_lines_keep_successful_gets_without_queries_or_session_ids() -> None:
    """GET 2xx lines count by path; the query, ;jsessionid, POST, HEAD and 404 stay out."""
    counter = count(TOMCAT_COMBINED + TOMCAT_COMMON, Policy(ids=IdMode.KEEP))
    assert urls(counter) == {"/order/1": 2, "/": 1, "/index.html": 1, "/order/7": 1}
    tally = counter.tally
    assert (tally.lines, tally.bad, tally.kept) == (8, 0, 5)
    assert (tally.other_method, tally.other_status) == (2, 1)
    text = " ".join(urls(counter))
    assert "jsessionid" not in text
    assert "secret" not in text
    assert "ABC123" not in text


def test_apache_common_line_is_read() -> None:
    """The common log format example from Apache httpd's documentation is one kept request."""
    assert urls(count(APACHE_COMMON)) == {"/apache_pb.gif": 1}


def test_a_status_may_end_the_line() -> None:
    """A pattern ending in the status (Tomcat's %h %t "%r" %s), CRLF or not, is read."""
    log = b'h [t] "GET /a HTTP/1.1" 200\nh [t] "GET /b HTTP/1.1" 200\r\nh [t] "GET /c HTTP/1.1" 200'
    assert urls(count(log)) == {"/a": 1, "/b": 1, "/c": 1}
    assert count(b'h [t] "GET /a HTTP/1.1" 2000 1\n').tally.bad == 1


def test_escaped_bytes_and_absolute_form_targets() -> None:
    """A \\xHH-escaped path is left out as unusable, a TLS handshake on the port is a 400, and a
    proxy-style absolute target counts by its path."""
    counter = count(NGINX_ODD, Policy(ids=IdMode.KEEP))
    assert urls(counter) == {"/order/9": 1}
    assert (counter.tally.unusable, counter.tally.bad) == (1, 1)


def test_malformed_and_truncated_lines_are_counted_as_bad() -> None:
    """Garbage, a line cut mid-request, a blank line and a non-numeric status are bad, not fatal."""
    log = (
        b"not a log line at all\n"
        b'127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /order/1 HTT\n'
        b"\n"
        b'127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /a HTTP/1.1" OK 3\n'
        b'127.0.0.1 - - [29/Nov/2026:12:02:29 +0000] "GET /kept HTTP/1.1" 200 3'
    )
    parsed = parse_ncsa(log)
    assert (parsed.lines, parsed.bad) == (5, 4)
    assert parsed.requests == Counter({(b"GET", b"/kept", b"200"): 1})


def test_ids_become_a_sample_of_real_ids_by_default() -> None:
    """/order/N paths count as one template that picks among the ids seen."""
    log = b"".join(b'h - - [t] "GET /order/%d HTTP/1.1" 200 1\n' % n for n in (5, 17, 17, 300))
    assert urls(count(log)) == {"/order/{{choice([5,17,300])}}": 4}


def test_an_id_may_carry_an_extension() -> None:
    """/article/12.html and /article/345.html are one template; /v1.2 and /a.b.c are names."""
    log = b"".join(
        b'h - - [t] "GET %s HTTP/1.1" 200 1\n' % path
        for path in (b"/article/12.html", b"/article/345.html", b"/api/1.2", b"/api/2.2",
                     b"/f/3.tar.gz", b"/f/4.tar.gz")
    )  # fmt: skip
    assert urls(count(log)) == {
        "/article/{{choice([12,345])}}.html": 2,
        "/api/1.2": 1,
        "/api/2.2": 1,
        "/f/3.tar.gz": 1,
        "/f/4.tar.gz": 1,
    }


def test_range_mode_writes_randint_over_the_range_seen() -> None:
    """--ids range writes randint(LOW,HIGH) per slot; a slot that never varied stays literal."""
    log = b"".join(
        b'h - - [t] "GET /c/%d/invoice/%d HTTP/1.1" 200 1\n' % pair
        for pair in ((3, 10), (3, 99), (3, 42))
    )
    assert urls(count(log, Policy(ids=IdMode.RANGE))) == {"/c/3/invoice/{{randint(10,99)}}": 3}


def test_several_slots_are_sampled_together() -> None:
    """A customer's invoice is never paired with another customer: slots are sampled as tuples."""
    log = b"".join(
        b'h - - [t] "GET /c/%d/invoice/%d HTTP/1.1" 200 1\n' % pair for pair in ((1, 10), (2, 20))
    )
    assert urls(count(log)) == {'/c/{{choice(["1/invoice/10","2/invoice/20"])}}': 2}


def test_leading_zeros_and_token_like_segments() -> None:
    """/007 is a name, not an id; a UUID or a long mixed token leaves its path out entirely."""
    log = (
        b'h - - [t] "GET /agent/007 HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /reset/0b1f6c2e-8f0a-4a53-9d7e-2f1c3b4a5d6e HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /confirm/Zm9vYmFyYmF6cXV4MTIzNDU2 HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /static/app.3f2a9c1b.js HTTP/1.1" 200 1\n'
    )
    counter = count(log)
    assert urls(counter) == {"/agent/007": 1, "/static/app.3f2a9c1b.js": 1}
    assert counter.tally.token_like == 2


def test_a_path_holding_an_e_mail_address_is_left_out() -> None:
    """An e-mail address in a path segment (its @ as is or %40) leaves the path out, counted;
    an image's scale (logo@2x.png) and a scoped package (/@scope/) are not addresses."""
    log = (
        b'h - - [t] "GET /users/ann.lee@example.com/orders HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /unsubscribe/bob%40mail.example.co.uk HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /u/17/ann+shop@example.org HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /users/42?email=ann@example.com HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /img/logo@2x.png HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /npm/@scope/pkg HTTP/1.1" 200 1\n'
    )
    for mode in IdMode:
        counter = count(log, Policy(ids=mode))
        assert counter.tally.personal == 3
        written = urls(counter)
        assert "/img/logo@2x.png" in written
        assert "/npm/@scope/pkg" in written
        assert not any("example" in url for url in written)


def test_statuses_and_exclude() -> None:
    """--status decides which answers count; --exclude drops matching paths before counting."""
    log = (
        b'h - - [t] "GET /a HTTP/1.1" 304 0\n'
        b'h - - [t] "GET /b HTTP/1.1" 302 0\n'
        b'h - - [t] "GET /style.css HTTP/1.1" 200 0\n'
    )
    assert urls(count(log)) == {"/a": 1, "/style.css": 1}
    only_200 = Policy(statuses=statuses_from(["200"]), exclude=(re.compile(r"\.css$"),))
    counter = count(log, only_200)
    assert urls(counter) == {}
    assert (counter.tally.other_status, counter.tally.excluded) == (2, 1)
    assert len(statuses_from(["2xx,304", "404"])) == 102
    with pytest.raises(ConfigError, match="--status '2x'"):
        statuses_from(["2x"])


def test_ranking_top_and_min_count() -> None:
    """Most frequent first, ties by URL; top cuts the list; min_count drops rare templates."""
    log = b"".join(
        b'h - - [t] "GET %s HTTP/1.1" 200 1\n' % path
        for path in (b"/b", b"/a", b"/c", b"/c", b"/c", b"/a")
    )
    counter = count(log)
    assert [(line.url, line.weight) for line in counter.ranked()] == [
        ("/c", 3), ("/a", 2), ("/b", 1),
    ]  # fmt: skip
    assert [line.url for line in counter.ranked(top=1)] == ["/c"]
    assert [line.url for line in counter.ranked(min_count=2)] == ["/c", "/a"]


def test_the_table_is_pruned_past_its_cap() -> None:
    """A log of unique paths keeps at most max_templates templates; evictions are counted."""
    log = b"".join(b'h - - [t] "GET /p%d HTTP/1.1" 200 1\n' % n for n in range(1000))
    counter = count(log + b'h - - [t] "GET /hot HTTP/1.1" 200 1\n' * 5, Policy(max_templates=100))
    assert counter.templates <= 100
    assert counter.ranked()[0].url == "/hot"
    assert counter.tally.evicted_requests == counter.tally.evicted_templates == 1001 - 50


@pytest.mark.parametrize("mode", list(IdMode))
def test_huge_paths_are_bounded_by_bytes(mode: IdMode) -> None:
    """Long unique paths fill max_bytes before max_templates; the table stays under it."""
    policy = Policy(ids=mode, max_bytes=20_000, sample_size=3)
    counter = PathCounter(policy)
    for batch in range(10):
        long = b"a.b" * 170  # long, but not token-like
        paths = [b"/a.%d/%s" % (batch * 100 + n, long) for n in range(100)]
        paths += [b"/b.%d/%s/%d" % (n % 7, long, batch * 100 + n) for n in range(100)]
        counter.add(parse_ncsa(ncsa_log([(b"GET", p, b"", b"200") for p in paths], [])))
        assert counter.held_bytes <= policy.max_bytes
        assert counter.held_bytes >= 0
    assert counter.tally.evicted_templates > 0
    assert sum(line.weight for line in counter.ranked()) + counter.tally.evicted_requests == 2000


def test_path_of() -> None:
    """Path parameters go from every segment; targets that are not paths are unusable."""
    assert path_of(b"/a;x=1/b;jsessionid=Z") == b"/a/b"
    assert path_of(b"https://host:8443") == b"/"
    assert path_of(b"*") is None
    assert token_like(b"/x/0b1f6c2e-8f0a-4a53-9d7e-2f1c3b4a5d6e")
    assert not token_like(b"/a-very-long-plain-english-slug")


def test_json_lines_with_default_and_named_fields() -> None:
    """nginx-style and ECS-style JSON lines are read; --json-field names other fields."""
    log = b"\n".join(
        [
            json.dumps({"request_uri": "/a?token=x", "method": "GET", "status": 200}).encode(),
            json.dumps({"url": {"path": "/b"}, "http": {"request": {"method": "get"},
                                                         "response": {"status_code": 304}}}).encode(),
            json.dumps({"request": "GET /c HTTP/1.1", "status": "200"}).encode(),
            b'{"broken": ',
            b"[1, 2]",
            json.dumps({"uri": "/d", "method": "GET"}).encode(),
        ]
    )  # fmt: skip
    parsed = parse_json(log, JsonFields())
    assert (parsed.lines, parsed.bad) == (6, 3)
    assert set(parsed.requests) == {
        (b"GET", b"/a", b"200"), (b"GET", b"/b", b"304"), (b"GET", b"/c", b"200"),
    }  # fmt: skip
    named = JsonFields().with_overrides(["path=p", "status=s", "method=m"])
    line = json.dumps({"p": "/e", "s": 201, "m": "GET", "status": 500}).encode()
    assert parse_json(line, named).requests == Counter({(b"GET", b"/e", b"201"): 1})
    with pytest.raises(ConfigError, match="--json-field 'paht=x'"):
        JsonFields().with_overrides(["paht=x"])


def test_detect() -> None:
    """A first line starting with { is JSON lines; anything else is read as NCSA."""
    assert detect(b'  {"a": 1}') is LogFormat.JSON
    assert detect(TOMCAT_COMMON) is LogFormat.NCSA


def test_whole_lines_bounds_an_endless_line() -> None:
    """Chunks end at line ends; a line without an end past the limit becomes one blank line."""
    assert list(whole_lines([b"ab\ncd", b"ef\ngh"])) == [b"ab\n", b"cdef\n", b"gh"]
    chunks = list(whole_lines([b"ab\n" + b"x" * 10, b"y" * 10, b"zz\nok\n"], max_line=5))
    assert chunks == [b"ab\n\n", b"ok\n"]
    assert list(whole_lines([b"x" * 10, b"y" * 10], max_line=5)) == [b"\n"]


def test_gunzip_members_padding_and_truncation() -> None:
    """Concatenated members and zero padding decompress; a cut stream yields what it can."""
    data = b"line one\nline two\n" * 1000
    stream = gzip.compress(data) + gzip.compress(data) + b"\0" * 10
    pieces = [stream[i : i + 100] for i in range(0, len(stream), 100)]
    assert b"".join(gunzip(pieces, 1000)) == data + data
    assert all(len(piece) <= 1000 for piece in gunzip(pieces, 1000))
    got: list[bytes] = []
    with pytest.raises(TruncatedError, match="ends early"):
        got.extend(gunzip([gzip.compress(data)[:-20]], 1 << 20))
    assert data.startswith(b"".join(got))
    assert got
    with pytest.raises(TruncatedError, match="corrupt"):
        list(gunzip([gzip.compress(data) + b"junk after it"], 1 << 20))
    assert list(gunzip([], 10)) == []


def test_gunzip_bounds_a_bomb() -> None:
    """Highly compressible input is inflated piece by piece, never in one allocation."""
    compressed = gzip.compress(b"\n" * 5_000_000)
    sizes = [len(piece) for piece in gunzip([compressed], 65536)]
    assert max(sizes) <= 65536
    assert sum(sizes) == 5_000_000


METHODS = st.sampled_from([b"GET", b"GET", b"GET", b"POST", b"HEAD"])
STATUSES = st.sampled_from([b"200", b"200", b"304", b"404", b"500", b"302"])
SEGMENT = st.one_of(
    st.sampled_from([b"order", b"customer", b"static", b"app.js", b"a-b_c", b"007", b"9.html"]),
    st.integers(0, 10**6).map(lambda n: b"%d" % n),
)
PATH = st.lists(SEGMENT, min_size=0, max_size=4).map(lambda parts: b"/" + b"/".join(parts))
SECRET = b"s3cr3tS3cr3tValue"
SUFFIX = st.sampled_from([b"", b"?token=" + SECRET, b";jsessionid=" + SECRET, b"?a=1"])
REQUEST = st.tuples(METHODS, PATH, SUFFIX, STATUSES)
GARBAGE = st.binary(max_size=40).filter(lambda b: b"\n" not in b)


def ncsa_log(requests: list[tuple[bytes, bytes, bytes, bytes]], garbage: list[bytes]) -> bytes:
    """Requests as NCSA combined lines, with garbage lines in between."""
    lines = [
        b'10.0.0.1 - - [29/Nov/2026:12:00:00 +0000] "%s %s%s HTTP/1.1" %s 12 "-" "ua"'
        % (method, path, suffix, status)
        for method, path, suffix, status in requests
    ]
    for index, junk in enumerate(garbage):
        lines.insert(index * 3 % (len(lines) + 1), junk)
    return b"".join(line + b"\n" for line in lines)


@settings(max_examples=150, deadline=None)
@given(
    requests=st.lists(REQUEST, max_size=60),
    garbage=st.lists(GARBAGE, max_size=5),
    cuts=st.lists(st.integers(1, 400), max_size=8),
    mode=st.sampled_from(list(IdMode)),
)
def test_every_line_is_accounted_for_however_the_log_is_cut(
    requests: list[tuple[bytes, bytes, bytes, bytes]],
    garbage: list[bytes],
    cuts: list[int],
    mode: IdMode,
) -> None:
    """Lines split into kept and left-out counts that add up, whatever the read sizes, and the
    result is the same as reading the log in one piece."""
    log = ncsa_log(requests, garbage)
    blocks, start = [], 0
    for size in cuts:
        blocks.append(log[start : start + size])
        start += size
    blocks.append(log[start:])
    cut = PathCounter(Policy(ids=mode))
    for chunk in whole_lines(blocks):
        cut.add(parse_ncsa(chunk))
    whole = count(log, Policy(ids=mode))
    assert cut.tally == whole.tally
    assert cut.ranked() == whole.ranked()
    t = whole.tally
    assert t.lines == len(requests) + len(garbage)
    left_out = (
        t.bad
        + t.other_method
        + t.other_status
        + t.unusable
        + t.token_like
        + t.personal
        + t.excluded
    )
    assert t.kept + left_out == t.lines
    assert sum(line.weight for line in whole.ranked()) == t.kept
    expected_kept = sum(1 for m, _, _, s in requests if m == b"GET" and s in {b"200", b"304"})
    assert t.kept == expected_kept


@settings(max_examples=100, deadline=None)
@given(requests=st.lists(REQUEST, min_size=1, max_size=60), mode=st.sampled_from(list(IdMode)))
def test_no_secret_or_query_reaches_the_url_set(
    requests: list[tuple[bytes, bytes, bytes, bytes]], mode: IdMode
) -> None:
    """No query string, path parameter or their values are ever written."""
    text = "\n".join(line.url for line in count(ncsa_log(requests, []), Policy(ids=mode)).ranked())
    assert SECRET.decode() not in text
    assert "?" not in text
    assert ";" not in text


@settings(max_examples=60, deadline=None)
@given(requests=st.lists(REQUEST, min_size=1, max_size=40))
def test_sampled_templates_render_only_paths_that_were_seen(
    requests: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    """Each template compiles in warmgate's sandbox and every rendering is a path from the log."""
    counter = count(ncsa_log(requests, []), Policy(ids=IdMode.SAMPLE, sample_size=5))
    seen = {
        path.decode()
        for method, path, _, status in requests
        if method == b"GET" and status in {b"200", b"304"}
    }
    templates = Templates()
    for line in counter.ranked():
        template = templates.compile(line.url, "test")
        for _ in range(5):
            assert template.render() in seen


@settings(max_examples=60, deadline=None)
@given(
    paths=st.lists(st.integers(1, 5000).map(lambda n: b"/p%d" % n), min_size=1, max_size=300),
    cap=st.integers(2, 40),
)
def test_the_table_never_outgrows_its_cap_after_a_chunk(paths: list[bytes], cap: int) -> None:
    """After every chunk the table holds at most max_templates; kept requests all add up."""
    counter = PathCounter(Policy(max_templates=cap))
    for start in range(0, len(paths), 50):
        counter.add(
            parse_ncsa(ncsa_log([(b"GET", p, b"", b"200") for p in paths[start : start + 50]], []))
        )
        assert counter.templates <= cap
    total = sum(line.weight for line in counter.ranked())
    assert total + counter.tally.evicted_requests == counter.tally.kept == len(paths)


@settings(max_examples=80, deadline=None)
@given(
    ids=st.lists(st.integers(1, 10**6), min_size=1, max_size=200),
    size=st.integers(1, 12),
    chunk=st.integers(1, 50),
)
def test_the_sample_is_the_bottom_k_of_distinct_paths_by_crc(
    ids: list[int], size: int, chunk: int
) -> None:
    """The ids written are exactly the `size` distinct paths with the smallest CRC-32, however
    the log is chunked (a uniform, reproducible sample)."""
    counter = PathCounter(Policy(sample_size=size))
    requests = [(b"GET", b"/order/%d" % n, b"", b"200") for n in ids]
    for start in range(0, len(requests), chunk):
        counter.add(parse_ncsa(ncsa_log(requests[start : start + chunk], [])))
    distinct = sorted({b"/order/%d" % n for n in ids}, key=zlib.crc32)[:size]
    expected = sorted(int(path.rsplit(b"/", 1)[1]) for path in distinct)
    [line] = counter.ranked()
    assert line.weight == len(ids)
    if len(expected) == 1:
        assert line.url == f"/order/{expected[0]}"
    else:
        assert line.url == f"/order/{{{{choice([{','.join(map(str, expected))}])}}}}"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    objects=st.lists(
        st.one_of(
            JSON_VALUES,
            st.fixed_dictionaries(
                {"request_uri": st.text(max_size=12), "method": st.sampled_from(["GET", "POST", 1]),
                 "status": st.one_of(st.integers(0, 999), st.text(max_size=3))}
            ),
        ),
        max_size=20,
    )
)  # fmt: skip
def test_any_json_line_is_a_request_or_a_bad_line(objects: list[object]) -> None:
    """Whatever JSON a line holds, it is counted once: as a request or as a bad line."""
    log = b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)
    parsed = parse_json(log, JsonFields())
    assert parsed.lines == len(objects)
    assert parsed.bad + sum(parsed.requests.values()) == len(objects)
    for method, target, status in parsed.requests:
        assert b"\n" not in target
        assert b"?" not in target
        assert status.isdigit()
        assert len(status) == 3
        assert method.isupper() or not method.isalpha()


@settings(max_examples=200, deadline=None)
@given(
    chunk=st.binary(max_size=300)
    | st.lists(
        st.sampled_from(
            [b"] \"", b"GET ", b"/", b"1", b";", b"?", b" HTTP/1.1\" ", b"200", b" ", b"\n",
             b"\\x", b"{", b"http://h", b"\r", b"a" * 25 + b"1", b"\0"]
        ),
        max_size=40,
    ).map(b"".join),
    mode=st.sampled_from(list(IdMode)),
)  # fmt: skip
def test_any_bytes_are_counted_without_error(chunk: bytes, mode: IdMode) -> None:
    """Whatever bytes a log holds, every line is kept or left out for a reason, and every URL
    written is plain ASCII starting with /, without a query or path parameters."""
    counter = count(chunk, Policy(ids=mode))
    t = counter.tally
    left_out = (
        t.bad
        + t.other_method
        + t.other_status
        + t.unusable
        + t.token_like
        + t.personal
        + t.excluded
    )
    assert t.kept + left_out >= t.lines  # a line can hold two requests, never fewer than none
    assert sum(line.weight for line in counter.ranked()) == t.kept
    for line in counter.ranked():
        assert line.url.startswith("/")
        assert line.url.isascii()
        assert line.url.isprintable()
        assert "?" not in line.url
        assert ";" not in line.url


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=600) | st.lists(st.sampled_from([b"a", b"\n", b"bc"]), max_size=80).map(b"".join),
    cuts=st.lists(st.integers(0, 100), max_size=10),
    level=st.integers(0, 9),
)  # fmt: skip
def test_reading_in_pieces_loses_and_adds_nothing(data: bytes, cuts: list[int], level: int) -> None:
    """Re-cut into whole lines, or gzip'd and inflated in pieces, a stream comes back as it was."""
    pieces, start = [], 0
    for size in cuts:
        pieces.append(data[start : start + size])
        start += size
    pieces.append(data[start:])
    chunks = list(whole_lines(pieces, max_line=1000))
    assert b"".join(chunks) == data
    assert all(chunk.endswith(b"\n") for chunk in chunks[:-1])
    packed = gzip.compress(data, compresslevel=level)
    blocks = [packed[i : i + 7] for i in range(0, len(packed), 7)]
    assert b"".join(gunzip(blocks, 50)) == data


@settings(max_examples=60, deadline=None)
@given(requests=st.lists(REQUEST, min_size=1, max_size=40))
def test_range_templates_cover_every_path_seen_and_render_within_it(
    requests: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    """With --ids range, each kept path fits exactly one template, whose renderings keep its
    shape and draw each id from the range that slot saw."""
    counter = count(ncsa_log(requests, []), Policy(ids=IdMode.RANGE))
    seen = {
        path.decode()
        for method, path, _, status in requests
        if method == b"GET" and status in {b"200", b"304"}
    }
    shapes = {}
    for line in counter.ranked():
        pattern = re.escape(line.url)
        slots = re.findall(r"randint\\\((\d+),(\d+)\\\)", pattern)
        for slot, (low, high) in enumerate(slots):
            pattern = pattern.replace(
                re.escape(f"{{{{randint({low},{high})}}}}"),
                f"(?P<s{slot}_{low}_{high}>[1-9][0-9]{{0,17}}|0)",  # the id alone
                1,
            )
        shapes[line.url] = re.compile(pattern)
    templates = Templates()
    for url, shape in shapes.items():
        rendered = templates.compile(url, "test").render()
        found = shape.fullmatch(rendered)
        assert found is not None
        for name, value in found.groupdict().items():
            low, high = (int(part) for part in name.split("_")[1:])
            assert low <= int(value) <= high
    for path in seen:
        assert sum(1 for shape in shapes.values() if shape.fullmatch(path)) == 1


def test_a_percent_escaped_token_is_token_like() -> None:
    """A base64 token whose + / = the log wrote as %2B %2F %3D is still one token, left out."""
    log = (
        b'h - - [t] "GET /reset/AbCdEfGhIjKlM1%2BnOpQrStUv%2FwXyZ01234%3D HTTP/1.1" 200 1\n'
        b'h - - [t] "GET /search/caf%C3%A9%20au%20lait%20et%20sucre HTTP/1.1" 200 1\n'
    )
    counter = count(log)
    assert urls(counter) == {"/search/caf%C3%A9%20au%20lait%20et%20sucre": 1}
    assert counter.tally.token_like == 1
    assert token_like(b"/k/AbCdEfGhIjKlM1%2BnOpQrStUv%2FwXyZ01234%3D")
    assert not token_like(b"/p/Gr%C3%B6%C3%9Fe-XL-2024")
