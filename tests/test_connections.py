"""Who keeps the endpoint's connections and body memory: the pure rules, with plain data."""

from __future__ import annotations

import itertools
import socket
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmgate.serve.client_io import Connection, DeadlineReader, ExpiredError, HeadTooLargeError
from warmgate.serve.connections import QUEUED, RUNNING, WAITING, Limits, Table, Throttle

MIB = 1024 * 1024
SMALL = Limits(connections=4)
ADDRESSES = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "node"])


def test_a_newcomer_at_the_cap_closes_the_longest_waiting_connection() -> None:
    """Four slots taken from one address: the fifth gets in and the oldest one gives way."""
    table: Table[str] = Table(SMALL)
    for index, key in enumerate("abcd"):
        assert table.open(key, "10.0.0.1", now=float(index)).evicted == ()
    room = table.open("e", "10.0.0.1", now=10.0)
    assert (room.admitted, room.evicted) == (True, ("a",))
    assert sorted(table.connections()) == ["b", "c", "d", "e"]


def test_the_probe_is_not_closed_while_another_address_holds_more() -> None:
    """A probe's single connection survives newcomers from an address holding three."""
    table: Table[str] = Table(SMALL)
    table.open("probe", "node", now=0.0)
    for index in range(3):
        table.open(f"slow{index}", "10.0.0.7", now=1.0 + index)
    for index in range(3, 20):
        room = table.open(f"slow{index}", "10.0.0.7", now=1.0 + index)
        assert room.evicted
        assert room.evicted[0] != "probe"
    assert "probe" in table


def test_a_newcomer_from_a_lone_address_takes_room_from_the_biggest_holder() -> None:
    """The kubelet's probe arriving at a full table evicts the crowd's oldest, not a loner's."""
    table: Table[str] = Table(SMALL)
    table.open("lone", "10.0.0.2", now=0.0)
    for index in range(3):
        table.open(f"slow{index}", "10.0.0.7", now=1.0 + index)
    assert table.open("probe", "node", now=9.0).evicted == ("slow0",)


def test_a_newcomer_gets_in_even_when_every_connection_is_young() -> None:
    """A probe arriving just after slow clients of its own address took every connection
    closes the longest-waiting of them."""
    table: Table[str] = Table(SMALL)
    for index, key in enumerate("abcd"):
        table.open(key, "127.0.0.1", now=index * 0.01)
    assert table.open("probe", "127.0.0.1", now=0.05).evicted == ("a",)


def test_a_full_table_of_answers_being_computed_refuses_the_newcomer() -> None:
    """Only a connection waiting on its client or on its turn can be closed for a newcomer."""
    table: Table[str] = Table(SMALL)
    for key in "abcd":
        table.open(key, "10.0.0.1", now=0.0)
        table.running(key)
    room = table.open("e", "10.0.0.1", now=1.0)
    assert (room.admitted, room.evicted) == (False, ())
    assert "e" not in table
    table.waiting("c", now=2.0)
    assert table.open("e", "10.0.0.1", now=3.0).evicted == ("c",)


def test_deadlines_run_from_the_accept_and_from_each_answer_not_from_the_last_byte() -> None:
    """Head: 5 s from the answer; body: 10 s from the head; bytes received move neither."""
    table: Table[str] = Table(Limits())
    table.open("a", "10.0.0.1", now=100.0)
    assert table.waiting("a", now=103.0) == 108.0
    assert table.reading_body("a", now=104.0) == 114.0
    table.hold("a", 1)
    assert table.waiting("a", now=106.0) == 111.0


def test_a_trickling_client_is_cut_at_the_deadline_whatever_it_sends() -> None:
    """A header line every 3 s is read while time is left, and the read at 6 s past a 5 s
    deadline fails, although the client's next line is already there."""
    server, client = socket.socketpair()
    with server, client:
        connection = Connection(server, ("10.0.0.7", 4242))
        connection.deadline = 5.0
        ticks = iter([3.0, 6.0])
        reader = DeadlineReader(connection, clock=lambda: next(ticks))
        buffer = bytearray(64)
        client.sendall(b"X-Slow: 1\r\n")
        assert reader.readinto(buffer) == 11
        client.sendall(b"X-Slow: 2\r\n")
        with pytest.raises(ExpiredError):
            reader.readinto(buffer)


def test_a_request_head_stops_being_read_at_its_size_limit() -> None:
    """Reads stop at head_bytes; the next read of the same head fails."""
    server, client = socket.socketpair()
    with server, client:
        connection = Connection(server, ("10.0.0.7", 4242))
        connection.deadline, connection.head_left = 60.0, 10
        reader = DeadlineReader(connection, clock=lambda: 0.0)
        client.sendall(b"X" * 64)
        buffer = bytearray(64)
        assert reader.readinto(buffer) == 10
        with pytest.raises(HeadTooLargeError):
            reader.readinto(buffer)


CONNECTION_STEPS = st.lists(
    st.tuples(st.sampled_from(["open", "open", "run", "wait", "close"]), ADDRESSES,
              st.integers(0, 1000)),
    max_size=120,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(steps=CONNECTION_STEPS)
def test_connections_stay_capped_and_the_biggest_holder_gives_way(
    steps: list[tuple[str, str, int]],
) -> None:
    """Never over the cap. At the cap, a newcomer closes the longest-waiting connection of the
    address holding the most (the newcomer counted with its own), among addresses with one that
    waited the grace if there are any; it is refused only when every connection is computing
    its answer, and such a one is never closed."""
    limits = Limits(connections=6, grace=5.0)
    table: Table[int] = Table(limits)
    addresses: dict[int, str] = {}
    since: dict[int, float] = {}
    for now, (action, address, pick) in enumerate(steps):
        keys = table.connections()
        if action == "open":
            evictable = {k: addresses[k] for k in keys if table.phase(k) is not RUNNING}
            held = Counter(evictable.values())
            if address in held:
                held[address] += 1
            settled = {evictable[k] for k in evictable if now - since[k] >= limits.grace}
            full = len(keys) == limits.connections
            room = table.open(now, address, float(now))
            assert room.admitted == (not full or bool(evictable))
            if room.admitted:
                addresses[now], since[now] = address, float(now)
            if not full or not room.admitted:
                assert room.evicted == ()
                continue
            (victim,) = room.evicted
            chosen = evictable[victim]
            assert since[victim] == min(since[k] for k, a in evictable.items() if a == chosen)
            assert held[chosen] == max(held[a] for a in settled or held)
            assert chosen in (settled or held)
        elif keys:
            key = keys[pick % len(keys)]
            if action == "run":
                table.running(key)
            elif action == "wait":
                table.waiting(key, float(now))
                since[key] = float(now)
            else:
                table.close(key)
        assert len(table) <= limits.connections


def test_a_young_probe_is_closed_for_nobody_while_others_waited_longer() -> None:
    """Slow clients of many addresses, one connection each: the probe, younger than the grace,
    outlives every newcomer while connections older than the grace remain."""
    table: Table[str] = Table(SMALL)
    for index in range(3):
        table.open(f"slow{index}", f"10.0.1.{index}", now=float(index))
    table.open("probe", "node", now=10.0)
    assert table.open("probe2", "node", now=10.1).evicted == ("slow0",)
    # The node holds the most now, but its connections are young: older ones give way.
    assert table.open("slow3", "10.0.1.3", now=10.2).evicted == ("slow1",)
    assert table.open("slow4", "10.0.1.4", now=10.3).evicted == ("slow2",)
    assert {"probe", "probe2"} <= set(table.connections())


def test_the_victim_is_never_the_one_computing_an_answer() -> None:
    """A connection whose answer is being computed outlives any number of newcomers."""
    table: Table[str] = Table(SMALL)
    table.open("busy", "10.0.0.1", now=0.0)
    table.running("busy")
    for index in range(50):
        table.open(f"n{index}", "10.0.0.1", now=1.0 + index)
    assert "busy" in table


BODY_STEPS = st.lists(
    st.tuples(st.sampled_from(["open", "bytes", "bytes", "bytes", "decide", "done", "gone"]),
              ADDRESSES, st.integers(0, 1000), st.integers(1, 3 * MIB // 4)),
    max_size=150,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(steps=BODY_STEPS)
def test_body_memory_stays_bounded_and_a_body_always_finds_room(
    steps: list[tuple[str, str, int, int]],
) -> None:
    """Bytes held pass held_bytes only until evicted connections give theirs back, and never by
    more than those; once they have, a body's bytes always fit (others give way); bodies decided
    at once never pass deciding_bytes unless one is alone; the one closed for room is never the
    one receiving nor one being decided."""
    limits = Limits(connections=16)
    table: Table[int] = Table(limits)
    size: dict[int, int] = {}
    leaving: list[int] = []
    for now, (action, address, pick, wanted) in enumerate(steps):
        keys = table.connections()
        if action == "open":
            room = table.open(now, address, float(now))
            leaving.extend(room.evicted)
            if room.admitted:
                table.reading_body(now, float(now))
                size[now] = 0
            continue
        receiving = [k for k in keys if table.phase(k) is WAITING and k in size]
        if action == "bytes" and receiving:
            key = receiving[pick % len(receiving)]
            chunk = min(wanted, limits.body_bytes - size[key])
            running = {k for k in keys if table.phase(k) is RUNNING}
            gone_before = table.leaving
            room = table.hold(key, chunk)
            size[key] += chunk
            leaving.extend(room.evicted)
            assert key not in room.evicted
            assert not running & set(room.evicted)
            assert room.admitted == (table.held <= limits.held_bytes)
            assert room.admitted or table.leaving > 0
            assert table.held - table.leaving <= limits.held_bytes
            if not gone_before:
                assert room.admitted
        elif action == "decide" and receiving:
            key = receiving[pick % len(receiving)]
            alone = table.deciding == 0
            started = table.decide(key)
            assert started or table.phase(key) is QUEUED
            assert alone <= started
            assert alone or table.deciding <= limits.deciding_bytes
        elif action == "done" and keys:
            key = keys[pick % len(keys)]
            if table.phase(key) is RUNNING:
                table.waiting(key, float(now))
                size.pop(key, None)
        elif action == "gone" and leaving:
            table.close(leaving.pop(pick % len(leaving)))
        assert table.held >= table.leaving >= 0
        assert table.deciding >= 0
    for key in leaving:
        table.close(key)
    assert table.leaving == 0
    assert table.held == sum(size.get(key, 0) for key in table.connections())


def test_a_fast_sender_that_stalls_gives_way_to_a_genuine_body() -> None:
    """Bodies sent almost whole and then held back by one address make room for another's:
    the oldest is evicted, and its bytes count until its thread has let them go."""
    table: Table[str] = Table(Limits())
    for index in range(4):
        key = f"stall{index}"
        table.open(key, "10.0.0.7", now=float(index))
        table.reading_body(key, float(index))
        assert table.hold(key, 2 * MIB - 1).evicted == ()
    table.open("review", "apiserver", now=10.0)
    table.reading_body("review", 10.0)
    assert table.hold("review", 4).evicted == ()  # exactly the 8 MiB kept
    room = table.hold("review", 1)  # a byte more than the 8 MiB
    assert (room.admitted, room.evicted) == (False, ("stall0",))  # until its bytes are freed
    assert table.leaving == 2 * MIB - 1
    table.close("stall0")  # its thread ends
    assert table.held == 6 * MIB + 2
    assert table.decide("review")


def test_limits_that_could_leave_a_body_without_room_are_refused() -> None:
    """held_bytes must fit a body beside those decided; deciding_bytes the largest body."""
    with pytest.raises(ValueError, match="held_bytes"):
        Limits(held_bytes=3 * MIB)
    with pytest.raises(ValueError, match="deciding_bytes"):
        Limits(deciding_bytes=MIB)


@given(times=st.lists(st.floats(0, 1000), max_size=60).map(sorted))
def test_a_kind_of_trouble_is_logged_once_a_minute_with_the_count_held_back(
    times: list[float],
) -> None:
    """Lines are at least 60 s apart, the first event always gets one, and every event is
    either logged or counted in the next line."""
    throttle = Throttle(60.0)
    logged: list[float] = []
    counted = 0
    for now in times:
        held_back = throttle.note(now)
        if held_back is not None:
            logged.append(now)
            counted += held_back + 1
    assert all(later - earlier >= 60.0 for earlier, later in itertools.pairwise(logged))
    assert bool(logged) == bool(times)
    if times:
        counted += throttle.note(times[-1] + 61.0) or 0
    assert counted == len(times)
