"""Which moments become Kubernetes Events and how repeats add up (decide/events.py): plain data,
a fake clock, Hypothesis."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmgate.decide.events import (
    CONTROLLER,
    FINISH_AFTER,
    REFRESH_AFTER,
    Moment,
    Notice,
    Pod,
    Recorder,
    failure_sentence,
    micro_time,
    note,
    notice_for,
)

POD = Pod("shop-7d9f", "prod", "0b6c1c52-6f0e-4f4e-9a4e-1f1d1b2c3d4e")
T0 = 1_780_000_000.0
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def moment(state: str, outcome: str | None = None, rearms: int = 0, reason: str = "r") -> Moment:
    return Moment(state, state == "ready", reason, outcome, rearms)


def test_a_cold_warm_up_is_warming_then_warm() -> None:
    waiting, warming = moment("waiting"), moment("warming", reason="warming to 8 in flight")
    assert notice_for(None, waiting) is None
    assert notice_for(waiting, waiting) is None
    started = notice_for(waiting, warming)
    assert started == Notice("Warming", "Normal", "Warm", "warming to 8 in flight")
    assert notice_for(warming, warming) is None
    warm = notice_for(warming, moment("ready", "warm", reason="warm: p95 12ms"))
    assert warm == Notice("Warm", "Normal", "OpenReadiness", "warm: p95 12ms")


@pytest.mark.parametrize(
    ("after", "reason", "kind"),
    [
        (moment("ready", "opened_on_timeout"), "OpenedOnTimeout", "Warning"),
        (moment("failed", "failed_closed"), "FailedClosed", "Warning"),
    ],
)
def test_giving_up_is_a_warning(after: Moment, reason: str, kind: str) -> None:
    found = notice_for(moment("warming"), after)
    assert found is not None
    assert (found.reason, found.type) == (reason, kind)


def test_a_rearm_and_a_resumed_start() -> None:
    ready = moment("ready", "warm")
    rearmed = moment("warming", rearms=1, reason="re-arming: the app restarted")
    found = notice_for(ready, rearmed)
    assert found == Notice("Rearmed", "Normal", "Rearm", "re-arming: the app restarted")
    resumed = moment("waiting", reason="confirming the app is still warm after warmgate restarted")
    found = notice_for(None, resumed)
    assert found is not None
    assert found.reason == "Resumed"
    assert notice_for(ready, moment("stopped")) is None
    assert notice_for(ready, ready) is None  # a keep-warm primer's progress


def test_the_note_fits_the_api_servers_kilobyte() -> None:
    assert note("short") == "short"
    cut = note("é" * 2000)
    assert len(cut.encode()) <= 1024
    assert cut.endswith("...")


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_micro_time_has_microseconds(timestamp: float) -> None:
    text = micro_time(timestamp)
    assert MICRO.match(text), text
    back = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    assert abs(back - timestamp) < 1e-5


def test_an_event_is_about_the_pod_and_named_like_client_gos() -> None:
    recorder = Recorder(POD)
    post = recorder.record(Notice("Warm", "Normal", "OpenReadiness", "warm"), T0)
    assert post is not None
    assert post.verb == "create"
    event = post.event
    assert re.fullmatch(r"shop-7d9f\.[0-9a-f]+", post.name)
    assert event["metadata"] == {"name": post.name, "namespace": "prod"}
    assert event["regarding"] == {
        "apiVersion": "v1", "kind": "Pod", "name": "shop-7d9f", "namespace": "prod", "uid": POD.uid,
    }  # fmt: skip
    assert event["reportingController"] == CONTROLLER
    assert event["reportingInstance"] == "shop-7d9f"
    assert MICRO.match(event["eventTime"])
    assert "series" not in event
    no_uid = Recorder(Pod("p", "ns")).record(Notice("Warm", "Normal", "A", "n"), T0)
    assert no_uid is not None
    assert "uid" not in no_uid.event["regarding"]


def test_repeats_become_one_series_as_client_go_does() -> None:
    recorder = Recorder(POD)
    crash = Notice("PrimerCrashed", "Warning", "RestartPrimer", "the primer exited")
    first = recorder.record(crash, T0)
    second = recorder.record(crash, T0 + 1)
    assert first is not None
    assert second is not None
    assert second.verb == "patch"
    assert second.name == first.name
    assert second.series == {"count": 2, "lastObservedTime": micro_time(T0 + 1)}
    assert second.event["series"] == second.series
    assert [recorder.record(crash, T0 + 1 + i) for i in range(1, 4)] == [None, None, None]
    assert recorder.tick(T0 + 60) == []  # counted, sent at the refresh or the finish
    (final,) = recorder.tick(T0 + 4 + FINISH_AFTER)  # six idle minutes finish the series
    assert final.series == {"count": 5, "lastObservedTime": micro_time(T0 + 4)}
    assert recorder.tick(T0 + 4 + REFRESH_AFTER) == []
    recorder = Recorder(POD)
    recorder.record(crash, T0)
    for i in range(1, 31):
        recorder.record(crash, T0 + i * 60.0)  # a repeat every minute: the series stays open
    assert recorder.tick(T0 + REFRESH_AFTER + 59) == []
    (refresh,) = recorder.tick(T0 + REFRESH_AFTER + 60)
    assert refresh.series is not None
    assert refresh.series["count"] == 31


def test_a_finished_series_sends_its_count_and_the_next_repeat_is_new() -> None:
    recorder = Recorder(POD)
    crash = Notice("PrimerCrashed", "Warning", "RestartPrimer", "the primer exited")
    first = recorder.record(crash, T0)
    recorder.record(crash, T0 + 1)
    recorder.record(crash, T0 + 2)
    (final,) = recorder.tick(T0 + 2 + FINISH_AFTER)
    assert final.series == {"count": 3, "lastObservedTime": micro_time(T0 + 2)}
    again = recorder.record(crash, T0 + 2 + FINISH_AFTER + 1)
    assert again is not None
    assert first is not None
    assert again.verb == "create"
    assert again.name != first.name


NOTICES = st.sampled_from(
    [
        Notice("Warming", "Normal", "Warm", "warming"),
        Notice("Warm", "Normal", "OpenReadiness", "warm"),
        Notice("Rearmed", "Normal", "Rearm", "re-arming"),
        Notice("FailedClosed", "Warning", "WithholdReadiness", "failed"),
    ]
)


@settings(max_examples=200)
@given(st.lists(st.tuples(NOTICES, st.floats(min_value=0, max_value=900)), max_size=60))
def test_every_repeat_is_counted_once_and_names_stay_unique(
    steps: list[tuple[Notice, float]],
) -> None:
    recorder = Recorder(POD)
    now = T0
    created: dict[str, int] = {}
    counted: dict[str, int] = {}
    recorded: dict[str, int] = {}
    current: dict[str, str] = {}
    posts = []
    for notice, gap in steps:
        posts.extend(recorder.tick(now + gap))
        now += gap
        post = recorder.record(notice, now)
        key = notice.reason
        if post is not None and post.verb == "create":
            assert post.name not in created
            created[post.name] = 1
            current[key] = post.name
        recorded[current[key]] = recorded.get(current[key], 0) + 1
        if post is not None:
            posts.append(post)
    posts.extend(recorder.tick(now + FINISH_AFTER + REFRESH_AFTER))
    assert recorder.cache == {}
    for post in posts:
        assert post.name in created
        if post.verb == "patch":
            assert post.series is not None
            assert post.series["count"] >= counted.get(post.name, 1)
            counted[post.name] = post.series["count"]
    for name, times in recorded.items():
        assert counted.get(name, 1) == times
    # never a flood: never more requests than occurrences, far fewer with repeats
    assert len(posts) <= sum(recorded.values())


def test_failures_say_what_is_missing() -> None:
    forbidden = failure_sentence("status", 403, "https://10.0.0.1:443")
    assert "403" in forbidden
    assert "events.k8s.io" in forbidden
    assert "verbs: [create, patch]" in forbidden
    assert "401" in failure_sentence("status", 401)
    assert "KUBECONFIG" in failure_sentence("config", detail="no KUBECONFIG")
    assert "did not answer" in failure_sentence("timeout", server="https://x")
    assert "cannot reach" in failure_sentence("connect", detail="refused")
    for sentence in (forbidden, failure_sentence("status", 500, detail="x")):
        assert "once a minute" in sentence
        assert "\n" not in sentence


STATES = st.sampled_from(["waiting", "warming", "ready", "failed", "stopped"])
MOMENTS = st.builds(
    Moment,
    STATES,
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from([None, "warm", "opened_on_timeout", "failed_closed"]),
    st.integers(min_value=0, max_value=3),
)


@given(MOMENTS, MOMENTS)
def test_only_a_change_is_worth_an_event_and_its_note_is_the_sentence_shown(
    before: Moment, after: Moment
) -> None:
    assert notice_for(after, after) is None
    found = notice_for(before, after)
    if found is None:
        return
    assert found.note == note(after.reason)
    assert found.type in ("Normal", "Warning")
    assert re.fullmatch(r"[A-Z][A-Za-z]+", found.reason)
    assert (found.type == "Warning") == (found.reason in ("OpenedOnTimeout", "FailedClosed"))
    assert (before.state, before.outcome, before.rearms) != (
        after.state,
        after.outcome,
        after.rearms,
    )
