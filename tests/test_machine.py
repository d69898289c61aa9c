"""The lifecycle machine on plain data: the table, the deadlines, and properties over any history."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from warmgate.decide.lifecycle import (
    TRANSITIONS,
    Action,
    Event,
    Lifecycle,
    LifecycleError,
    Policy,
    State,
)
from warmgate.decide.reach import Reach

POLICY = Policy(wait_timeout=30, gate_timeout=60, rearm_after=5, retry_after=10, confirm_for=5)


def primer(policy: Policy = POLICY, *, resume: bool = False) -> Lifecycle:
    """A primer's lifecycle, armed at t=0."""
    machine = Lifecycle(policy)
    machine.handle(Event.RESUME if resume else Event.ARM, 0.0)
    return machine


def supervisor(policy: Policy = POLICY) -> Lifecycle:
    """A supervisor's lifecycle whose first primer ended warm at t=10."""
    machine = Lifecycle(policy)
    machine.handle(Event.SUPERVISE, 0.0)
    machine.primer_outcome(10.0, ready=True, answered=True)
    return machine


def test_every_state_has_a_row_and_every_target_is_a_state() -> None:
    """The table covers every state, and names only real states."""
    assert set(TRANSITIONS) == set(State)
    for row in TRANSITIONS.values():
        assert all(target is None or isinstance(target, State) for target in row.values())


def test_an_illegal_event_raises() -> None:
    """WARM makes no sense while waiting: the shell has a bug, and it is said at once."""
    machine = primer()
    with pytest.raises(LifecycleError, match="'warm' is not allowed in state 'waiting'"):
        machine.handle(Event.WARM, 1.0)


def test_fresh_warm_up_path_and_actions() -> None:
    """arm -> waiting -> (up) warming with the ramp -> (warm) ready, finishing once."""
    machine = primer()
    assert machine.state is State.WAITING
    step = machine.handle(Event.UP, 1.0)
    assert step.state is State.WARMING
    assert Action.START_LOAD in step.actions
    step = machine.handle(Event.WARM, 9.0)
    assert step.state is State.READY
    assert step.actions[:2] == (Action.STOP_LOAD, Action.FINISH)


def test_resume_confirms_at_the_target_level_then_falls_back_to_a_full_warm_up() -> None:
    """After warmgate's own restart: confirm at the target level; unconfirmed means the ramp."""
    machine = primer(resume=True)
    assert machine.state is State.RESUMING
    step = machine.handle(Event.UP, 0.5)
    assert step.state is State.CONFIRMING
    assert Action.START_LOAD_AT_TARGET in step.actions
    assert machine.tick(5.0) is None
    step = machine.tick(5.5)
    assert step is not None
    assert step.state is State.WARMING
    assert step.actions == (Action.STOP_LOAD, Action.START_LOAD, Action.PUBLISH)


def test_resume_with_the_app_gone_is_a_full_warm_up() -> None:
    """A refused connection while resuming means the app restarted: no confirmation."""
    machine = primer(resume=True)
    assert machine.handle(Event.REFUSED, 0.2).state is State.WAITING
    assert machine.handle(Event.UP, 3.0).state is State.WARMING


def test_lost_targets_do_not_reset_the_deadline() -> None:
    """A target that answers TCP but drops every request still ends by the warm-up deadline."""
    machine = primer(Policy(wait_timeout=30, gate_timeout=8))
    now = 0.0
    while machine.state in (State.WAITING, State.WARMING):
        machine.handle(Event.UP if machine.state is State.WAITING else Event.LOST, now)
        machine.tick(now)
        now += 0.5
    assert machine.state is State.READY
    assert now <= 8.5 + 0.5


def test_the_deadline_fails_closed_when_asked() -> None:
    """on_timeout: fail gives FAILED at the wait deadline."""
    machine = primer(Policy(wait_timeout=3, fail_closed=True))
    assert machine.tick(2.9) is None
    step = machine.tick(3.0)
    assert step is not None
    assert (step.event, step.state) == (Event.TIMED_OUT_CLOSED, State.FAILED)


def test_a_refusal_while_ready_re_arms_at_once() -> None:
    """The first refused connection withdraws readiness and starts a primer, however short."""
    machine = supervisor()
    step = machine.handle(Event.REFUSED, 11.0)
    assert (step.event, step.state) == (Event.RESTARTED, State.PRIMING)
    assert step.actions == (Action.WITHDRAW, Action.SPAWN, Action.PUBLISH)
    assert machine.rearms == 1


def test_timeouts_with_the_port_open_never_re_arm() -> None:
    """Overload (answers that time out) is not a restart; only `unreachable` for long is."""
    machine = supervisor()
    for second in range(11, 100):
        machine.handle(Event.UP, float(second))
        assert machine.state is State.READY


def test_unreachable_for_rearm_after_re_arms() -> None:
    """No route or no such host for rearm_after seconds: the app may have moved."""
    machine = supervisor()
    assert machine.handle(Event.UNREACHABLE, 11.0).state is State.READY
    assert machine.handle(Event.UNREACHABLE, 15.9).state is State.READY
    step = machine.handle(Event.UNREACHABLE, 16.0)
    assert (step.event, step.state) == (Event.GONE, State.PRIMING)


def test_rearm_after_zero_never_re_arms() -> None:
    """rearm_after: 0 keeps a ready gate ready whatever the probes say."""
    machine = supervisor(Policy(rearm_after=0))
    machine.handle(Event.REFUSED, 11.0)
    machine.handle(Event.UNREACHABLE, 100.0)
    assert machine.state is State.READY


def test_opened_without_an_answer_re_arms_when_the_target_answers() -> None:
    """Fail-open with nothing there: refusals change nothing; the first answer means cold."""
    machine = Lifecycle(POLICY)
    machine.handle(Event.SUPERVISE, 0.0)
    machine.primer_outcome(30.0, ready=True, answered=False)
    assert machine.handle(Event.REFUSED, 31.0).state is State.READY
    step = machine.handle(Event.UP, 40.0)
    assert (step.event, step.state) == (Event.ANSWERED, State.PRIMING)


def test_failed_closed_retries_after_retry_after() -> None:
    """A primer that failed closed is retried after retry_after, with a fresh arming."""
    machine = Lifecycle(POLICY)
    machine.handle(Event.SUPERVISE, 0.0)
    machine.primer_outcome(50.0, ready=False, answered=True)
    assert machine.state is State.FAILED
    assert machine.tick(59.9) is None
    step = machine.tick(60.0)
    assert step is not None
    assert (step.event, step.state) == (Event.RETRY, State.PRIMING)
    assert Action.SPAWN in step.actions


def test_a_crashed_primer_is_restarted_after_a_growing_back_off() -> None:
    """Crash, wait 1 s, respawn; crash again, wait 2 s."""
    machine = Lifecycle(POLICY)
    machine.handle(Event.SUPERVISE, 0.0)
    step = machine.primer_outcome(1.0, ready=None, answered=False)
    assert Action.SPAWN not in step.actions
    assert machine.tick(1.9) is None
    respawn = machine.tick(2.0)
    assert respawn is not None
    assert Action.SPAWN in respawn.actions
    machine.primer_outcome(3.0, ready=None, answered=False)
    assert machine.tick(4.9) is None
    assert machine.tick(5.0) is not None


def test_a_primer_that_keeps_crashing_opens_at_the_outer_deadline() -> None:
    """Never worse off than no gate: crash loops end at wait + warm-up timeouts + a grace."""
    machine = Lifecycle(Policy(wait_timeout=10, gate_timeout=20))
    machine.handle(Event.SUPERVISE, 0.0)
    assert machine.deadline() == 40.0
    step = machine.tick(40.0)
    assert step is not None
    assert step.state is State.READY
    assert Action.STOP_PRIMER in step.actions


def test_public_state_names() -> None:
    """Internal states map onto the documented waiting|warming|ready|failed|stopped."""
    assert {state.public for state in State} == {
        "waiting",
        "warming",
        "ready",
        "failed",
        "stopped",
    }


PROBES = st.sampled_from([Event.UP, Event.REFUSED, Event.UNREACHABLE])


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.floats(0.01, 5.0), st.sampled_from(["probe", "lost", "tick"]), PROBES)),
    st.booleans(),
    st.booleans(),
)
def test_prime_always_ends_by_its_deadline(
    history: list[tuple[float, str, Event]], resume: bool, fail_closed: bool
) -> None:
    """Whatever the target does, prime ends by wait + confirmation + warm-up timeouts."""
    policy = Policy(wait_timeout=20, gate_timeout=30, fail_closed=fail_closed, confirm_for=3)
    machine = primer(policy, resume=resume)
    now = 0.0
    for delay, kind, probe in history:
        now += delay
        if machine.state in (State.READY, State.FAILED):
            break
        if kind == "tick":
            machine.tick(now)
        elif kind == "lost" and machine.state in (State.WARMING, State.CONFIRMING):
            machine.handle(Event.LOST, now)
        elif machine.state in (State.WAITING, State.RESUMING):
            machine.handle(probe, now)
    # The bound: wait + confirmation budget + warm-up, the last from when warming began.
    end = max(now, 20 + 3 + 30)
    machine.tick(end)
    if machine.state is State.WARMING:  # a confirmation that just ended starts the warm-up
        assert machine.warming_since is not None
        machine.tick(machine.warming_since + 30)
    assert machine.state in (State.READY, State.FAILED)
    assert machine.state is (State.FAILED if fail_closed else State.READY)


class SupervisedLifecycle(RuleBasedStateMachine):
    """Any interleaving of probes, primer outcomes and time on a supervisor's lifecycle."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = Lifecycle(POLICY)
        self.now = 0.0
        self.machine.handle(Event.SUPERVISE, self.now)
        self.spawns = 1
        self.readies_from: list[Event] = []

    def _apply(self, step: object) -> None:
        if step is None:
            return
        assert hasattr(step, "actions")
        if Action.SPAWN in step.actions:  # type: ignore[attr-defined]
            self.spawns += 1
        if step.state is State.READY and step.changed:  # type: ignore[attr-defined]
            self.readies_from.append(step.event)  # type: ignore[attr-defined]

    @rule(seconds=st.floats(0.01, 20.0))
    def time_passes(self, seconds: float) -> None:
        """Ticks move deadlines, retries and respawns."""
        self.now += seconds
        self._apply(self.machine.tick(self.now))

    @rule(probe=PROBES)
    @precondition(lambda self: self.machine.state in (State.READY, State.FAILED))
    def probe(self, probe: Event) -> None:
        """The supervisor watches the target."""
        step = self.machine.handle(probe, self.now)
        self._apply(step)
        if probe is Event.REFUSED and self.machine.answered and step.previous is State.READY:
            assert not self.machine.ready

    @rule(ready=st.sampled_from([True, False, None]), answered=st.booleans())
    @precondition(lambda self: self.machine.state is State.PRIMING)
    def primer_ends(self, ready: bool | None, answered: bool) -> None:
        """The primer process reports its outcome or dies."""
        self._apply(self.machine.primer_outcome(self.now, ready=ready, answered=answered))

    @invariant()
    def ready_only_through_a_primer_or_a_deadline(self) -> None:
        """A re-arm always passes through priming: READY comes from a primer or the deadline."""
        assert set(self.readies_from) <= {Event.PRIMER_READY, Event.TIMED_OUT_OPEN}

    @invariant()
    def never_ready_after_a_refusal_it_vouched_against(self) -> None:
        """Never ready while the last probe said the app's process is gone (once it answered)."""
        machine = self.machine
        if machine.ready and machine.last_probe is Event.REFUSED:
            assert not machine.answered or not machine.policy.rearm_after

    @invariant()
    def the_deadline_is_finite_only_while_priming(self) -> None:
        """Outside priming nothing is pending."""
        finite = not math.isinf(self.machine.deadline())
        assert finite == (self.machine.state is State.PRIMING)


SupervisedLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=30)
TestSupervisedLifecycle = SupervisedLifecycle.TestCase


def test_a_confirmation_ends_in_a_full_warm_up_never_in_an_outcome() -> None:
    """A resume whose confirmation is still running at the wait deadline warms from nothing:
    a deadline never waves a possibly restarted app through."""
    machine = primer(Policy(wait_timeout=10, gate_timeout=60, confirm_for=5), resume=True)
    machine.handle(Event.UP, 8.0)
    assert machine.state is State.CONFIRMING
    assert machine.tick(10.5) is None
    step = machine.tick(13.0)
    assert step is not None
    assert (step.event, step.state) == (Event.NOT_CONFIRMED, State.WARMING)


def test_the_supervisor_judges_its_own_deadline_with_what_the_primer_saw() -> None:
    """A primer that answered, then kept crashing: the supervisor's fail-open is not undone
    by the next probe (the target had answered, so an answer is not news)."""
    machine = Lifecycle(Policy(wait_timeout=10, gate_timeout=20))
    machine.handle(Event.SUPERVISE, 0.0)
    machine.note_answered(True)
    machine.primer_outcome(5.0, ready=None, answered=False)
    step = machine.tick(40.0)
    assert step is not None
    assert step.state is State.READY
    assert machine.handle(Event.UP, 40.5).state is State.READY


def test_a_primer_the_supervisor_stopped_for_hanging_is_not_called_an_oom_kill() -> None:
    """How a primer ended without an outcome: hung and stopped by the supervisor (whatever
    signal that took), killed by the kernel's SIGKILL, another signal, or an exit code."""
    from warmgate.runtime.supervisor import primer_death

    assert primer_death(-9, 31.4) == (
        "hung (it said nothing for 31s) and was stopped by the supervisor"
    )
    assert primer_death(1, 30.2).startswith("hung (it said nothing for 30s)")
    assert primer_death(-9) == (
        "killed by signal 9 (perhaps the out-of-memory killer: raise the container's memory limit)"
    )
    assert primer_death(-11) == "killed by signal 11"
    assert primer_death(3) == "exited with code 3"


def test_warming_whose_load_has_not_started_is_shown_as_waiting() -> None:
    """The jitter pause: warming in the machine, waiting in public, until the load starts."""
    machine = primer()
    machine.handle(Event.UP, 1.0)
    assert machine.public() == ("waiting", False)
    machine.load_started(3.0)
    assert machine.public() == ("warming", False)
    machine.handle(Event.WARM, 9.0)
    assert machine.public() == ("ready", True)


def test_a_supervisor_shows_its_primer_phase_and_never_ready_while_priming() -> None:
    """PRIMING: waiting until the primer says warming; an outcome is the machine's to show."""
    machine = Lifecycle(POLICY)
    machine.handle(Event.SUPERVISE, 0.0)
    assert machine.public() == ("waiting", False)
    assert machine.public("warming") == ("warming", False)
    assert machine.public("ready") == ("waiting", False)
    machine.primer_outcome(5.0, ready=True, answered=True)
    assert machine.public("warming") == ("ready", True)


def test_an_open_run_is_ready_at_once_and_stopped_by_a_signal() -> None:
    """NEW --open--> READY; STOP withdraws readiness."""
    machine = Lifecycle(POLICY)
    assert Action.FINISH in machine.handle(Event.OPEN, 0.0).actions
    assert machine.public() == ("ready", True)
    machine.handle(Event.STOP, 1.0)
    assert machine.public() == ("stopped", False)


@given(
    started=st.floats(0, 100),
    elapsed=st.floats(0, 100),
    connecting_fails=st.booleans(),
)
def test_warming_is_lost_only_after_lost_after_of_load_that_never_connected(
    started: float, elapsed: float, connecting_fails: bool
) -> None:
    """LOST exactly when every request failed to connect and the load has run lost_after."""
    machine = primer(Policy(wait_timeout=1e6, gate_timeout=1e6))
    machine.handle(Event.UP, started)
    machine.load_started(started)
    step = machine.traffic(started + elapsed, connecting_fails=connecting_fails)
    lost = connecting_fails and elapsed >= machine.policy.lost_after
    assert (step is not None) == lost
    assert machine.state is (State.WAITING if lost else State.WARMING)


def test_no_load_no_loss() -> None:
    """Before the load starts (jitter), connection errors cannot be lost traffic."""
    machine = primer()
    machine.handle(Event.UP, 1.0)
    assert machine.traffic(30.0, connecting_fails=True) is None


@pytest.mark.parametrize("state", ["ready", "failed"])
def test_a_busy_target_counts_as_up_once_the_outcome_is_reached(state: str) -> None:
    """BUSY after the outcome: no re-arm while ready, and a target that never answered but is
    busy now has answered at last (it is cold)."""
    machine = supervisor()
    if state == "failed":
        machine = Lifecycle(POLICY)
        machine.handle(Event.SUPERVISE, 0.0)
        machine.primer_outcome(10.0, ready=False, answered=False)
    step = machine.probe(Reach.BUSY, 20.0)
    if state == "ready":
        assert (step.changed, machine.state) == (False, State.READY)
    else:
        assert (step.event, machine.state) == (Event.ANSWERED, State.PRIMING)


def test_a_busy_target_is_not_up_while_waiting() -> None:
    """BUSY before the outcome: still waiting, and the target has not answered."""
    machine = primer()
    step = machine.probe(Reach.BUSY, 1.0)
    assert (step.changed, machine.state, machine.answered) == (False, State.WAITING, False)
