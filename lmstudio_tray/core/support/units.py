"""Durations and sizes in the words people read (notifications, the tray's menu)."""

from __future__ import annotations


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
