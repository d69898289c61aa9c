"""The Event poster (runtime/event_poster.py) against a real HTTPS API server (tests/kubeapi.py)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeapi import TOKEN, KubeApi, kube_api, kubeconfig
from warmgate.decide.events import RETRY_AFTER, Notice, Pod, Recorder
from warmgate.kernel.redaction import Secrets
from warmgate.runtime.event_poster import Poster
from warmgate.serve.logs import Log

POD = Pod("shop-7d9f", "prod", "0b6c1c52-6f0e-4f4e-9a4e-1f1d1b2c3d4e")
WARM = Notice("Warm", "Normal", "OpenReadiness", "warm: p95 12ms at 8 in flight")
CRASH = Notice("PrimerCrashed", "Warning", "RestartPrimer", "the primer exited with code 1")


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with kube_api() as server:
        yield server


def poster_for(api: KubeApi, tmp_path: Path, **kw: float) -> tuple[Poster, io.StringIO]:
    out = io.StringIO()
    environ = {"KUBECONFIG": str(kubeconfig(api, tmp_path))}
    return Poster(Log(out, secrets=Secrets()), environ, **kw), out


def log_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_creates_then_patches_a_series_the_way_the_api_server_takes(
    api: KubeApi, tmp_path: Path
) -> None:
    poster, out = poster_for(api, tmp_path)
    recorder = Recorder(POD)
    now = 1_780_000_000.0
    for notice, at in ((WARM, now), (CRASH, now + 1), (CRASH, now + 2)):
        post = recorder.record(notice, at)
        assert post is not None
        poster.add(post.to_json())
    poster.flush(time.monotonic())
    assert api.problems == []
    assert [(r.method, r.content_type, r.status) for r in api.requests] == [
        ("POST", "application/json", 201),
        ("POST", "application/json", 201),
        ("PATCH", "application/merge-patch+json", 200),
    ]
    warm, crash = api.created()
    assert warm["reason"] == "Warm"
    assert crash["series"]["count"] == 2
    assert poster.pending == deque_empty()
    assert out.getvalue() == ""


def deque_empty() -> object:
    from collections import deque

    return deque(maxlen=64)


def test_a_duplicate_name_is_dropped_and_a_lost_series_is_created(
    api: KubeApi, tmp_path: Path
) -> None:
    poster, out = poster_for(api, tmp_path)
    recorder = Recorder(POD)
    first = recorder.record(CRASH, 100.0)
    assert first is not None
    poster.add(first.to_json())
    poster.add(first.to_json())  # the same name again: 409, dropped as client-go drops it
    poster.flush(time.monotonic())
    assert [r.status for r in api.requests] == [201, 409]
    assert not poster.pending
    api.events.clear()  # the Event expired on the server
    patch = recorder.record(CRASH, 101.0)
    assert patch is not None
    assert patch.verb == "patch"
    poster.add(patch.to_json())
    poster.flush(time.monotonic())
    assert [r.status for r in api.requests][2:] == [404, 201]
    (event,) = api.created()
    assert event["series"]["count"] == 2
    assert api.problems == []
    assert out.getvalue() == ""


@pytest.mark.parametrize(("mode", "code"), [("forbidden", "403"), ("unauthorized", "401")])
def test_refused_says_once_what_is_missing_then_tries_once_a_minute(
    api: KubeApi, tmp_path: Path, mode: str, code: str
) -> None:
    api.mode = mode
    poster, out = poster_for(api, tmp_path)
    recorder = Recorder(POD)
    post = recorder.record(WARM, 100.0)
    assert post is not None
    poster.add(post.to_json())
    start = time.monotonic()
    poster.flush(start)
    assert not poster.due(start + RETRY_AFTER - 1)
    assert poster.due(start + RETRY_AFTER)
    poster.flush(start + RETRY_AFTER)
    assert len(api.requests) == 2
    (line,) = log_lines(out)
    assert line["event"] == "events_failed"
    assert code in str(line["message"])
    if code == "403":
        assert "verbs: [create, patch]" in str(line["message"])
    api.mode = "ok"
    poster.flush(start + 2 * RETRY_AFTER)
    assert len(api.created()) == 1
    assert [line["event"] for line in log_lines(out)] == ["events_failed", "events_posting"]
    assert TOKEN not in out.getvalue()


def test_a_hanging_api_server_is_cut_by_the_timeout(api: KubeApi, tmp_path: Path) -> None:
    api.mode = "hang"
    poster, out = poster_for(api, tmp_path, timeout=0.5)
    post = Recorder(POD).record(WARM, 100.0)
    assert post is not None
    poster.add(post.to_json())
    started = time.monotonic()
    poster.flush(started)
    assert time.monotonic() - started < 10
    (line,) = log_lines(out)
    assert "did not answer in time" in str(line["message"])
    assert len(poster.pending) == 1


def test_no_api_server_configured_is_said_once(tmp_path: Path) -> None:
    out = io.StringIO()
    poster = Poster(Log(out, secrets=Secrets()), {}, service_account=tmp_path / "none")
    post = Recorder(POD).record(WARM, 100.0)
    assert post is not None
    poster.add(post.to_json())
    poster.flush(0.0)
    poster.flush(RETRY_AFTER)
    (line,) = log_lines(out)
    assert "no KUBECONFIG and not in a cluster" in str(line["message"])
    in_cluster = Poster(
        Log(out, secrets=Secrets()), {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
        service_account=tmp_path / "none",
    )  # fmt: skip
    in_cluster.add(post.to_json())
    in_cluster.flush(0.0)
    assert "no service account token" in str(log_lines(out)[-1]["message"])


@pytest.mark.parametrize("broken", ["no current context", "no CA file", "token file gone"])
def test_a_kubeconfig_lightkube_cannot_use_is_said_once_not_raised(
    api: KubeApi, tmp_path: Path, broken: str
) -> None:
    """A KUBECONFIG without a current context, one naming a CA file that is not there, or a
    token file that went away: one line saying what is missing, never an exception."""
    path = kubeconfig(api, tmp_path)
    config = json.loads(path.read_text())
    if broken == "no current context":
        del config["current-context"]
    elif broken == "no CA file":
        config["clusters"][0]["cluster"]["certificate-authority"] = str(tmp_path / "none.pem")
    else:
        config["users"][0]["user"] = {"tokenFile": str(tmp_path / "gone")}
    path.write_text(json.dumps(config))
    out = io.StringIO()
    poster = Poster(Log(out, secrets=Secrets()), {"KUBECONFIG": str(path)})
    post = Recorder(POD).record(WARM, 100.0)
    assert post is not None
    poster.add(post.to_json())
    poster.flush(0.0)
    poster.flush(RETRY_AFTER)
    (line,) = log_lines(out)
    assert line["event"] == "events_failed"
    assert "no API server to post them to" in str(line["message"])
    assert TOKEN not in out.getvalue()
    assert poster.pending  # kept for the next try


def test_in_a_cluster_a_rotated_token_is_read_again(api: KubeApi, tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    assert api.ca is not None
    api.ca.cert_pem.write_to_path(str(account / "ca.crt"))
    (account / "namespace").write_text("prod")
    (account / "token").write_text("first-token\n")
    api.accepted = {"first-token"}
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
    out = io.StringIO()
    poster = Poster(Log(out, secrets=Secrets()), environ, service_account=account)
    recorder = Recorder(POD)
    for at in (100.0, 200.0):
        post = recorder.record(Notice(f"R{int(at)}", "Normal", "A", "n"), at)
        assert post is not None
        poster.add(post.to_json())
        poster.flush(at)
        # the kubelet rotates the token; the old one expires
        (account / "token").write_text("second-token\n")
        api.accepted = {"second-token"}
    assert out.getvalue() == ""
    assert api.tokens[0] == "first-token"
    assert api.tokens[-1] == "second-token"
    assert len(api.created()) == 2
    assert out.getvalue() == ""


def test_the_relay_ends_an_idle_poster_and_the_next_stays_quiet_about_what_was_said(
    api: KubeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import poll
    from warmgate.runtime.events import IDLE_CLOSE, EventRelay
    from warmgate.serve.status import Status

    api.mode = "forbidden"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(api, tmp_path)))
    out = io.StringIO()
    relay = EventRelay(POD, Log(out, secrets=Secrets()), "json")
    now = 1_780_000_000.0
    waiting = Status("waiting", False, "starting", now, now, now, mode="run")
    warming = Status("warming", False, "priming has started", now, now, now, mode="run")
    try:
        relay.observe(waiting, warming, now)
        poll(lambda: "events_failed" in capfd.readouterr().out, what="the 403 said")
        first = relay._poster
        relay.tick(now + IDLE_CLOSE)  # nothing to send for a while: its pipe closes, it ends
        assert relay._poster is None
        assert poll(lambda: first.poll() is not None, what="the idle poster to end")
        assert first.returncode == 7  # it ended still refused (403)
        ready = Status("ready", True, "warm", now, now, now, outcome="warm", mode="run")
        relay.observe(warming, ready, now + IDLE_CLOSE + 1)
        assert relay._said == 7
        assert relay._poster is not None
    finally:
        relay.close()
    assert len(api.requests) == 1  # the next poster waits a minute before its first try
    assert "events_failed" not in capfd.readouterr().out  # and says nothing new
    assert out.getvalue() == ""
