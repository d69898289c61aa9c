"""The lifecycle as a transition table: waiting, warming, ready, failed, and the ways between.

Two rules, as in h11's state machine: everything that decides a lifecycle change lives in this
module, and this module knows nothing about I/O, clocks or asyncio. Two shells feed it:

- the *warm-up* (``runtime/warmup.py``: ``prime``, and each *primer*, the child process ``run``
  starts) turns probe results, the gate's verdicts, what the traffic meets and ticks into
  events, and carries out the actions: start or stop the load, publish, finish;
- the *supervisor* (``runtime/supervisor.py``: the long-lived ``run`` process) starts a primer
  whenever it arms, watches the app once the primer has finished, and re-arms;
- the *open run* (``runtime/open_run.py``: ``run`` without its optional config) opens at once.

Both shells publish what :meth:`Lifecycle.public` says: the public state and readiness are
decided here and nowhere else.

Theory of operation::

    NEW --arm--> WAITING --up--> WARMING --warm--> READY
    NEW --open--> READY                           (no config: ready without warming)
    NEW --resume--> RESUMING --up--> CONFIRMING --warm--> READY
                                        '--not_confirmed--> WARMING
    WARMING/CONFIRMING --lost--> WAITING          (the deadline is *not* reset)
    WAITING/RESUMING/WARMING/CONFIRMING --deadline--> READY (fail open) or FAILED (fail closed)
    NEW --supervise--> PRIMING --primer_ready--> READY --restarted/gone/answered--> PRIMING
                          |--primer_failed--> FAILED --retry/answered--> PRIMING
                          '--primer_crashed--> PRIMING (again, after a back-off)
    any state but STOPPED --stop--> STOPPED

*One deadline per arming*: the wait deadline runs from the arming, the warm-up deadline from
the first time warming began in this arming, and going back to waiting (the target was lost)
resets neither, so a flapping target still ends by its deadline.

*Restarts versus overload*: probes arrive classified (``reach.py``, by exception type and
errno). A refused connection means the app's process is gone (a sidecar talks to its own pod),
so a ready gate re-arms at the first one, however short the outage. A target that is busy (its
port open, but no answer in time: a connect that times out is a full accept queue) is
overloaded, not restarted: once the outcome is reached that counts as up and never re-arms;
before it, the target is not up yet. Only a target that cannot be reached at all (no route,
unknown host, a reset) for ``rearm_after`` seconds re-arms, as the app may have moved.

*Lost while warming*: when every request of the last ``lost_after`` seconds failed to connect,
after at least that long of load, warming goes back to waiting (:meth:`Lifecycle.traffic`; the
shell says when the load really started, which a jitter pause can delay).

Events the machine derives itself from what the shell reports (so the table stays plain
data): ``gone`` (unreachable for ``rearm_after``), ``answered`` (a target that never answered
before the outcome answers at last), ``lost`` (from :meth:`Lifecycle.traffic`), ``retry``
(``retry_after`` passed after failing closed), ``not_confirmed`` and the two deadline events,
from :meth:`Lifecycle.tick`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from warmgate.decide.reach import Reach


class State(StrEnum):
    """Where a lifecycle is."""

    NEW = "new"
    WAITING = "waiting"
    """For the target to answer."""
    RESUMING = "resuming"
    """For the target to answer, after warmgate's own restart found it ready before."""
    WARMING = "warming"
    """Priming with a rising load until the gate opens."""
    CONFIRMING = "confirming"
    """A short check at the target level: is the app still warm after warmgate restarted?"""
    PRIMING = "priming"
    """``run``: a primer process owns the decision until it ends."""
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def public(self) -> str:
        """The state name status.json, /status and ``warmgate_state`` show."""
        return _PUBLIC.get(self, self.value)


_PUBLIC = {
    State.NEW: "waiting",
    State.RESUMING: "waiting",
    State.CONFIRMING: "warming",
    State.PRIMING: "warming",
}

PUBLIC_STATES = ("waiting", "warming", "ready", "failed", "stopped")
"""Every public state name, in lifecycle order."""


class Event(StrEnum):
    """What can happen to a lifecycle."""

    ARM = "arm"
    RESUME = "resume"
    SUPERVISE = "supervise"
    UP = "up"
    """A probe: the target answers."""
    REFUSED = "refused"
    """A probe: a connection was refused; the target's process is gone."""
    UNREACHABLE = "unreachable"
    """A probe: no way to reach the target at all (no route, unknown host)."""
    BUSY = "busy"
    """A probe: the port is open but the target did not answer in time (overloaded, starting)."""
    LOST = "lost"
    """Warming: nothing but connection errors for a while (derived by :meth:`Lifecycle.traffic`)."""
    OPEN = "open"
    """No config to warm with: ready at once (``run --optional-config-map``)."""
    WARM = "warm"
    NOT_CONFIRMED = "not_confirmed"
    TIMED_OUT_OPEN = "timed_out_open"
    TIMED_OUT_CLOSED = "timed_out_closed"
    PRIMER_READY = "primer_ready"
    PRIMER_FAILED = "primer_failed"
    PRIMER_CRASHED = "primer_crashed"
    RESPAWN = "respawn"
    """The back-off after a crashed primer is over."""
    RESTARTED = "restarted"
    """Ready, a connection was refused: the app's process is gone, whatever the outage's length."""
    GONE = "gone"
    """Ready, the target has been unreachable for ``rearm_after``."""
    ANSWERED = "answered"
    """A target that never answered before the outcome answers at last (it is cold)."""
    RETRY = "retry"
    STOP = "stop"


class Action(StrEnum):
    """What the shell must do after a transition."""

    START_LOAD = "start_load"
    """Prime with the ramp, from concurrency 1."""
    START_LOAD_AT_TARGET = "start_load_at_target"
    """Prime at the target level at once (the confirmation)."""
    STOP_LOAD = "stop_load"
    SPAWN = "spawn"
    """Start a primer process."""
    STOP_PRIMER = "stop_primer"
    WITHDRAW = "withdraw"
    """Readiness is gone: say so on every surface before anything else."""
    FINISH = "finish"
    """An outcome was reached: publish it and record the warm-up."""
    PUBLISH = "publish"


S, E = State, Event
_OUTCOMES = {E.TIMED_OUT_OPEN: S.READY, E.TIMED_OUT_CLOSED: S.FAILED, E.STOP: S.STOPPED}
_PROBES = {E.UP: None, E.REFUSED: None, E.UNREACHABLE: None, E.BUSY: None}
"""Probe results that leave a state as it is (``None``: stay)."""

TRANSITIONS: dict[State, dict[Event, State | None]] = {
    S.NEW: {
        E.ARM: S.WAITING,
        E.RESUME: S.RESUMING,
        E.SUPERVISE: S.PRIMING,
        E.OPEN: S.READY,
        E.STOP: S.STOPPED,
    },
    S.WAITING: {**_PROBES, E.UP: S.WARMING, **_OUTCOMES},
    S.RESUMING: {**_PROBES, E.UP: S.CONFIRMING, E.REFUSED: S.WAITING, **_OUTCOMES},
    S.WARMING: {**_PROBES, E.WARM: S.READY, E.LOST: S.WAITING, **_OUTCOMES},
    S.CONFIRMING: {
        **_PROBES,
        E.WARM: S.READY,
        E.NOT_CONFIRMED: S.WARMING,
        E.LOST: S.WAITING,
        **_OUTCOMES,
    },
    S.PRIMING: {
        **_PROBES,
        E.PRIMER_READY: S.READY,
        E.PRIMER_FAILED: S.FAILED,
        E.PRIMER_CRASHED: None,
        E.RESPAWN: None,
        **_OUTCOMES,
    },
    S.READY: {
        **_PROBES,
        E.RESTARTED: S.PRIMING,
        E.GONE: S.PRIMING,
        E.ANSWERED: S.PRIMING,
        E.STOP: S.STOPPED,
    },
    S.FAILED: {**_PROBES, E.RETRY: S.PRIMING, E.ANSWERED: S.PRIMING, E.STOP: S.STOPPED},
    S.STOPPED: {E.STOP: None},
}
"""state -> event -> next state (``None``: stay). An event missing here is illegal."""
del S, E


class LifecycleError(Exception):
    """An event that the current state does not accept: a bug in the shell."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The timings a lifecycle follows. Seconds; ``0`` disables ``rearm_after``/``retry_after``."""

    wait_timeout: float = 300.0
    gate_timeout: float = 300.0
    fail_closed: bool = False
    rearm_after: float = 5.0
    retry_after: float = 60.0
    confirm_for: float = 5.0
    """How long the confirmation after warmgate's own restart may take before a full warm-up."""
    lost_after: float = 5.0
    """Seconds of load that met nothing but connection errors that send warming back to
    waiting."""
    crash_backoff: float = 1.0
    """First pause before restarting a crashed primer; doubles up to ``crash_backoff_max``."""
    crash_backoff_max: float = 30.0


@dataclass(frozen=True, slots=True)
class Transition:
    """What one event did: from where, to where, and what the shell must do now."""

    event: Event
    previous: State
    state: State
    actions: tuple[Action, ...]
    reason: str = ""

    @property
    def changed(self) -> bool:
        """Whether the state moved."""
        return self.state is not self.previous


_GIVE_UPS = frozenset({Event.TIMED_OUT_OPEN, Event.TIMED_OUT_CLOSED, Event.STOP})
_LOAD = {State.WARMING: Action.START_LOAD, State.CONFIRMING: Action.START_LOAD_AT_TARGET}
_PRIMING_STATES = frozenset(
    {State.WAITING, State.RESUMING, State.WARMING, State.CONFIRMING, State.PRIMING}
)
_PROBE_EVENTS = {
    Reach.UP: Event.UP,
    Reach.REFUSED: Event.REFUSED,
    Reach.UNREACHABLE: Event.UNREACHABLE,
    Reach.BUSY: Event.BUSY,
}
_LATE_IGNORED = frozenset({*_PROBE_EVENTS.values(), Event.LOST, Event.NOT_CONFIRMED, Event.RESPAWN})
"""Events that come too late once the deadline has passed: the deadline wins."""
PRIMER_GRACE = 10.0
"""Seconds a supervisor adds to a primer's own deadline before it gives up for it (a primer
that keeps crashing must not keep a pod out of service for longer than a gate would)."""


def actions_for(previous: State, state: State, event: Event) -> tuple[Action, ...]:
    """The actions a move from ``previous`` to ``state`` asks of the shell."""
    actions: list[Action] = []
    if previous is State.READY and state is not State.READY:
        actions.append(Action.WITHDRAW)
    if previous in _LOAD and state is not previous:
        actions.append(Action.STOP_LOAD)
    if previous is State.PRIMING and event in _GIVE_UPS:
        actions.append(Action.STOP_PRIMER)  # a primer that reached its outcome ends by itself
    if state in _LOAD and state is not previous:
        actions.append(_LOAD[state])
    if state is State.PRIMING and event is not Event.PRIMER_CRASHED:
        actions.append(Action.SPAWN)
    if state in (State.READY, State.FAILED) and state is not previous:
        actions.append(Action.FINISH)
    actions.append(Action.PUBLISH)
    return tuple(actions)


class Lifecycle:
    """One warmgate's lifecycle: feed it events with ``now``; read ``state`` and the actions."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.state = State.NEW
        self.armed_at: float | None = None
        self.warming_since: float | None = None
        """When warming first began in this arming: the warm-up deadline counts from here."""
        self.confirm_until: float | None = None
        self.unreachable_since: float | None = None
        self.answered = False
        """Whether the target answered at all in this arming."""
        self.failed_at: float | None = None
        self.crashes = 0
        self.respawn_at: float | None = None
        self.rearms = 0
        self.last_probe: Event | None = None
        self.load_since: float | None = None
        """When the load last started while warming or confirming (after any jitter pause)."""

    @property
    def ready(self) -> bool:
        """Whether readiness is claimed now."""
        return self.state is State.READY

    def public(self, reported: str | None = None) -> tuple[str, bool]:
        """The public state (status.json, /status, ``warmgate_state``) and readiness, now.

        Warming whose load has not started yet (a jitter pause) is still ``waiting``. While a
        primer owns the decision (``run``: PRIMING), its ``reported`` phase is shown, waiting
        until it says warming; never ready.
        """
        state = self.state
        if state is State.PRIMING:
            return (reported if reported == _PUBLIC[State.PRIMING] else "waiting"), False
        if state in _LOAD and self.load_since is None:
            return "waiting", False
        return state.public, state is State.READY

    def probe(self, reach: Reach, now: float) -> Transition:
        """What a probe of the target found (``reach.py``)."""
        return self.handle(_PROBE_EVENTS[reach], now)

    def load_started(self, now: float) -> None:
        """The shell has started the load that warming or confirming asked for."""
        if self.state in _LOAD:
            self.load_since = now

    def traffic(self, now: float, *, connecting_fails: bool) -> Transition | None:
        """While warming: ``connecting_fails`` says whether every request of the last
        ``lost_after`` seconds failed to connect. After that long of load, the target is lost:
        back to waiting for it."""
        lost_after = self.policy.lost_after
        if (
            connecting_fails
            and self.state in _LOAD
            and self.load_since is not None
            and now - self.load_since >= lost_after
        ):
            return self.handle(Event.LOST, now)
        return None

    def deadline(self) -> float:
        """When this arming gives up (fail open or closed); ``inf`` outside the priming states.

        The confirmation has none: its own budget ends it, in a full warm-up, never in an
        outcome (a restarted app must not be waved through by a deadline).
        """
        if self.state not in _PRIMING_STATES or self.armed_at is None:
            return math.inf
        if self.state is State.CONFIRMING:
            return math.inf
        policy = self.policy
        if self.state is State.PRIMING:
            return self.armed_at + policy.wait_timeout + policy.gate_timeout + PRIMER_GRACE
        if self.warming_since is not None:
            return self.warming_since + policy.gate_timeout
        return self.armed_at + policy.wait_timeout

    def handle(self, event: Event, now: float, reason: str = "") -> Transition:
        """Apply ``event`` at ``now``; raises :class:`LifecycleError` if it is illegal here."""
        previous = self.state
        table = TRANSITIONS[previous]
        if event in _LATE_IGNORED and now >= self.deadline():
            # Whatever the shell saw last, past the deadline this arming has ended.
            event = Event.TIMED_OUT_CLOSED if self.policy.fail_closed else Event.TIMED_OUT_OPEN
        if event not in table:
            raise LifecycleError(
                f"event {event.value!r} is not allowed in state {previous.value!r}"
            )
        if event in _PROBE_EVENTS.values():
            derived = self._probe(event, now)
            if derived is not None and derived in table:
                event = derived
        target = table[event]
        state = previous if target is None else target
        self.state = state
        self._enter(previous, state, event, now)
        return Transition(event, previous, state, actions_for(previous, state, event), reason)

    def tick(self, now: float) -> Transition | None:
        """Let time pass: deadlines, the confirmation budget, retries and respawns."""
        state = self.state
        if state in _PRIMING_STATES and now >= self.deadline():
            event = Event.TIMED_OUT_CLOSED if self.policy.fail_closed else Event.TIMED_OUT_OPEN
            return self.handle(event, now)
        if (
            state is State.CONFIRMING
            and self.confirm_until is not None
            and now >= self.confirm_until
        ):
            return self.handle(Event.NOT_CONFIRMED, now)
        if (
            state is State.FAILED
            and self.answered
            and self.policy.retry_after
            and self.failed_at is not None
            and now >= self.failed_at + self.policy.retry_after
        ):
            return self.handle(Event.RETRY, now)
        if state is State.PRIMING and self.respawn_at is not None and now >= self.respawn_at:
            self.respawn_at = None
            return self.handle(Event.RESPAWN, now)
        return None

    def note_answered(self, answered: bool) -> None:
        """``run``: what the primer says about whether the target answered in this arming, so
        an outcome the supervisor reaches itself (a crash-looping primer) judges the same."""
        self.answered = self.answered or answered

    def primer_outcome(self, now: float, *, ready: bool | None, answered: bool) -> Transition:
        """``run``: the primer reached an outcome: ready, failed closed (``False``), or it died
        without one (``None``; it is started again after a back-off)."""
        if ready is None:
            self.crashes += 1
            pause = self.policy.crash_backoff * 2 ** (self.crashes - 1)
            self.respawn_at = now + min(self.policy.crash_backoff_max, pause)
            return self.handle(Event.PRIMER_CRASHED, now)
        self.crashes = 0
        self.answered = answered
        if answered:
            self.last_probe = Event.UP  # the primer's answers are newer than any probe
        return self.handle(Event.PRIMER_READY if ready else Event.PRIMER_FAILED, now)

    def _probe(self, event: Event, now: float) -> Event | None:  # noqa: PLR0911 - one rule a line
        """Remember a probe result; the event it stands for in READY/FAILED, if any."""
        if event is Event.BUSY and self.state in (State.READY, State.FAILED):
            event = Event.UP  # the outcome is reached: an open port that is slow is up
        self.last_probe = event
        if event is not Event.UNREACHABLE:
            self.unreachable_since = None
        if self.state not in (State.READY, State.FAILED):
            if event is Event.UP:
                self.answered = True
            return None
        if event is Event.UP:
            if not self.answered:
                return Event.ANSWERED
            return None
        if not self.answered:
            return None  # nothing ever answered: there is nothing to lose
        if event is Event.REFUSED:
            if self.policy.rearm_after and self.state is State.READY:
                return Event.RESTARTED
            return None
        if self.unreachable_since is None:
            self.unreachable_since = now
        rearm = self.policy.rearm_after
        if rearm and self.state is State.READY and now - self.unreachable_since >= rearm:
            return Event.GONE
        return None

    def _enter(self, previous: State, state: State, event: Event, now: float) -> None:
        if event in (Event.ARM, Event.RESUME):
            self._arm(now)
            if event is Event.RESUME:
                self.answered = False
        elif state is State.PRIMING and previous is not State.PRIMING:
            self._arm(now)
            if previous is not State.NEW:
                self.rearms += 1
        if state is State.WARMING and self.warming_since is None:
            self.warming_since = now
        if state is not previous:
            self.load_since = None
        if state is State.CONFIRMING and previous is not State.CONFIRMING:
            self.confirm_until = now + self.policy.confirm_for
        if state is State.FAILED and previous is not State.FAILED:
            self.failed_at = now

    def _arm(self, now: float) -> None:
        self.armed_at = now
        self.warming_since = None
        self.confirm_until = None
        self.unreachable_since = None
        self.failed_at = None
        self.respawn_at = None
        self.answered = False
