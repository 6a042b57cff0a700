"""Durations and sizes in the words people read (notifications, the tray's menu), and time windows as people
write them (`--since 7d`)."""

from __future__ import annotations

import math
import re


def format_duration(seconds: float) -> str:
    """5 s, 1 min 15 s, 1 h 02 min (rounded to the second)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_size(size: int | None) -> str:
    """500 B, 12 KB, 1.5 MB, 12.3 GB (decimal units, as LM Studio shows them); "" for no size."""
    if not size:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - loop always returns


_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_WINDOW_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> float:
    """A time window as `stats --since` takes it: '7d', '12h', '30m', '2w' -> seconds; 'all' -> infinity.
    ValueError names the text and the forms it may take."""
    if text.strip().lower() == "all":
        return math.inf
    match = _WINDOW.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: use a number with a unit s, m, h, d or w (e.g. 7d, 12h), or 'all'")
    return float(match.group(1)) * _WINDOW_UNIT_S[match.group(2).lower()]
