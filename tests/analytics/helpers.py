"""Feeding recorded streams through the real path (SessionTracker sink -> BatchWriter -> Store)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lmstudio_tray.analytics.store import Store
from lmstudio_tray.analytics.writer import BatchWriter
from lmstudio_tray.core.events import Event, EventBus
from lmstudio_tray.core.hooks.sessions import ForwardedEvent, SessionTracker

BASE = "http://127.0.0.1:1234/v1"


def forwarded(e: dict[str, Any], instance_for_url: Any = None) -> ForwardedEvent:
    url = e.get("base_url")
    instance = (instance_for_url or (lambda u: "local" if u == BASE else None))(url) if url else None
    return ForwardedEvent(e["type"], e["properties"], instance=instance, base_url=url,
                          provider_id=e.get("provider_id"), model=e.get("model"), time=e.get("time") or 0.0)


def ingest(path: Path, events: Iterable[dict[str, Any]] = (), bus: Iterable[tuple[float, Event]] = (),
           *, context: dict[tuple[str, str], int] | None = None, **store_options: Any) -> dict[str, int]:
    """Write the streams into the store at `path` the way the running app does; returns row counts."""
    store = Store(path, **store_options)
    ctx = context or {}
    writer = BatchWriter(store, context_of=lambda inst, model: ctx.get((inst, model)))
    tracker = SessionTracker(EventBus())
    tracker.add_sink(writer.put)
    for ts, ev in bus:
        writer.put(ev, ts)
    for e in events:
        tracker.record(forwarded(e))
    writer.flush_now()
    counts = store.counts()
    store.close()
    return counts
