"""Test helpers: run the real CLI as a subprocess and talk to it over real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def items_url(port: int) -> str:
    """The templated warm-up URL of a simulated app."""
    return f"http://127.0.0.1:{port}/items/{{{{ randint(1, 1000) }}}}"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI subprocess: no WARMGATE_* leaking in from outside."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WARMGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``warmgate ARGS`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "warmgate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        input=stdin,
        check=False,
    )


_PEAK_WAITER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measuring_peak(
    argv: list[str], directory: Path, env: dict[str, str] | None = None
) -> tuple[int, int, str]:
    """Run ``argv`` to its end; its exit code, its peak resident memory in bytes and its output.

    The kernel's count of a process's peak memory (``ru_maxrss``) starts from that of the
    process it was forked from and survives ``exec``: forked from the test runner, a small
    command would report the runner's own size. So a small waiter process forks it instead.
    """
    peak = directory / "peak-rss"
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_WAITER, str(peak), *argv],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, check=False,
    )  # fmt: skip
    return result.returncode, int(peak.read_text()), result.stdout


def poll(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """``(status, body)`` of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - test URLs
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class WarmgateProcess:
    """A running ``warmgate`` subprocess whose JSON log lines are collected as they arrive."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "warmgate", *args, "--log-format", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(env),
        )
        self.events: list[dict[str, Any]] = []
        self._stderr: str | None = None
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "raw", "message": line.rstrip()}
            self.events.append(event)
            self._lines.put(event)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first log event (past or future) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                seen += 1
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self._lines.empty()):
                stderr = self.stderr_text() if self.process.poll() is not None else ""
                raise AssertionError(
                    f"no matching event within {timeout}s; events: {self.events[-5:]} {stderr}"
                )
            with contextlib.suppress(queue.Empty):
                self._lines.get(timeout=min(remaining, 0.2))

    def port(self, timeout: float = 15.0) -> int:
        """The port the endpoint listens on (from the ``listening`` event)."""
        return int(self.wait_for(lambda e: e.get("event") == "listening", timeout)["port"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self._close()
        return code

    def stderr_text(self) -> str:
        """What the process wrote to stderr (once it has exited)."""
        if self._stderr is None and self.process.stderr is not None:
            self._stderr = self.process.stderr.read()
        return self._stderr or ""

    def _close(self) -> None:
        self._reader.join(5)
        self.stderr_text()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> WarmgateProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._close()
