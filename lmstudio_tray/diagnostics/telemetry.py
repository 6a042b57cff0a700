"""Opt-in local telemetry: aggregated counts in a JSON file the user reads and shares themselves.

Off by default (`[logging] telemetry = false`); when off nothing is counted and no file is created.
When on, only counters are kept: which commands ran and how many events of each kind the core saw
(`event.model.loaded`, `verdict.not_loaded`, ...). No model names, URLs, prompts or tokens, and no
network: there is no code here that could send anything anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmstudio_tray.core.events import ALL_KINDS, Event, EventBus, VerdictGiven
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.core.support.tasks import cancel_and_wait

if TYPE_CHECKING:
    from lmstudio_tray.core.runtime import Core

log = logging.getLogger(__name__)
FILE_NAME = "telemetry.json"
SCHEMA = 1
FLUSH_SECONDS = 300.0
NOTE = (
    "Local usage counts written by lmstudio-tray because [logging] telemetry = true. Nothing is sent anywhere; "
    "share this file yourself if you want to. Set telemetry = false to stop counting (you may delete the file)."
)


def telemetry_file() -> Path:
    return paths.data_dir() / FILE_NAME


def read_counts(path: Path | None = None) -> dict[str, int]:
    """The counts written so far ({} when there is no file or it is unreadable)."""
    try:
        data = json.loads((path or telemetry_file()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    counts = data.get("counts") if isinstance(data, dict) else None
    if not isinstance(counts, dict):
        return {}
    return {str(k): int(v) for k, v in counts.items() if isinstance(v, int)}


class Telemetry:
    def __init__(self, enabled: bool, path: Path | None = None) -> None:
        self.enabled = enabled
        self.path = path or telemetry_file()
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def for_core(cls, core: Core, *, command: str | None = None, path: Path | None = None) -> Telemetry:
        """Counts this command and every event kind the core publishes (when the config turned it on)."""
        tel = cls(core.config.logging.telemetry, path)
        if tel.enabled:
            if command:
                tel.count(f"command.{command}")
            tel.subscribe(core.bus)
        return tel

    def subscribe(self, bus: EventBus) -> None:
        """Count every event kind `bus` publishes (on the publisher's thread: a counter under a lock)."""
        if self._unsubscribe is None:
            self._unsubscribe = bus.subscribe(self.on_event, *ALL_KINDS)

    def count(self, name: str, n: int = 1) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._pending[name] += n

    def on_event(self, event: Event) -> None:
        if isinstance(event, VerdictGiven):
            # The category, never the model: "how often was the model not loaded", not "which model".
            self.count(f"verdict.{event.category or 'unknown'}")
        self.count(f"event.{event.kind}")

    def flush(self) -> None:
        """Add the pending counts to the file (atomic write; a corrupt file is kept aside, not merged)."""
        if not self.enabled:
            return
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        data = self._read_for_merge()
        counts = Counter({k: v for k, v in data.get("counts", {}).items() if isinstance(v, int)})
        counts.update(pending)
        data.update(
            {
                "schema": SCHEMA,
                "note": NOTE,
                "first_recorded": data.get("first_recorded", now),
                "last_recorded": now,
                "counts": dict(sorted(counts.items())),
            }
        )
        try:
            atomic_write(self.path, json.dumps(data, indent=2) + "\n", mode=0o600)
        except OSError as exc:
            log.warning("could not write telemetry counts to %s: %s", self.path, exc.strerror or exc)
            with self._lock:
                self._pending.update(pending)

    def _read_for_merge(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("counts", {}), dict):
                return data
            raise ValueError("not a telemetry object")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            aside = self.path.with_name(self.path.name + ".corrupt")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            log.warning("telemetry file %s was unreadable; kept it as %s and started a new one", self.path, aside)
            return {}

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.flush()


def attach_telemetry(core: Core, *, command: str | None = None) -> Telemetry:
    """For long-running surfaces (serve, tray): count while the core runs, flush every few minutes and at stop."""
    tel = Telemetry.for_core(core, command=command)
    if not tel.enabled:
        return tel
    task: asyncio.Task[None] | None = None

    async def periodic() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await asyncio.to_thread(tel.flush)  # reads and rewrites the file: not on the core's loop

    async def start() -> None:
        nonlocal task
        task = asyncio.create_task(periodic())

    async def stop() -> None:
        await cancel_and_wait(task)
        await asyncio.to_thread(tel.close)

    core.add_service(start, stop)
    return tel
