"""The endpoint's connections: each one's reads and writes bounded by its deadline, and all of
them kept under one lock by a :class:`Guard` that carries out the decisions of
:mod:`warmgate.serve.connections`.

The standard library's handler reads through ``rfile`` and writes through ``wfile``, each call
under the socket's timeout, which a client resets with every byte it sends. Here each read, write
and the TLS handshake gets the time left until :attr:`Connection.deadline` (set from
:class:`warmgate.serve.connections.Table`'s decisions), so the deadline holds for the whole exchange
however the client spreads its bytes. Past it, :class:`ExpiredError` is raised; it is no
``TimeoutError``, so the handler's own handling of those (a log line each) never sees it.

:meth:`Connection.drop` closes a connection whose thread may be blocked in a read, a write or the
handshake: ``shutdown`` on the descriptor wakes the thread (``close`` would not, and could let a
new connection reuse the number under it); the thread then raises :class:`DroppedError` and ends.
The socket's own ``shutdown`` is bypassed for TLS sockets: :class:`ssl.SSLSocket`'s forgets its
TLS state, after which a write in the other thread would go out in plain text.

:class:`Guard` holds the :class:`~warmgate.serve.connections.Table` and the connections' phases: it
admits a connection or refuses it, drops those the table evicts, wakes bodies queued for their
turn to be decided, and counts each :class:`Trouble` a client causes, logging one line a minute
of each kind with the count of those held back. A connection's thread calls it at each step of
an exchange; a step on a dropped connection raises :class:`DroppedError`.
"""

from __future__ import annotations

import contextlib
import enum
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from warmgate.serve.connections import Limits, Room, Table, Throttle

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

Clock = Callable[[], float]
Reporter = Callable[[str], None]
"""Takes one line about a problem with a client or the listening socket."""


class Trouble(enum.Enum):
    """What a client cost the endpoint; each kind is logged at most once a minute."""

    DEADLINE = "deadline"
    """A connection closed for not delivering its request (or taking its answer) in time."""
    EVICTED = "evicted"
    """A connection waiting on its client closed to make room for a newcomer."""
    REFUSED = "refused"
    """A newcomer closed at once: every connection was busy answering, or still closing."""
    BUSY = "busy"
    """A body answered 503: its turn to be decided did not come before its deadline."""
    MALFORMED = "malformed"
    """A request that is not HTTP (or a handshake that is not TLS), answered 400 or dropped."""
    FAILED = "failed"
    """An error of the endpoint itself while serving a request."""


class ExpiredError(Exception):
    """The connection's deadline passed before its client delivered."""


class HeadTooLargeError(Exception):
    """The client sent more than :attr:`Limits.head_bytes` without completing a request head."""


class DroppedError(Exception):
    """The connection was closed from another thread (evicted, or the server stopping)."""


class Connection:
    """One accepted connection: its socket, its client's address and its current deadline."""

    __slots__ = ("address", "closed", "deadline", "dropped", "head_left", "peer", "sock")

    def __init__(self, sock: socket.socket, address: tuple[str, int] | tuple[str, int, int, int]):
        self.sock = sock
        self.address = address
        self.peer = str(address[0]) if address else "?"
        self.deadline = 0.0
        self.head_left: int | None = None
        """Bytes the request head may still take; None while a body is read or answered."""
        self.dropped = False
        """Set by :meth:`drop`: whatever the thread sees next, it is not the client's doing."""
        self.closed = False
        """Set (under the guard's lock) before the socket is closed: no drop after that."""

    def drop(self) -> None:
        """Wake the connection's thread and end the connection (call under the guard's lock,
        and only while :attr:`closed` is false)."""
        self.dropped = True
        with contextlib.suppress(OSError):  # not connected any more: the thread is ending
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def left(self, clock: Clock) -> float:
        """Seconds until the deadline; raises :class:`ExpiredError` or :class:`DroppedError`
        when there is nothing left to wait for."""
        if self.dropped:
            raise DroppedError
        left = self.deadline - clock()
        if left <= 0:
            raise ExpiredError
        return left

    @contextlib.contextmanager
    def socket_errors(self) -> Iterator[None]:
        """What a socket call past its timeout or on a dropped connection raises: a timeout is
        :class:`ExpiredError`, any error once :meth:`drop` ended it :class:`DroppedError`."""
        try:
            yield
        except TimeoutError:
            raise ExpiredError from None
        except OSError:
            if self.dropped:
                raise DroppedError from None
            raise

    def handshake(self, clock: Clock = time.monotonic) -> None:
        """Complete the TLS handshake before the deadline (a no-op for plain connections)."""
        if not isinstance(self.sock, ssl.SSLSocket):
            return
        self.sock.settimeout(self.left(clock))
        with self.socket_errors():
            self.sock.do_handshake()


class DeadlineReader(io.RawIOBase):
    """Reads of a :class:`Connection`, each bounded by the time left until its deadline."""

    def __init__(self, connection: Connection, clock: Clock = time.monotonic) -> None:
        self.connection = connection
        self.clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        connection = self.connection
        connection.sock.settimeout(connection.left(self.clock))
        head_left = connection.head_left
        if head_left is not None and head_left <= 0:
            raise HeadTooLargeError
        with connection.socket_errors(), memoryview(buffer) as view:
            count = connection.sock.recv_into(view if head_left is None else view[:head_left])
        if count == 0 and connection.dropped:
            raise DroppedError  # the end was ours, not the client's: nothing it sent is complete
        if head_left is not None:
            connection.head_left = head_left - count
        return count


class DeadlineWriter(io.BufferedIOBase):
    """Writes to a :class:`Connection`, all of each bounded by the time left until its deadline
    (``sendall`` would give a TLS socket the whole timeout again for every record)."""

    def __init__(self, connection: Connection, clock: Clock = time.monotonic) -> None:
        self.connection = connection
        self.clock = clock

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        connection = self.connection
        with memoryview(data) as view, view.cast("B") as octets:
            sent = 0
            while sent < len(octets):
                connection.sock.settimeout(connection.left(self.clock))
                with connection.socket_errors():
                    sent += connection.sock.send(octets[sent:])
            return sent


class Guard:
    """The connections of one endpoint, under one lock (see the module's docstring)."""

    def __init__(self, limits: Limits, clock: Clock, report: Reporter) -> None:
        self.limits = limits
        self.clock = clock
        self.report = report
        self.counts = dict.fromkeys(Trouble, 0)
        self._lock = threading.Condition()
        self._table: Table[Connection] = Table(limits)
        self._alive = 0
        self._throttles = {kind: Throttle() for kind in Trouble}

    def admit(self, connection: Connection) -> bool:
        """Admit a new connection, dropping the one the table evicts for it; False: refused
        (close it). An admitted connection must be :meth:`forget`-ten when its thread ends."""
        now = self.clock()
        with self._lock:
            if self._alive >= 2 * self.limits.connections:
                room: Room[Connection] = Room(False)  # dropped ones are still ending
            else:
                room = self._table.open(connection, connection.peer, now)
            self._drop(room.evicted)
            if room.admitted:
                connection.deadline = now + self.limits.head
                connection.head_left = self.limits.head_bytes
                self._alive += 1
        for victim in room.evicted:
            self.trouble(Trouble.EVICTED, f"all {self.limits.connections} connections taken: "
                         f"closed one from {victim.peer} that was waiting on its client, to "
                         f"serve one from {connection.peer}")  # fmt: skip
        if not room.admitted:
            self.trouble(Trouble.REFUSED, f"all {self.limits.connections} connections busy "
                         f"answering or still closing: closed a new one from {connection.peer} "
                         "at once")  # fmt: skip
        return room.admitted

    def forget(self, connection: Connection) -> None:
        """An admitted connection's thread ends (call before closing its socket)."""
        with self._lock:
            self._table.close(connection)
            connection.closed = True  # nobody drops it after this
            self._alive -= 1
            self._lock.notify_all()

    def running(self, connection: Connection) -> None:
        """The request is complete and its answer is being computed: protected."""
        with self._lock:
            self._check(connection)
            self._table.running(connection)
            connection.head_left = None

    def waiting(self, connection: Connection) -> None:
        """The answer is computed: the client has until the deadline to take it and to send
        the next request head."""
        with self._lock:
            self._check(connection)
            connection.deadline = self._table.waiting(connection, self.clock())
            connection.head_left = self.limits.head_bytes
            self._lock.notify_all()  # its body bytes are free: a queued body may go

    def reading_body(self, connection: Connection) -> None:
        """The head is complete; its body follows."""
        with self._lock:
            self._check(connection)
            connection.deadline = self._table.reading_body(connection, self.clock())
            connection.head_left = None

    def hold(self, connection: Connection, size: int) -> bool:
        """Hold ``size`` more bytes of ``connection``'s body, dropping others' to make room and
        waiting for the dropped ones' threads to give their bytes back; False if the deadline
        came first."""
        with self._lock:
            self._check(connection)
            room = self._table.hold(connection, size)
            self._drop(room.evicted)
            while self._table.held > self.limits.held_bytes:
                left = connection.deadline - self.clock()
                if left <= 0:
                    break
                self._lock.wait(left)
                self._check(connection)
            admitted = self._table.held <= self.limits.held_bytes
        for victim in room.evicted:
            self.trouble(Trouble.EVICTED, f"the memory for bodies is taken: closed one from "
                         f"{victim.peer} still being sent, for one from "
                         f"{connection.peer}")  # fmt: skip
        return admitted

    def decide(self, connection: Connection) -> bool:
        """Wait for ``connection``'s turn to be decided; False if its deadline came first."""
        with self._lock:
            while True:
                self._check(connection)
                if self._table.decide(connection):
                    return True
                left = connection.deadline - self.clock()
                if left <= 0:
                    return False
                self._lock.wait(left)

    def serving(self) -> int:
        """Connections admitted and not yet closed or evicted."""
        with self._lock:
            return len(self._table)

    def close_all(self, timeout: float) -> bool:
        """Drop every connection and wait up to ``timeout`` seconds for their threads to end;
        True if they all did."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._drop(self._table.connections())
            while self._alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def failed(self, connection: Connection | None, exc: BaseException | None) -> None:
        """A connection's exchange ended in ``exc``: count and log it unless it was routine
        (the client hung up) or ours (dropped)."""
        if isinstance(exc, DroppedError) or (connection is not None and connection.dropped):
            return  # evicted (counted then), or the server stopping
        peer = connection.peer if connection is not None else "?"
        idle = connection is not None and connection.head_left == self.limits.head_bytes
        if isinstance(exc, ExpiredError) and idle:
            return  # nothing of a request yet: a kept-alive connection's routine end
        if isinstance(exc, HeadTooLargeError):
            self.trouble(Trouble.MALFORMED, f"bad request from {peer}: a request head over "
                         f"{self.limits.head_bytes} bytes; closed")  # fmt: skip
        elif isinstance(exc, ExpiredError):
            self.trouble(Trouble.DEADLINE, f"closed a connection from {peer} that did not "
                         f"deliver its request in time ({self.limits.head:g}s for a head, "
                         f"{self.limits.body:g}s more for a body)")  # fmt: skip
        elif isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
            reason = exc.reason or type(exc).__name__
            self.trouble(Trouble.MALFORMED, f"bad request from {peer}: TLS: {reason}")
        elif not isinstance(exc, ConnectionError | TimeoutError | ssl.SSLEOFError):
            self.trouble(Trouble.FAILED, f"request from {peer} failed: "
                         f"{type(exc).__name__}: {exc}")  # fmt: skip

    def trouble(self, kind: Trouble, line: str) -> None:
        """Count one ``kind`` of trouble; log ``line`` if none was logged for a minute."""
        with self._lock:
            self.counts[kind] += 1
            held_back = self._throttles[kind].note(self.clock())
        if held_back is not None:
            more = f" ({held_back} more like it since the last such line)" if held_back else ""
            self.report(line + more)

    def _check(self, connection: Connection) -> None:
        if connection.dropped or connection not in self._table:
            raise DroppedError

    def _drop(self, connections: Iterable[Connection]) -> None:
        """End connections the table no longer counts (evicted, or all when stopping)."""
        dropped = False
        for connection in connections:
            if not connection.closed:
                connection.drop()
                dropped = True
        if dropped:
            self._lock.notify_all()  # a dropped body waiting for its turn gives up
