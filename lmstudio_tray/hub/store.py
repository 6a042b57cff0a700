"""The hub's record of model use: member -> instance -> model -> the hub's own time of the last use.

Members send how long ago each use was (their own clock's difference, which is right even when their clock is
minutes off) and the hub stamps it with its clock; readers get ages back. A report is written to disk before it is
acknowledged, so everything acknowledged survives a restart."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.hub.limits import Limits, check_entries

KEEP_SECONDS = 7 * 24 * 3600  # older uses are dropped: the busy window is minutes


class StoreError(Exception):
    """`uses.json` exists but cannot be read: starting empty would overwrite every acknowledged use with the
    next report, so the hub does not start."""

    def __str__(self) -> str:
        return (f"{self.args[0]}: the hub would lose the uses it acknowledged; restore the file, or move it away "
                "to start with none")


def read_object(path: Path, error: type[StoreError]) -> dict[str, object]:
    """A hub file's JSON object; {} when there is none yet. Raises `error` when the file exists but does not hold
    one: it is never written half (atomically), so it was damaged from outside."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise error(f"{path} cannot be read ({exc})") from None
    if not isinstance(raw, dict):
        raise error(f"{path} is not a JSON object")
    return raw


@dataclass(frozen=True)
class Use:
    """One reported use: who, on which instance, which model, how many seconds before the hub received it."""

    member: str
    instance: str
    model: str
    age: float


class UseStore:
    """`uses.json` in the hub's state dir, kept in memory and rewritten (atomically) on each report."""

    def __init__(self, state: Path, clock: Callable[[], float] = time.time, limits: Limits | None = None) -> None:
        self.path = state / "uses.json"
        self.clock = clock
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, float]]] = self._load()

    def _load(self) -> dict[str, dict[str, dict[str, float]]]:
        raw = read_object(self.path, StoreError)
        return {str(m): {str(i): {str(k): float(t) for k, t in models.items() if isinstance(t, (int, float))}
                         for i, models in inst.items() if isinstance(models, dict)}
                for m, inst in raw.items() if isinstance(inst, dict)}

    def report(self, member: str, uses: list[Use]) -> int:
        """Record `member`'s uses (stamped now - age on the hub's clock) and write the file before returning; returns
        how many were kept (not those older than KEEP_SECONDS). OverLimit, storing nothing, when the member would
        hold more entries than its limit."""
        now = self.clock()
        fresh = [use for use in uses if use.age <= KEEP_SECONDS]  # older ones would be pruned at once
        with self._lock:
            self._prune(now)
            held = {(i, m) for i, models in self._data.get(member, {}).items() for m in models}
            check_entries(member, len(held | {(use.instance, use.model) for use in fresh}), self.limits)
            mine = self._data.setdefault(member, {})
            for use in fresh:
                when = now - max(0.0, use.age)
                models = mine.setdefault(use.instance, {})
                models[use.model] = max(when, models.get(use.model, 0.0))
            self._prune(now)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self._data), 0o600)
        return len(fresh)

    def _prune(self, now: float) -> None:
        for member in list(self._data):
            for instance in list(self._data[member]):
                models = self._data[member][instance]
                for model in [k for k, t in models.items() if now - t > KEEP_SECONDS]:
                    del models[model]
                if not models:
                    del self._data[member][instance]
            if not self._data[member]:
                del self._data[member]

    def uses(self) -> list[Use]:
        """Every member's uses, with their age on the hub's clock now."""
        now = self.clock()
        with self._lock:
            return [Use(member, instance, model, max(0.0, now - t))
                    for member, inst in sorted(self._data.items())
                    for instance, models in sorted(inst.items())
                    for model, t in sorted(models.items())]
