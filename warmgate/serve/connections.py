"""Who may hold the endpoint's connections and body memory, and who must give them up.

Theory of operation: the endpoint (:mod:`warmgate.serve.server`) is reachable from every pod, so its
scarce things — connection slots (a thread each) and the memory of POST bodies — must not be
holdable by a client that sends slowly. Three rules, decided here in pure code and carried out
by the server:

1. **Deadlines per exchange, not per read.** From its accept, and again from each answer, a
   connection has :attr:`Limits.head` seconds to deliver a complete request head (the TLS
   handshake, taking the previous answer and idling between kept-alive requests included); a
   POST then has :attr:`Limits.body` seconds more for its body. Sending a byte now and then
   does not extend them, so a client trickling a header line every 3 s is cut at 5 s.
2. **Newcomers take room from the biggest holder.** When all :attr:`Limits.connections` slots
   are taken, a new connection always gets in, closing an *evictable* one (see below): the
   longest-waiting of the address holding the most evictable connections (the newcomer counted
   with its own address), looking first at those that have waited :attr:`Limits.grace` (1 s).
   So a kubelet probe from the node's address gets in while slow clients of other pods hold
   every connection, and is not the one closed while another address holds more than the node
   does, nor in its first second while any connection has waited that long. Slow clients that
   share the probe's address (all of a test's, or an attacker on the node's network) are closed
   oldest-first: a probe survives the arrival of ``connections - 1`` newer ones, which is
   milliseconds even when a crowd reconnects as fast as it is closed, and more than a probe
   needs to send its request. A newcomer is refused only when every connection is computing
   its answer.
3. **Body memory counts bytes received, not bytes announced.** The bytes of bodies being
   received or waiting to be decided are held against :attr:`Limits.held_bytes`; a connection
   whose bytes would pass it makes room the same way, from the address holding the most bytes.
   Deciding (JSON decoding takes up to ~27 times a body's size) is what needs a tight budget:
   bodies of at most :attr:`Limits.deciding_bytes` together are decided at once, the others wait
   their turn (a wait bounded by the CPU, not by any client). An evicted connection's bytes
   count until its thread has let them go (:attr:`Table.leaving`), so the bound holds in memory,
   not only in the books; since ``held_bytes`` is at least ``body_bytes + deciding_bytes``,
   making room always succeeds once they have: a slow body never turns another review away.

A connection is *evictable* whenever it waits on its client or on its turn to be decided
(:data:`WAITING`, :data:`QUEUED`); only while its answer is being computed (:data:`RUNNING`) is it
protected, and that is short and bounded by the CPU.

:class:`Throttle` keeps each kind of trouble to one log line a minute, with the count of those
held back. Pure code: callers pass ``now`` (seconds on a monotonic clock) and keys of their own.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class Phase(enum.Enum):
    """What a connection is doing."""

    WAITING = "waiting"
    """On its client: for a request head or body, or for it to take its answer."""
    QUEUED = "queued"
    """A complete body waits for its turn to be decided."""
    RUNNING = "running"
    """Its answer is being computed: protected from eviction."""


WAITING, QUEUED, RUNNING = Phase.WAITING, Phase.QUEUED, Phase.RUNNING


@dataclass(frozen=True, slots=True)
class Limits:
    """What one endpoint grants its clients."""

    connections: int = 64
    """Connections served at once (a thread each); probes need a handful."""
    grace: float = 1.0
    """Seconds a connection waits on its client before it is closed for a newcomer ahead of
    younger ones: a probe in its first second outlives any that waited longer."""
    head: float = 5.0
    """Seconds from the accept, or from the previous answer, to a complete request head."""
    body: float = 10.0
    """Seconds after the head for a POST body to arrive whole: the API server's default webhook
    timeout, after which nobody waits for the answer."""
    head_bytes: int = 32 * 1024
    """A request head (request line and headers) at most, as nginx's default: the standard
    library's parser would take 100 headers of 64 KiB each."""
    body_bytes: int = 2 * 1024 * 1024
    """One POST body at most (413 beyond): an AdmissionReview holds one object, and etcd stores
    at most 1.5 MiB."""
    deciding_bytes: int = 2 * 1024 * 1024
    """Body bytes decided at once: decoding JSON takes up to ~27 times its size, and the
    webhook has 128 MiB."""
    held_bytes: int = 8 * 1024 * 1024
    """Body bytes received and kept, across connections, before the biggest holder gives way."""

    def __post_init__(self) -> None:
        if min(self.connections, self.head, self.body, self.head_bytes) <= 0 or self.grace < 0:
            raise ValueError("connections, head, body and head_bytes must be positive")
        if self.deciding_bytes < self.body_bytes:
            raise ValueError("deciding_bytes must fit the largest body")
        if self.held_bytes < self.body_bytes + self.deciding_bytes:
            raise ValueError("held_bytes must fit a body beside the bodies being decided")


@dataclass(slots=True)
class _Entry:
    address: str
    since: float
    order: int
    phase: Phase = WAITING
    held: int = 0
    deciding: int = 0


@dataclass(frozen=True, slots=True)
class Room(Generic[Key]):
    """Whether a newcomer (connection or bytes) got in, and who was evicted to make room."""

    admitted: bool
    evicted: tuple[Key, ...] = ()


class Table(Generic[Key]):
    """The connections being served and the body bytes they hold (not thread-safe: lock it).

    ``now`` never decreases from one call to the next: each address's evictable connections are
    kept in the order they started waiting, so finding the one to close for a newcomer costs a
    look at each address, not at each connection.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._entries: dict[Key, _Entry] = {}
        self._evictable: dict[str, dict[Key, None]] = {}
        """Address -> its evictable connections, the longest-waiting first."""
        self._leaving: dict[Key, int] = {}
        """Evicted connections not yet closed by their thread -> the body bytes it still has."""
        self._leaving_bytes = 0
        self._held = 0
        self._deciding = 0
        self._order = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def connections(self) -> list[Key]:
        """The connections being served."""
        return list(self._entries)

    @property
    def held(self) -> int:
        """Body bytes kept by all connections, evicted ones not yet closed included."""
        return self._held

    @property
    def leaving(self) -> int:
        """Body bytes still kept by evicted connections until their thread closes them."""
        return self._leaving_bytes

    @property
    def deciding(self) -> int:
        """Body bytes being decided."""
        return self._deciding

    def phase(self, key: Key) -> Phase:
        """What ``key`` is doing."""
        return self._entries[key].phase

    def open(self, key: Key, address: str, now: float) -> Room[Key]:
        """A new connection from ``address``: admitted, maybe evicting one, or refused (see the
        module's docstring). It waits for its request head until ``now + limits.head``."""
        victims: tuple[Key, ...] = ()
        if len(self._entries) >= self.limits.connections:
            victim = self._slot_victim(address, now)
            if victim is None:
                return Room(False)
            self._evict(victim)
            victims = (victim,)
        self._order += 1
        self._entries[key] = _Entry(address, now, self._order)
        self._evictable.setdefault(address, {})[key] = None
        return Room(True, victims)

    def waiting(self, key: Key, now: float) -> float:
        """``key`` waits on its client from ``now`` (its answer is computed): the deadline for
        taking it and delivering the next request head."""
        entry = self._entries[key]
        self._drop_bytes(entry)
        self._set(key, entry, WAITING)
        self._evictable[entry.address].pop(key)  # now the newest of its address
        self._evictable[entry.address][key] = None
        entry.since = now
        return now + self.limits.head

    def reading_body(self, key: Key, now: float) -> float:
        """``key``'s head is complete and its body follows: the deadline for the body."""
        self._set(key, self._entries[key], WAITING)
        return now + self.limits.body

    def running(self, key: Key) -> None:
        """``key``'s request is complete and its answer is being computed: protected."""
        self._set(key, self._entries[key], RUNNING)

    def hold(self, key: Key, size: int) -> Room[Key]:
        """``key`` received ``size`` more body bytes; evicts other holders while the bytes held
        pass ``limits.held_bytes``. Not admitted: over the limit until evicted connections give
        their bytes back (:meth:`close`); wait for that, :attr:`held` says when."""
        entry = self._entries[key]
        entry.held += size
        self._held += size
        evicted: list[Key] = []
        while self._held - self._leaving_bytes > self.limits.held_bytes:
            victim = self._body_victim(key, entry)
            if victim is None:
                break
            self._evict(victim)
            evicted.append(victim)
        return Room(self._held <= self.limits.held_bytes, tuple(evicted))

    def decide(self, key: Key) -> bool:
        """Start deciding ``key``'s complete body if it fits beside those being decided (a body
        alone always fits); otherwise it stays queued. True when it may start."""
        entry = self._entries[key]
        if self._deciding and self._deciding + entry.held > self.limits.deciding_bytes:
            self._set(key, entry, QUEUED)
            return False
        entry.deciding = entry.held
        self._deciding += entry.held
        self._set(key, entry, RUNNING)
        return True

    def close(self, key: Key) -> None:
        """``key``'s thread closed it (served, failed or evicted before): its bytes are free.
        Closing twice is harmless."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._drop_bytes(entry)
            self._set(key, entry, RUNNING)  # out of the evictable ones
        gone = self._leaving.pop(key, 0)
        self._held -= gone
        self._leaving_bytes -= gone

    def _evict(self, key: Key) -> None:
        """Take ``key``'s place; its body bytes stay counted until its thread closes it."""
        entry = self._entries.pop(key)
        self._leaving[key] = entry.held
        self._leaving_bytes += entry.held
        self._deciding -= entry.deciding
        self._set(key, entry, RUNNING)

    def _set(self, key: Key, entry: _Entry, phase: Phase) -> None:
        was_evictable = entry.phase is not RUNNING
        entry.phase = phase
        if phase is RUNNING and was_evictable:
            group = self._evictable[entry.address]
            del group[key]
            if not group:
                del self._evictable[entry.address]
        elif phase is not RUNNING and not was_evictable:
            self._evictable.setdefault(entry.address, {})[key] = None

    def _drop_bytes(self, entry: _Entry) -> None:
        self._held -= entry.held
        self._deciding -= entry.deciding
        entry.held = entry.deciding = 0

    def _slot_victim(self, address: str, now: float) -> Key | None:
        """The connection to close for a newcomer from ``address`` (see the module's docstring),
        or None when none may be closed."""
        settled: tuple[tuple[int, float, int], Key] | None = None
        young: tuple[tuple[int, float, int], Key] | None = None
        for group_address, group in self._evictable.items():
            first = next(iter(group))
            entry = self._entries[first]
            rank = (-len(group) - (group_address == address), entry.since, entry.order)
            if now - entry.since >= self.limits.grace:
                if settled is None or rank < settled[0]:
                    settled = (rank, first)
            elif young is None or rank < young[0]:
                young = (rank, first)
        chosen = settled or young
        return chosen[1] if chosen else None

    def _body_victim(self, key: Key, entry: _Entry) -> Key | None:
        """The connection to close to make room for ``key``'s bytes: the longest-waiting of the
        address holding the most body bytes (``key``'s own counted with its address)."""
        weights: dict[str, int] = {}
        oldest: dict[str, tuple[float, int, Key]] = {}
        for other_key, other in self._entries.items():
            if other_key == key or other.phase is RUNNING or not other.held:
                continue
            weights[other.address] = weights.get(other.address, 0) + other.held
            best = oldest.get(other.address)
            if best is None or (other.since, other.order) < best[:2]:
                oldest[other.address] = (other.since, other.order, other_key)
        if not oldest:
            return None
        if entry.address in weights:
            weights[entry.address] += entry.held
        chosen = min(weights, key=lambda a: (-weights[a], *oldest[a][:2]))
        return oldest[chosen][2]


class Throttle:
    """One log line per ``interval`` seconds for one kind of trouble, counting the rest."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: float | None = None
        self._held_back = 0

    def note(self, now: float) -> int | None:
        """Count one event. When a line is due, returns how many were held back since the last
        line (and starts a new interval); otherwise ``None``."""
        if self._last is not None and now - self._last < self.interval:
            self._held_back += 1
            return None
        held_back, self._held_back, self._last = self._held_back, 0, now
        return held_back
