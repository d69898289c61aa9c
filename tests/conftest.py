"""Shared fixtures: a clean environment and real simulated apps on port 0."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from tests import pg
from warmgate.demo.simapp import Behavior, SimApp

# Hypothesis's default deadline (200 ms an example) is a timing assertion: a busy CI machine
# breaks it with nothing wrong. Examples are bounded by max_examples and pytest's timeout.
settings.register_profile("warmgate", deadline=None)
settings.load_profile("warmgate")


@pytest.fixture(autouse=True)
def _no_warmgate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WARMGATE_* variable from the outside world changes what a test sees."""
    for key in list(os.environ):
        if key.startswith("WARMGATE_"):
            monkeypatch.delenv(key)


@pytest.fixture
def sim_app() -> Iterator[Callable[..., SimApp]]:
    """Start simulated apps (real HTTP servers on port 0); all stop after the test."""
    started: list[SimApp] = []

    def start(behavior: Behavior | None = None, port: int = 0) -> SimApp:
        app = SimApp(behavior or Behavior(start_capacity=64, full_capacity=64))
        app.start(port=port)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="module")
def orders() -> Iterator[pg.Scratch]:
    """A scratch schema with 200k orders in the real PostgreSQL; dropped after the module."""
    pg.require_postgres()
    with pg.scratch_schema() as scratch:
        yield scratch
