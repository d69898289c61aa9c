"""Durations and sizes in, human quantities out: the few unit conversions the config and
reasons share."""

from __future__ import annotations

import re

from warmgate.kernel.redaction import shorten

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 366 * 24 * 3600.0
"""The longest duration a config may give: longer ones overflow timers and mean a mistake."""
MAX_DURATION_TEXT = "8784h"


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"500ms"``, ``"10s"``, ``"5m"`` or ``"1m30s"``.

    Raises ``ValueError`` with a sentence saying how to write it.
    """
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise ValueError("a duration is empty; write it with a unit, such as '10s'")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        raise ValueError(f"'{text}' has no unit; write '{cleaned}ms' or '{cleaned}s'")
    position = 0
    total = 0.0
    for match in _DURATION.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match["value"]) * _SECONDS[match["unit"]]
        position = match.end()
    if position != len(cleaned) or position == 0:
        raise ValueError(
            f"'{text}' is not a duration; write a number and a unit (ms, s, m, h), such as '500ms'"
        )
    if not total <= MAX_DURATION:  # also refuses inf, which 400 digits of seconds become
        raise ValueError(
            f"'{shorten(text, 40)}' is longer than a year; write at most {MAX_DURATION_TEXT}"
        )
    return total


_SIZE = re.compile(r"(?P<value>\d{1,12})\s*(?P<unit>B|KiB|MiB|GiB|Ki|Mi|Gi)?", re.IGNORECASE)
_BYTES = {"": 1, "b": 1, "kib": 1 << 10, "ki": 1 << 10, "mib": 1 << 20, "mi": 1 << 20}
_BYTES |= {"gib": 1 << 30, "gi": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"65536"``, ``"64KiB"``, ``"1MiB"`` or ``"1Mi"`` (binary units,
    as Kubernetes writes memory).

    Raises ``ValueError`` with a sentence saying how to write it.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"'{text[:40]}' is not a size; write a number of bytes, or one with KiB, MiB or GiB, "
            "such as '1MiB'"
        )
    return int(match["value"]) * _BYTES[(match["unit"] or "").lower()]


def format_size(size: int) -> str:
    """A size in the largest binary unit that divides it: ``"1MiB"``, ``"96KiB"``, ``"1000B"``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def milliseconds(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded to the microsecond, for JSON; ``None`` stays ``None``."""
    return None if seconds is None else round(seconds * 1000, 3)


def format_duration(seconds: float) -> str:
    """A short human duration: ``"250ms"``, ``"5s"``, ``"2.5s"``, ``"5m"``, ``"1m30s"``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def format_latency(seconds: float | None) -> str:
    """A latency for reasons and logs: ``"0.8ms"``, ``"412ms"``, ``"1.25s"``; ``"-"`` if unknown."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s"


def format_percent(ratio: float | None) -> str:
    """A ratio as a percentage with one decimal: ``"99.5%"``; whole numbers lose the decimal."""
    if ratio is None:
        return "-"
    text = f"{ratio * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"
