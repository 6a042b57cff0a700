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
    def __init__(self, default_bps: float = DEFAULT_BYTES_PER_SECOND) -> None:
        self.default_bps = default_bps
        self._bps: dict[str, float] = {}

    def throughput(self, instance: str) -> float:
        return self._bps.get(instance, self.default_bps)

    def record(self, instance: str, size_bytes: int | None, seconds: float) -> None:
        if not size_bytes or seconds <= 0:
            return
        measured = size_bytes / seconds
        old = self._bps.get(instance)
        self._bps[instance] = measured if old is None else _ALPHA * measured + (1 - _ALPHA) * old

    def estimate(self, instance: str, size_bytes: int | None) -> float:
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
        return dict(self._bps)

    def restore(self, data: dict[str, float]) -> None:
        self._bps.update({k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0})
