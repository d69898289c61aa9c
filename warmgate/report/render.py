"""Render a warm-up :class:`~warmgate.report.record.Record`: text for the terminal, SVG, or HTML.

No plotting library: the terminal chart uses block characters, the image is hand-built SVG,
and the HTML page embeds that SVG, so the file is self-contained and opens anywhere.
"""

from __future__ import annotations

import html
import math

from warmgate.decide.histogram import Histogram
from warmgate.kernel.units import format_duration, format_latency, format_percent
from warmgate.report.record import PHASES, Point, Record

_BLOCKS = "▁▂▃▄▅▆▇█"
_WIDTH = 60


def _ms(value: float | int | None) -> str:
    return "-" if value is None else format_latency(float(value) / 1000)


TABLE_HEAD = ("target / phase", "time", "requests", "success", "p50", "p95", "p99")


def _cells(label: str, seconds: float, histogram: Histogram) -> list[str]:
    s = histogram.summary()
    ratio = s["success_ratio"]
    return [
        label,
        format_duration(seconds),
        str(s["requests"]),
        format_percent(None if ratio is None else float(ratio)),
        _ms(s["p50_ms"]),
        _ms(s["p95_ms"]),
        _ms(s["p99_ms"]),
    ]


def table(record: Record) -> list[list[str]]:
    """The phase table: waiting (no requests), then ramp and hold per target and in all."""
    durations = phase_durations(record)
    rows = [_cells("all / wait", durations["wait"], Histogram())]
    for name, phases in record.targets.items():
        rows += [_cells(f"{name} / {phase}", durations[phase], phases[phase]) for phase in PHASES]
    if len(record.targets) > 1:
        rows += [
            _cells(f"all / {phase}", durations[phase], record.phase_totals(phase))
            for phase in PHASES
        ]
    return rows


def _text_row(cells: list[str] | tuple[str, ...]) -> str:
    label, *rest = cells
    widths = (7, 9, 8, 8, 8, 8)
    return f"  {label:<22}" + "".join(
        f"{cell:>{width}}" for cell, width in zip(rest, widths, strict=True)
    )


def phase_durations(record: Record) -> dict[str, float]:
    """Seconds spent waiting, ramping and holding."""
    end = record.ended_at or (record.points[-1].t if record.points else 0.0)
    up = record.up_at if record.up_at is not None else end
    hold = record.hold_at if record.hold_at is not None else end
    return {"wait": up, "ramp": max(0.0, hold - up), "hold": max(0.0, end - hold)}


def suggestions(record: Record) -> list[str]:
    """Production settings suggested by what was measured."""
    lines = []
    end = record.ended_at or 0.0
    if record.outcome == "warm":
        timeout = _nice(max(2 * end, end + 30))
        lines.append(
            f"gate.timeout: {format_duration(timeout)} (warm took {format_duration(end)}; "
            "leave room for a slower node or a colder cache)"
        )
    else:
        at_target = [p.p95 for p in record.points if p.level == record.target_level and p.p95]
        if at_target:
            lines.append(
                f"not warm: the lowest p95 seen at concurrency {record.target_level} was "
                f"{format_latency(min(at_target))}; a p95 limit below that cannot pass"
            )
        lines.append(
            "not warm: raise gate.timeout, lower load.concurrency, or relax the thresholds; "
            "the reason above names the one that failed"
        )
    lines.append(
        "readinessProbe on the warmgate sidecar: httpGet /readyz, periodSeconds: 2, "
        "failureThreshold: 2, timeoutSeconds: 1 (no startupProbe on the sidecar)"
    )
    if record.up_at is not None and record.up_at >= 1.0:
        budget = _nice(max(10.0, 2 * record.up_at))
        lines.append(
            f"app startupProbe, if it has one: allow at least {format_duration(budget)} "
            f"(it took {format_duration(record.up_at)} to answer at all)"
        )
    return lines


def judged_line(record: Record) -> str | None:
    """What the gate last judged at the target level, beside the percentiles as measured."""
    judged = record.judged
    if not judged:
        return None
    names = [name for name in ("p50", "p95", "p99") if name in record.thresholds] or ["p95"]
    seen = ", ".join(f"{name} {_ms(judged.get(f'{name}_ms'))}" for name in names)
    raw = ", ".join(f"{name} {_ms(judged.get(f'raw_{name}_ms'))}" for name in names)
    line = f"last judged at concurrency {record.target_level}: {seen}"
    if seen == raw:
        return f"{line} (as measured)"
    # The figures differ when stalls were corrected for, or hung requests counted.
    return (
        f"{line}; as measured: {raw} (stalls counted as users arriving meanwhile would meet them)"
    )


def _nice(seconds: float) -> float:
    """Round up to 10s below 2 minutes, else to whole minutes."""
    step = 10 if seconds < 120 else 60
    return float(math.ceil(seconds / step) * step)


def sparkline(values: list[float | None], top: float) -> str:
    """One row of block characters; blanks where a value is unknown."""
    if top <= 0:
        top = 1.0
    cells = []
    for value in values:
        if value is None:
            cells.append(" ")
        else:
            index = min(len(_BLOCKS) - 1, int(value / top * (len(_BLOCKS) - 1) + 0.5))
            cells.append(_BLOCKS[max(0, index)])
    return "".join(cells)


def _resample(points: list[Point], width: int) -> list[Point | None]:
    if not points:
        return []
    end = points[-1].t or 1.0
    columns: list[Point | None] = [None] * width
    for point in points:
        columns[min(width - 1, int(point.t / end * (width - 1)))] = point
    # Carry each point forward over the columns between evaluations.
    last = None
    for index, column in enumerate(columns):
        if column is None:
            columns[index] = last if last is not None and last.t >= points[0].t else None
        else:
            last = column
    return columns


def render_text(record: Record) -> str:
    """The report for a terminal."""
    durations = phase_durations(record)
    outcome = record.outcome or "unfinished"
    lines = [
        f"warm-up report: {outcome} after {format_duration(record.ended_at or 0.0)} "
        f"(wait {format_duration(durations['wait'])}, ramp {format_duration(durations['ramp'])}, "
        f"hold {format_duration(durations['hold'])})",
        f"  {record.reason}",
    ]
    judged = judged_line(record)
    if judged:
        lines.append(f"  {judged}")
    lines += ["", _text_row(TABLE_HEAD)]
    lines += [_text_row(cells) for cells in table(record)]
    columns = _resample(record.points, _WIDTH)
    if columns:
        p95s = [c.p95 if c else None for c in columns]
        top_latency = max((v for v in p95s if v is not None), default=0.0)
        success = [c.success_ratio if c else None for c in columns]
        level = [float(c.level) if c else None for c in columns]
        lines += [
            "",
            f"  p95      {sparkline(p95s, top_latency)}  max {format_latency(top_latency)}",
            f"  success  {sparkline(success, 1.0)}  0-100%",
            f"  level    {sparkline(level, float(record.target_level))}  1-{record.target_level}",
            f"           0s{' ' * (_WIDTH - 4)}{format_duration(record.points[-1].t)}",
        ]
    lines += ["", "suggested for production:"]
    lines += [f"  - {line}" for line in suggestions(record)]
    return "\n".join(lines) + "\n"


def render_svg(record: Record, width: int = 900) -> str:
    """Latency, success and concurrency over time, with the phases shaded, as SVG."""
    points = record.points
    panel, gap, left, top_margin = 140, 30, 60, 30
    height = top_margin + 3 * panel + 2 * gap + 40
    end = max((p.t for p in points), default=1.0) or 1.0
    if record.window_start is not None:
        # With window: auto the last window may start after the last point drawn.
        end = max(end, record.window_start)
    plot_width = width - left - 20

    def x(t: float) -> float:
        return left + t / end * plot_width

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">warmgate warm-up: '
        f"{html.escape(record.outcome or 'unfinished')}</text>",
    ]
    durations = phase_durations(record)
    shades = (("wait", 0.0, durations["wait"], "#eeeeee"),
              ("ramp", durations["wait"], durations["wait"] + durations["ramp"], "#fff4d6"),
              ("hold", end - durations["hold"], end, "#dff5e1"))  # fmt: skip
    for name, start, stop, colour in shades:
        if stop > start:
            parts.append(
                f'<rect x="{x(start):.1f}" y="{top_margin}" width="{x(stop) - x(start):.1f}" '
                f'height="{3 * panel + 2 * gap}" fill="{colour}"/>'
                f'<text x="{x(start) + 3:.1f}" y="{top_margin + 12}" fill="#666">{name}</text>'
            )
    latencies = [v for p in points for v in (p.p50, p.p95, p.p99) if v is not None]
    limit = _limit_seconds(record.thresholds.get("p95"))
    top_latency = max([*latencies, limit or 0.0, 0.001])
    panels: list[tuple[str, float, _Series, float | None]] = [
        ("latency", top_latency, [("p50", "#9ecae1", [p.p50 for p in points]),
                                  ("p95", "#08519c", [p.p95 for p in points]),
                                  ("p99", "#6baed6", [p.p99 for p in points])], limit),
        ("success", 1.0, [("success", "#2ca02c", [p.success_ratio for p in points])],
         _ratio(record.thresholds.get("success_rate"))),
        ("concurrency", float(record.target_level),
         [("level", "#d62728", [float(p.level) for p in points])], float(record.target_level)),
    ]  # fmt: skip
    for index, (title, top, series, line) in enumerate(panels):
        y0 = top_margin + index * (panel + gap)
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{plot_width}" height="{panel}" fill="none" '
            f'stroke="#999"/><text x="5" y="{y0 + 14}">{title}</text>'
            f'<text x="5" y="{y0 + 30}" fill="#666">{_axis(title, top)}</text>'
        )

        def y(value: float, y0: int = y0, top: float = top) -> float:
            return y0 + panel - min(value, top) / top * panel

        if line is not None:
            parts.append(
                f'<line x1="{left}" x2="{left + plot_width}" y1="{y(line):.1f}" y2="{y(line):.1f}" '
                'stroke="#444" stroke-dasharray="4 3"/>'
            )
        for number, (name, colour, values) in enumerate(series):
            pairs = [(p.t, v) for p, v in zip(points, values, strict=True) if v is not None]
            if title == "concurrency":
                # A level holds until the next change: draw steps, not slopes.
                pairs = [
                    step
                    for here, after in zip(pairs, [*pairs[1:], None], strict=True)
                    for step in ([here, (after[0], here[1])] if after else [here])
                ]
            coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pairs)
            legend_x = left + plot_width - 60 * (len(series) - number)
            parts.append(
                f'<text x="{legend_x}" y="{y0 - 4}" fill="{colour}">━ {html.escape(name)}</text>'
            )
            if coords:
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
                    f"<title>{name}</title></polyline>"
                )
    if record.window_start is not None and 0 <= record.window_start <= end:
        # Where the last judged evidence began: with window: auto, just enough recent requests.
        at = x(record.window_start)
        parts.append(
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{top_margin}" '
            f'y2="{top_margin + 3 * panel + 2 * gap}" stroke="#7b3294" stroke-dasharray="2 2">'
            f"<title>the window judged last started at {format_duration(record.window_start)}"
            f'</title></line><text x="{at - 3:.1f}" y="{top_margin + 26}" fill="#7b3294" '
            'text-anchor="end">window</text>'
        )
    axis_y = top_margin + 3 * panel + 2 * gap + 16
    for tick in range(6):
        t = end * tick / 5
        anchor = "start" if tick == 0 else "end" if tick == 5 else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="{anchor}">{format_duration(t)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


_Series = list[tuple[str, str, list[float | None]]]
"""Named, coloured lines of one chart panel."""


def _axis(title: str, top: float) -> str:
    if title == "latency":
        return f"0-{format_latency(top)}"
    if title == "success":
        return "0-100%"
    return f"1-{top:.0f}"


def _limit_seconds(text: str | None) -> float | None:
    from warmgate.kernel.units import parse_duration

    if not text or text == "auto":
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None


def _ratio(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def render_html(record: Record) -> str:
    """A self-contained HTML page: summary, the chart, tables and suggestions."""
    durations = phase_durations(record)
    rows = [
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in table(record)
    ]
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in TABLE_HEAD)
    advice = "".join(f"<li>{html.escape(line)}</li>" for line in suggestions(record))
    summary = (
        f"{record.outcome or 'unfinished'} after {format_duration(record.ended_at or 0.0)}: "
        f"wait {format_duration(durations['wait'])}, ramp {format_duration(durations['ramp'])}, "
        f"hold {format_duration(durations['hold'])}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>warmgate warm-up report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>warmgate warm-up report</h1>
<p><strong>{html.escape(summary)}</strong></p><p>{html.escape(record.reason)}</p>
<p>{html.escape(judged_line(record) or "")}</p>
{render_svg(record)}
<table><tr>{head}</tr>{"".join(rows)}</table>
<h2>Suggested for production</h2><ul>{advice}</ul>
</body></html>
"""
