"""The three surfaces: status files, metrics on an injected registry, the HTTP endpoint."""

from __future__ import annotations

import http.client
import json
import os
import platform
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tests.helpers import http_get, poll
from warmgate import __version__
from warmgate.decide.window import Sample
from warmgate.kernel.errors import ServeError, StatusDirError
from warmgate.kernel.files import MAX_JSON_DEPTH, atomic_write
from warmgate.serve.client_io import Trouble
from warmgate.serve.connections import Limits
from warmgate.serve.metrics import FileStatusCollector, Metrics
from warmgate.serve.server import LIMITS, Endpoint, listen
from warmgate.serve.status import (
    HEARTBEAT_AHEAD,
    HEARTBEAT_FILE,
    HEARTBEAT_STALE,
    MAX_STATUS_BYTES,
    READY_FILE,
    STATUS_FILE,
    Status,
    StatusDir,
    heartbeat_problem,
    is_ready,
    read_status,
    readiness,
    snapshot,
)


def status(ready: bool, reason: str = "why", **fields: Any) -> Status:
    """A status snapshot."""
    now = time.time()
    return Status(
        state="ready" if ready else "warming",
        ready=ready,
        reason=reason,
        started_at=now - 5,
        updated_at=now,
        phase_started_at=now,
        ready_at=now if ready else None,
        level=16,
        target_level=16,
        window={"requests": 10, "success_ratio": 1.0, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0},
        **fields,
    )


def test_marker_follows_readiness(tmp_path: Path) -> None:
    """The ready marker exists exactly while the status says ready."""
    directory = StatusDir(tmp_path / "wg")
    directory.prepare()
    directory.write(status(False))
    assert not (tmp_path / "wg" / READY_FILE).exists()
    directory.write(status(True, "warm"))
    assert (tmp_path / "wg" / READY_FILE).read_text() == "warm\n"
    data = read_status(tmp_path / "wg")
    assert data is not None
    assert data["ready"] is True
    assert data["concurrency"] == {"level": 16, "target": 16}
    assert is_ready(tmp_path / "wg", data)
    directory.write(status(False))
    assert not (tmp_path / "wg" / READY_FILE).exists()


def test_prepare_removes_a_stale_marker(tmp_path: Path) -> None:
    """A marker left by an earlier run never claims readiness for this one."""
    (tmp_path / READY_FILE).write_text("old\n")
    StatusDir(tmp_path).lock()
    assert not (tmp_path / READY_FILE).exists()


def test_unwritable_status_dir() -> None:
    """A directory nobody may write (sysfs, even for root) is a clear StatusDirError."""
    with pytest.raises(StatusDirError, match=r"/sys/kernel is not writable \(Permission denied\)"):
        StatusDir(Path("/sys/kernel")).prepare()


def test_status_dir_that_is_a_file(tmp_path: Path) -> None:
    """A path that is a regular file cannot be a status directory."""
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(StatusDirError, match="is not writable"):
        StatusDir(path).prepare()


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    """While one thread rewrites status.json, another always reads complete JSON."""
    directory = StatusDir(tmp_path)
    directory.prepare()
    directory.write(status(False))
    stop = threading.Event()
    reads = {"ok": 0, "torn": 0}

    def reader() -> None:
        while not stop.is_set():
            text = (tmp_path / STATUS_FILE).read_text()
            try:
                json.loads(text)
                reads["ok"] += 1
            except json.JSONDecodeError:
                reads["torn"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    for index in range(300):
        directory.write(status(index % 2 == 0, "x" * (index % 7) * 500))
    stop.set()
    thread.join()
    assert reads["torn"] == 0
    assert reads["ok"] > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_metrics_use_the_injected_registry() -> None:
    """Samples and snapshots show up in the given registry, labelled by target name."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, ("items",))
    assert registry.get_sample_value("warmgate_ready") == 0
    assert registry.get_sample_value("warmgate_requests_total", {"target": "items", "outcome": "timeout"}) == 0  # fmt: skip
    metrics.observe(Sample(0.0, 0.02, 16, "items"))
    metrics.observe(Sample(0.0, 2.0, 16, "items", "timeout"))
    metrics.publish(status(True))
    assert registry.get_sample_value("warmgate_ready") == 1
    assert registry.get_sample_value("warmgate_state", {"warmgate_state": "ready"}) == 1
    assert registry.get_sample_value("warmgate_requests_total", {"target": "items", "outcome": "ok"}) == 1  # fmt: skip
    assert registry.get_sample_value("warmgate_request_duration_seconds_count", {"target": "items"}) == 2  # fmt: skip
    assert registry.get_sample_value("warmgate_window_latency_seconds", {"percentile": "95"}) == 0.002  # fmt: skip
    assert registry.get_sample_value("warmgate_warmup_seconds") == pytest.approx(5, abs=0.1)


def test_serve_metrics_come_from_the_status_file(tmp_path: Path) -> None:
    """`serve` exports the gauges status.json can answer, so dashboards work for init containers too."""
    StatusDir(tmp_path).write(status(True, outcome="opened_on_timeout"))
    registry = CollectorRegistry()
    registry.register(FileStatusCollector(tmp_path))
    value = registry.get_sample_value
    assert value("warmgate_ready") == 1
    assert value("warmgate_state", {"warmgate_state": "ready"}) == 1
    assert value("warmgate_state", {"warmgate_state": "warming"}) == 0
    assert value("warmgate_concurrency") == value("warmgate_concurrency_target") == 16
    assert value("warmgate_warmup_seconds") == pytest.approx(5, abs=0.1)
    assert value("warmgate_window_requests") == 10
    assert value("warmgate_window_success_ratio") == 1.0
    assert value("warmgate_window_latency_seconds", {"percentile": "95"}) == 0.002
    assert value("warmgate_window_latency_seconds", {"percentile": "99"}) == 0.003
    assert value("warmgate_opened_on_timeout") == 1
    build = {"version": __version__, "python": platform.python_version()}
    assert value("warmgate_build_info", build) == 1


def test_serve_metrics_without_a_readable_status_read_as_nothing_yet(tmp_path: Path) -> None:
    """No status.json, or a damaged one, gives zeros and 'waiting' rather than a failed scrape."""
    registry = CollectorRegistry()
    registry.register(FileStatusCollector(tmp_path))
    assert registry.get_sample_value("warmgate_ready") == 0
    assert registry.get_sample_value("warmgate_state", {"warmgate_state": "waiting"}) == 1
    (tmp_path / "status.json").write_text('{"concurrency": "16", "window": []}')
    assert registry.get_sample_value("warmgate_concurrency") == 0
    assert registry.get_sample_value("warmgate_window_requests") == 0
    (tmp_path / "status.json").write_text("{torn")
    assert registry.get_sample_value("warmgate_window_latency_seconds", {"percentile": "50"}) == 0


def test_serve_metrics_match_run_metrics_in_name_help_and_type(tmp_path: Path) -> None:
    """Every metric `serve` exports is one `run` exports, with the same help, type and labels."""
    run_registry = CollectorRegistry()
    Metrics(run_registry, ("items",)).publish(status(True))
    run_families = {family.name: family for family in run_registry.collect()}
    serve_registry = CollectorRegistry()
    serve_registry.register(FileStatusCollector(tmp_path))
    StatusDir(tmp_path).write(status(True))
    served = list(serve_registry.collect())
    assert {family.name for family in served} == {
        "warmgate_ready", "warmgate_state", "warmgate_concurrency", "warmgate_concurrency_target",
        "warmgate_warmup_seconds", "warmgate_window_requests", "warmgate_window_success_ratio",
        "warmgate_window_latency_seconds", "warmgate_opened_on_timeout", "warmgate_build_info",
        "warmgate_rearms",
    }  # fmt: skip
    for family in served:
        twin = run_families[family.name]
        assert (family.documentation, family.type) == (twin.documentation, twin.type)
        assert {tuple(sorted(sample.labels)) for sample in family.samples} == {
            tuple(sorted(sample.labels)) for sample in twin.samples
        }


def test_endpoint_serves_readiness_status_and_metrics() -> None:
    """/readyz follows the snapshot (503 then 200, reason as body); /status, /metrics, /livez."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, ("items",))
    current = {"status": status(False, "ramping up: concurrency 4 of 16")}

    def source() -> tuple[bool, str, dict[str, Any]]:
        snapshot = current["status"]
        return snapshot.ready, snapshot.reason, snapshot.to_json()

    server = Endpoint(source, lambda: generate_latest(registry))
    port = server.start(listen("127.0.0.1", 0))
    try:
        base = f"http://127.0.0.1:{port}"
        assert http_get(f"{base}/readyz") == (503, "ramping up: concurrency 4 of 16\n")
        current["status"] = status(True, "warm")
        metrics.publish(current["status"])
        assert http_get(f"{base}/readyz") == (200, "warm\n")
        code, body = http_get(f"{base}/status")
        assert code == 200
        assert json.loads(body)["state"] == "ready"
        code, body = http_get(f"{base}/metrics")
        assert code == 200
        assert "warmgate_ready 1.0" in body
        assert http_get(f"{base}/livez") == (200, "ok\n")
        assert http_get(f"{base}/nothing")[0] == 404
    finally:
        server.stop()


def test_endpoint_port_in_use_is_a_clear_error() -> None:
    """Binding a taken port raises ServeError saying to pick another port."""
    first = listen("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(ServeError, match=f"cannot serve on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
    finally:
        first.close()


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_a_port_outside_the_range_is_a_clear_error(port: int) -> None:
    """A port that cannot exist is refused with a sentence, before any thread starts."""
    with pytest.raises(ServeError, match="is not a port; use 0 to 65535"):
        listen("127.0.0.1", port)


def abused_endpoint(lines: list[str], limits: Limits = LIMITS) -> tuple[Endpoint, int]:
    """An endpoint whose problem reports go to ``lines``."""
    server = Endpoint(lambda: (True, "warm", {}), lambda: b"", report=lines.append, limits=limits)
    return server, server.start(listen("127.0.0.1", 0))


def test_a_burst_of_malformed_requests_costs_one_line_and_never_a_traceback() -> None:
    """Garbage on the readiness port is answered 400 (or 505), counted, and logged once."""
    lines: list[str] = []
    server, port = abused_endpoint(lines)
    try:
        for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", b"GET\r\n\r\n",
                        b"GET /readyz HTTP/9.9\r\n\r\n"):  # fmt: skip
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(garbage)
                answer = client.recv(1024)
                assert b"400" in answer or b"505" in answer
        poll(lambda: server.troubles()[Trouble.MALFORMED] == 3, timeout=5)
        assert http_get(f"http://127.0.0.1:{port}/readyz") == (200, "warm\n")
    finally:
        server.stop()
    assert len(lines) == 1
    assert lines[0].startswith("bad request from 127.0.0.1")
    assert "\n" not in lines[0]
    assert "Traceback" not in lines[0]


def test_idle_connections_are_closed_without_a_word() -> None:
    """A client that connects and says nothing is hung up on at its deadline, unlogged."""
    lines: list[str] = []
    server, port = abused_endpoint(lines, Limits(head=0.5))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            assert client.recv(1024) == b""  # closed by the server, not by our timeout
    finally:
        server.stop()
    assert lines == []
    assert set(server.troubles().values()) == {0}


def test_liveness_follows_the_loop_it_is_given() -> None:
    """/livez answers 503 with the reason when the liveness source says the loop stalled."""
    alive = {"value": (True, "ok")}
    server = Endpoint(lambda: (False, "", {}), lambda: b"", liveness=lambda: alive["value"])
    port = server.start(listen("127.0.0.1", 0))
    try:
        assert http_get(f"http://127.0.0.1:{port}/livez") == (200, "ok\n")
        alive["value"] = (False, "the supervisor's loop has not turned for 12s")
        code, body = http_get(f"http://127.0.0.1:{port}/livez")
        assert (code, body) == (503, "the supervisor's loop has not turned for 12s\n")
    finally:
        server.stop()


@pytest.mark.slow
def test_running_out_of_descriptors_degrades_to_refusals_with_one_line(tmp_path: Path) -> None:
    """serve with 32 descriptors, flooded: one line per burst, no traceback, then it recovers."""
    import subprocess
    import sys

    from tests.helpers import cli_env, free_port

    port = free_port()
    command = (
        f"ulimit -n 32 && exec {sys.executable} -m warmgate serve --status-dir {tmp_path} "
        f"--port {port} --host 127.0.0.1 --log-format json"
    )
    served = subprocess.Popen(
        ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: _answers(base), timeout=15, what="serve to listen")
        # Idle connections hold a descriptor each until the idle timeout: hold more than it has.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
        poll(lambda: not _answers(base), timeout=10, what="the descriptors to run out")
        for client in clients:
            client.close()
        poll(lambda: _answers(base), timeout=LIMITS.head * 4, what="serve to recover")
    finally:
        served.terminate()
        out, err = served.communicate(timeout=10)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    exhausted = [e for e in events if "cannot accept connections" in str(e.get("message"))]
    assert "Too many open files" in str(exhausted[0]["message"])
    # One line when a burst starts and one when it ends, however many bursts a slow machine
    # sees (idle connections closed at their deadline free descriptors mid-flood): no spinning.
    bursts = [
        str(e["message"]).startswith("cannot accept")
        for e in events
        if e in exhausted or e.get("message") == "accepting connections again"
    ]
    assert bursts == [True, False] * (len(bursts) // 2)
    assert bursts
    assert "Traceback" not in err
    assert "Traceback" not in out


def _answers(base: str) -> bool:
    try:
        return http_get(f"{base}/livez", timeout=1)[0] == 200
    except OSError:
        return False


def test_writing_to_a_device_or_pipe_writes_through_it(tmp_path: Path) -> None:
    """An output path that is a named pipe (as /dev/null or /dev/stdout are devices) is written
    into, and stays what it was: never replaced by a regular file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    atomic_write(pipe, b"urls\n")
    reader.join(10)
    assert received == [b"urls\n"]
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no temporary left behind


def posting_endpoint() -> tuple[Endpoint, int]:
    """An endpoint whose POST route answers the length of the body it was given."""
    server = Endpoint(
        lambda: (True, "warm", {}), lambda: b"", post=lambda _p, body: (200, b"%d" % len(body), "")
    )
    return server, server.start(listen("127.0.0.1", 0))


def post_status(port: int, body: bytes) -> int:
    """The status of one POST of ``body``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/mutate", body)
        return connection.getresponse().status
    finally:
        connection.close()


def post_headers(port: int, length: int) -> socket.socket:
    """A connection that announced a body of ``length`` bytes and has sent none of it yet."""
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(f"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
    return client


def test_a_body_larger_than_any_storable_pod_is_refused_before_it_is_read() -> None:
    """Over 2 MiB (etcd keeps 1.5 MiB objects): 413 at once, so no body can exhaust memory."""
    server, port = posting_endpoint()
    try:
        with post_headers(port, 2 * 1024 * 1024 + 1) as client:
            assert client.recv(1024).startswith(b"HTTP/1.1 413")
        assert post_status(port, b"{}") == 200
    finally:
        server.stop()


def test_a_body_trickled_a_byte_at_a_time_holds_nothing_back() -> None:
    """Connections announcing 2 MiB and sending a byte now and then leave room for others."""
    server, port = posting_endpoint()
    holders = [post_headers(port, LIMITS.body_bytes) for _ in range(8)]
    try:
        for _ in range(3):
            for holder in holders:
                holder.sendall(b" ")
            assert post_status(port, b"{}") == 200
    finally:
        for holder in holders:
            holder.close()
        server.stop()


def test_a_content_length_of_other_digits_is_411_not_a_dropped_connection() -> None:
    """'²' passes str.isdigit() but is no length: answered 411 like any other non-number."""
    server, port = posting_endpoint()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n")
            assert client.recv(1024).startswith(b"HTTP/1.1 411")
    finally:
        server.stop()


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_a_heartbeat_counts_only_from_just_ahead_to_five_seconds_old(age: float) -> None:
    """Fresh exactly from HEARTBEAT_AHEAD in the future to HEARTBEAT_STALE in the past; one
    dated further ahead (a clock set back, a touched file) is as stale as an old one."""
    fresh = -HEARTBEAT_AHEAD <= age <= HEARTBEAT_STALE
    assert (heartbeat_problem(age) is None) == fresh
    run = {"ready": True, "mode": "run", "reason": "warm: p95 3ms"}
    assert readiness(run, True, age)[0] == fresh


def test_the_reason_names_what_is_missing() -> None:
    """No heartbeat, a future one, an old one, a deleted marker: each reason says which, then
    what the status said; a prime status needs no heartbeat."""
    run = {"ready": True, "mode": "run", "reason": "warm: p95 3ms"}
    assert readiness(run, True, None) == (
        False, "warmgate run is gone (heartbeat: none); it said: warm: p95 3ms",
    )  # fmt: skip
    assert readiness(run, True, -3600.0) == (
        False,
        "warmgate run's heartbeat is dated 3600s in the future, so it cannot tell whether run "
        "is alive (was the clock set back?); it said: warm: p95 3ms",
    )
    assert readiness(run, True, 12.0)[1].startswith("warmgate run is gone (heartbeat: the last 12s")
    assert readiness(run, False, 0.5) == (
        False,
        "status.json says ready but the ready marker does not exist (it was deleted, or "
        "readiness is being withdrawn right now); it said: warm: p95 3ms",
    )
    assert readiness({**run, "mode": "prime"}, True, None) == (True, "warm: p95 3ms")
    assert readiness({**run, "ready": False, "reason": "warming"}, True, 0.1) == (False, "warming")


def test_a_heartbeat_dated_in_the_future_is_not_ready(tmp_path: Path) -> None:
    """A run status with its marker and a heartbeat touched an hour ahead reads as not ready."""
    directory = StatusDir(tmp_path)
    directory.write(status(True, "warm", mode="run"))
    directory.beat()
    assert snapshot(tmp_path)[0]
    ahead = time.time() + 3600
    os.utime(tmp_path / HEARTBEAT_FILE, (ahead, ahead))
    ready, reason, _ = snapshot(tmp_path)
    assert not ready
    assert "heartbeat is dated 3600s in the future" in reason
    assert not is_ready(tmp_path, read_status(tmp_path))


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("[" * 100_000 + "]" * 100_000, f"is nested deeper than {MAX_JSON_DEPTH} levels"),
        ('{"a":' * 40 + "1" + "}" * 40, f"is nested deeper than {MAX_JSON_DEPTH} levels"),
        (" " * (MAX_STATUS_BYTES + 1), f"is larger than {MAX_STATUS_BYTES // 1024} KiB"),
        ("\udcff", "is not valid JSON"),
    ],
    ids=["past-the-parser", "past-the-bound", "too-large", "not-utf8"],
)
def test_a_status_file_is_read_with_bounds(tmp_path: Path, content: str, said: str) -> None:
    """Too deep, too large or not text: one sentence, never a RecursionError."""
    (tmp_path / STATUS_FILE).write_bytes(content.encode(errors="surrogateescape"))
    with pytest.raises(StatusDirError, match=said):
        read_status(tmp_path)


def test_a_served_status_too_deep_to_read_is_503_with_the_reason(tmp_path: Path) -> None:
    """serve's endpoint answers a status nested past the parser with 503 and why, and keeps
    serving."""
    (tmp_path / STATUS_FILE).write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / READY_FILE).write_text("warm\n")
    endpoint = Endpoint(lambda: snapshot(tmp_path), lambda: b"")
    port = endpoint.start(listen("127.0.0.1", 0))
    try:
        code, body = http_get(f"http://127.0.0.1:{port}/readyz")
        assert code == 503
        assert (
            body
            == f"{tmp_path / STATUS_FILE} is nested deeper than 32 levels; was it written by warmgate?\n"
        )
        code, body = http_get(f"http://127.0.0.1:{port}/status")
        assert (code, json.loads(body)) == (200, {"state": "waiting", "ready": False})
    finally:
        endpoint.stop()
