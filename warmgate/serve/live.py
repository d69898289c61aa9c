"""The live view for people at a terminal (rich), redrawn a few times a second.

Only imported when stdout is a terminal: in a pod, logs are JSON lines and rich stays unloaded.
"""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from warmgate.kernel.units import format_duration, format_latency, format_percent
from warmgate.serve.status import Status

_STATE_STYLE = {"waiting": "yellow", "warming": "cyan", "ready": "bold green", "failed": "bold red"}


def _bar(done: float, total: float, width: int = 24) -> str:
    filled = 0 if total <= 0 else min(width, round(done / total * width))
    return "█" * filled + "░" * (width - filled)


def _mark(check: dict[str, Any] | None) -> Text:
    if check is None:
        return Text("")
    return Text("✓", style="green") if check["passed"] else Text("✗", style="red")


def render_status(status: Status) -> Group:
    """The live panel for one status snapshot."""
    checks = {check["name"]: check for check in status.checks}
    head = Text.assemble(
        (f" {status.state.upper()} ", _STATE_STYLE.get(status.state, "")), "  ", status.reason
    )
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_column()
    table.add_row(
        "concurrency",
        f"{_bar(status.level, status.target_level)} {status.level}/{status.target_level}",
        "",
    )
    window = status.window
    requests = checks.get("requests")
    minimum = f" (min {requests['limit']})" if requests else ""
    table.add_row("window", f"{window.get('requests', 0)} requests{minimum}", _mark(requests))
    success = checks.get("success_rate")
    limit = f" (limit {success['limit']})" if success else ""
    table.add_row(
        "success", f"{format_percent(window.get('success_ratio'))}{limit}", _mark(success)
    )
    for name in ("p50", "p95", "p99"):
        value = window.get(f"{name}_ms")
        plateau = "plateau" if name == "p95" else f"plateau_{name}"
        check = checks.get(name) or checks.get(plateau)
        limit = f" (limit {check['limit']})" if check else ""
        shown = format_latency(None if value is None else value / 1000)
        table.add_row(name, f"{shown}{limit}", _mark(check))
    hold = status.hold_required_s
    table.add_row(
        "hold",
        f"{_bar(status.hold_passing_s, hold)} "
        f"{format_duration(status.hold_passing_s)}/{format_duration(hold)}",
        "",
    )
    table.add_row(
        "elapsed",
        f"{_bar(status.elapsed_s, status.timeout_s)} "
        f"{format_duration(status.elapsed_s)}/{format_duration(status.timeout_s)}",
        "",
    )
    return Group(head, table)


class LiveView:
    """A rich Live display: events scroll above, the status panel stays at the bottom."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream)
        self._live = Live(console=self.console, refresh_per_second=4, transient=True)
        self._live.start()

    def event(self, text: str) -> None:
        """Print a line above the panel."""
        self._live.console.print(text, markup=False, highlight=False)

    def update(self, status: Status) -> None:
        """Redraw the panel."""
        self._live.update(render_status(status))

    def close(self) -> None:
        """Stop redrawing (the panel goes; the events stay)."""
        self._live.stop()
