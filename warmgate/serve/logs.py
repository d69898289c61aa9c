"""Logs: JSON lines for machines (Kubernetes), a live line for people at a terminal.

JSON mode prints one object per line: ``time``, ``event`` (``start``, ``listening``, ``phase``,
``ramp``, ``progress``, ``rearm``, ``stop``), ``message`` and event fields. The warm-up calls
:meth:`Log.progress` on every evaluation; JSON mode prints at most one ``progress`` line per
``interval`` seconds, human mode redraws one status line in place. Every text goes through the
secret redactor first.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from warmgate.kernel.redaction import Secrets
from warmgate.kernel.units import format_duration, format_latency, format_percent
from warmgate.serve.status import Status

if TYPE_CHECKING:
    from warmgate.serve.live import LiveView


REASON_CHARS = 80
"""The most of the reason the human progress line shows."""


class Log:
    """Writes events and progress to ``stream`` as JSON lines or for a person."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        human: bool = False,
        secrets: Secrets | None = None,
        interval: float = 5.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.human = human
        self.secrets = secrets or Secrets()
        self.interval = interval
        self._last_progress = float("-inf")
        self._live = False
        self._view: LiveView | None = None
        if human and _isatty(self.stream):
            from warmgate.serve.live import LiveView

            self._view = LiveView(self.stream)

    @classmethod
    def for_format(cls, fmt: str, secrets: Secrets, stream: TextIO | None = None) -> Log:
        """``auto`` means human on a terminal, JSON lines otherwise."""
        out = stream if stream is not None else sys.stdout
        human = fmt == "human" or (fmt == "auto" and _isatty(out))
        return cls(out, human=human, secrets=secrets)

    def event(self, event: str, message: str, **fields: Any) -> None:
        """One line about something that happened."""
        message = self.secrets.redact(message)
        if self.human:
            stamp = datetime.now().strftime("%H:%M:%S")
            if self._view is not None:
                self._view.event(f"{stamp} {message}")
                return
            self._clear_live()
            self._write(f"{stamp} {message}\n")
            return
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event}
        record["message"] = message
        record.update(fields)
        self._write(self.secrets.redact(json.dumps(record, default=str)) + "\n")

    def progress(self, status: Status, force: bool = False) -> None:
        """Where warming stands; throttled in JSON mode."""
        if self._view is not None:
            self._view.update(status)
            return
        if self.human:
            self._write("\r\x1b[K" + progress_line(status, self.secrets))
            self._live = True
            return
        now = time.monotonic()
        if not force and now - self._last_progress < self.interval:
            return
        self._last_progress = now
        self.event(
            "progress",
            status.reason,
            state=status.state,
            level=status.level,
            target_level=status.target_level,
            window=status.window,
            hold_passing_s=round(status.hold_passing_s, 3),
        )

    def write_block(self, text: str) -> None:
        """Print a block of text as it is (a report), after the live view has ended."""
        self._clear_live()
        self._write(self.secrets.redact(text))

    def close(self) -> None:
        """End the live view or line, if any."""
        if self._view is not None:
            self._view.close()
            self._view = None
        self._clear_live()

    def _clear_live(self) -> None:
        if self._live:
            self._write("\r\x1b[K")
            self._live = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stdout must not stop the gate; the status surfaces still work.
            pass


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_line(status: Status, secrets: Secrets) -> str:
    """``warming  concurrency 4/16  312 req  ok 99.7%  p95 12ms  hold 2s/5s  | reason``, the
    reason redacted before it is cut."""
    window = status.window
    p95 = window.get("p95_ms")
    parts = [
        f"{status.state:<8}",
        f"concurrency {status.level}/{status.target_level}",
        f"{window.get('requests', 0)} req",
        f"ok {format_percent(window.get('success_ratio'))}",
        f"p95 {format_latency(None if p95 is None else p95 / 1000)}",
        f"hold {format_duration(status.hold_passing_s)}/{format_duration(status.hold_required_s)}",
    ]
    return "  ".join(parts) + "  | " + secrets.shorten(status.reason, REASON_CHARS)
