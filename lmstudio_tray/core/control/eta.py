"""Load-time estimates: how long a model of a given size takes to load on a given instance.

LM Studio's REST load gives no progress, so the tray shows an estimate learned from earlier loads on
the same instance (bytes per second, smoothed). Until the first load finishes, a conservative default
stands in; an ETA is therefore always available.
"""

from __future__ import annotations

DEFAULT_BYTES_PER_SECOND = 400e6  # a mid-range SSD + GPU upload; real figures replace it after one load
UNKNOWN_SIZE_SECONDS = 15.0
_ALPHA = 0.5  # recent loads matter most: drivers, disk cache and offload settings change


class LoadEstimator:
    """Load-time estimates per instance from the smoothed throughput (bytes/s) of its earlier loads; `default_bps` until
    a load there finished. Used on the core's loop."""

    def __init__(self, default_bps: float = DEFAULT_BYTES_PER_SECOND) -> None:
        self.default_bps = default_bps
        self._bps: dict[str, float] = {}

    def throughput(self, instance: str) -> float:
        """Learned bytes per second of loads on `instance` (`default_bps` until one load finished there)."""
        return self._bps.get(instance, self.default_bps)

    def record(self, instance: str, size_bytes: int | None, seconds: float) -> None:
        """Learn from a finished load of `size_bytes` that took `seconds` (ignored without a size or a duration); recent
        loads weigh most."""
        if not size_bytes or seconds <= 0:
            return
        measured = size_bytes / seconds
        old = self._bps.get(instance)
        self._bps[instance] = measured if old is None else _ALPHA * measured + (1 - _ALPHA) * old

    def estimate(self, instance: str, size_bytes: int | None) -> float:
        """Expected seconds to load `size_bytes` on `instance`; a fixed guess (UNKNOWN_SIZE_SECONDS) when the size is
        unknown."""
        if not size_bytes:
            return UNKNOWN_SIZE_SECONDS
        return size_bytes / self.throughput(instance)

    def progress(self, instance: str, size_bytes: int | None, elapsed: float) -> tuple[float, float]:
        """(fraction done, seconds left). The fraction never claims completion: only LM Studio can."""
        total = self.estimate(instance, size_bytes)
        fraction = min(0.95, elapsed / total) if total > 0 else 0.95
        left = max(0.5, total - elapsed)
        return fraction, left

    def to_json(self) -> dict[str, float]:
        """The learned figures, instance -> bytes per second (what `restore` takes back)."""
        return dict(self._bps)

    def restore(self, data: dict[str, float]) -> None:
        """Take learned figures back (from `to_json`); values that are not positive numbers are skipped."""
        self._bps.update({k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0})
