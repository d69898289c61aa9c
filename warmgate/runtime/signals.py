"""Signals that arrive before an event loop exists to take them.

``run`` and ``prime`` spend their first second importing and validating. A SIGTERM in that
second must still end in a final status, so ``cli.main`` installs :func:`remember` first, and
the loop (or the supervisor) honours what it remembered as soon as it starts.
"""

from __future__ import annotations

import signal

EARLY: list[str] = []
"""Names of the signals that arrived before the loop could take them."""


def remember(signum: int, _frame: object) -> None:
    """Record a SIGTERM or SIGINT for the loop to honour."""
    EARLY.append(signal.Signals(signum).name)


def install_for(command: list[str]) -> None:
    """For ``run`` and ``prime``: remember SIGTERM and SIGINT until a loop takes them over."""
    if command in (["run"], ["prime"]):
        signal.signal(signal.SIGTERM, remember)
        signal.signal(signal.SIGINT, remember)


def die_with_parent(parent: int) -> None:
    """A primer ends with its supervisor, even if the supervisor is killed outright."""
    import ctypes
    import os

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)
