"""When each model last served a request through this machine (the router or a validate): the record the
shared-instance guard reads."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write


def use_file() -> Path:
    """The model-use record every lmstudio-tray process of this user shares: `model-use.json` in the state dir."""
    return paths.state_dir() / "model-use.json"


@dataclass
class ModelUseLog:
    """When each model last served a request through this machine (router or validate), per instance.

    Kept in a small JSON file so a CLI command in another process sees what the tray's router saw.
    Writes are throttled: a busy model rewrites the file at most every `every` seconds.
    """

    path: Path = field(default_factory=use_file)
    every: float = 5.0
    _data: dict[str, dict[str, float]] | None = None
    _written: float = 0.0

    def read(self) -> dict[str, dict[str, float]]:
        """The record in the file, instance -> model -> wall time of its last use; {} when the file is missing or
        unreadable. A blocking file read."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {str(i): {str(m): float(t) for m, t in v.items() if isinstance(t, (int, float))}
                for i, v in raw.items() if isinstance(v, dict)}

    def record(self, instance: str, model: str, when: float | None = None) -> bool:
        """Note a use; returns True when the file should be written now (call `flush`)."""
        if self._data is None:
            self._data = self.read()
        now = time.time() if when is None else when
        previous = self._data.setdefault(instance, {}).get(model, 0.0)
        self._data[instance][model] = max(previous, now)
        return now - self._written >= self.every or previous == 0.0

    def pending(self) -> dict[str, dict[str, float]]:
        """A copy of what is to be written (taken on the caller's thread; `write` may run on another)."""
        self._written = time.time()
        return {i: dict(m) for i, m in (self._data or {}).items()}

    def write(self, data: dict[str, dict[str, float]]) -> None:
        """Merge `data` (from `pending`) into the file, keeping the later time of each use (another process may have
        written meanwhile), and write it atomically. Blocking: the router calls it in a worker thread."""
        merged = self.read()  # another process may have recorded meanwhile
        for instance, models in data.items():
            for model, t in models.items():
                merged.setdefault(instance, {})[model] = max(t, merged.get(instance, {}).get(model, 0.0))
        atomic_write(self.path, json.dumps(merged), 0o600)

    def flush(self) -> None:
        """Write what this process recorded, now and on the calling thread (the router's last write when it closes)."""
        if self._data is not None:
            self.write(self.pending())

    def last_use(self, instance: str, model: str, recorded: dict[str, dict[str, float]] | None = None) -> float | None:
        """Wall time `model` last served a request on `instance` as this machine saw it (the file, merged with uses not
        written yet); None if never. Reads the file unless `recorded` is what `read` returned (read it off the core
        loop and pass it in there)."""
        data = self.read() if recorded is None else recorded
        if self._data:
            data = _merged(data, self._data)
        return data.get(instance, {}).get(model)


def _merged(base: dict[str, dict[str, float]], over: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {i: dict(m) for i, m in base.items()}
    for instance, models in over.items():
        out.setdefault(instance, {}).update(models)
    return out
