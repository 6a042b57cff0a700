"""The analytics surface: records what the core sees into the store while the core runs.

`attach_analytics(core)` registers it as a core service, like the endpoint. On start it opens (and
migrates) the store, applies retention, seeds the load ETA from past loads, subscribes to the bus and
starts the writer thread. Bus handlers only queue; the writer thread does all SQLite work.

Other surfaces get it from the composition root (`lmstudio_tray.wiring`) as the core's `UsageInsights`:
the endpoint hands it forwarded OpenCode events and reads the dashboard's data, the system transform and
the tray read its tips (cached, never blocking). With analytics off, `StoreInsights` stands in: the
dashboard still shows what the store holds, and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lmstudio_tray.analytics.bench import bench_history, latest_bench
from lmstudio_tray.analytics.records import ModelPresent
from lmstudio_tray.analytics.reports import build_report, parse_since, series
from lmstudio_tray.analytics.resources import ProcessFilter, ResourceSampler, is_lmstudio
from lmstudio_tray.analytics.store import Store, StoreError, default_path, reading
from lmstudio_tray.analytics.suggestions import WINDOW_S, Suggestion, for_model, suggest
from lmstudio_tray.analytics.writer import BatchWriter
from lmstudio_tray.core import events as ev
from lmstudio_tray.core.hooks.verdict import resolve_model
from lmstudio_tray.core.models import BenchFigures
from lmstudio_tray.core.ports import NOT_ATTACHED, RecordingStatus
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.threads import not_on_event_loop

log = logging.getLogger(__name__)

RECORDED = (ev.VerdictGiven, ev.ModelLoaded, ev.ModelUnloaded, ev.LoadFinished, ev.LoadFailed, ev.StateChanged,
            ev.InstanceOnline, ev.InstanceOffline, ev.AuthFailed, ev.InstanceError)
ETA_HISTORY = 20  # past loads per instance replayed into the load estimator
PRUNE_INTERVAL_S = 3600.0
TIPS_INTERVAL_S = 300.0


def read_history(path: Path, since: str, known_models: set[str]) -> dict[str, Any]:
    """The dashboard's charts, report, suggestions and bench runs (`bench`, oldest first) for the window `since`
    from the store at `path`.
    Blocking (SQLite): off the core loop (`WrongThread` on it). ValueError names a bad `since`."""
    not_on_event_loop("reading the analytics history")
    window = parse_since(since)
    now = time.time()
    start = now - window if window != float("inf") else 0.0
    try:
        with reading(path) as conn:
            report = build_report(conn, start, now)
            tips = suggest(conn, now, report if window == WINDOW_S else None, known_models)
            return {"empty": False, "series": series(conn, start, now), "report": report.to_json(),
                    "suggestions": [t.to_json() for t in tips],
                    "bench": bench_history(conn, start, now)[::-1]}  # oldest first, as the charts draw them
    except StoreError as exc:
        return {"empty": True, "message": str(exc), "series": None, "report": None, "suggestions": [], "bench": []}


class StoreInsights:
    """The core's `UsageInsights` when analytics is off in this process: the dashboard still shows what the
    store holds (another process may record into it); no tips, nothing recorded."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()

    def tip_texts(self, model: str | None = None) -> list[str]:
        """No tips: they come from a running recorder."""
        return []

    def record_forwarded(self, record: Mapping[str, Any]) -> None:
        """Dropped: nothing records here."""

    def recording_status(self) -> RecordingStatus:
        """Not recording."""
        return NOT_ATTACHED

    def history(self, since: str, known_models: set[str]) -> dict[str, Any]:
        """See `read_history`."""
        return read_history(self.path, since, known_models)

    def bench_figures(self) -> Mapping[str, tuple[BenchFigures, ...]]:
        """None: like the tips, they come from a running recorder's cache."""
        return {}


class Analytics:
    """Records the core's events and the forwarded OpenCode events into the store while the core runs;
    the core's `UsageInsights` for the endpoint and the tray."""

    def __init__(
        self,
        core: Core,
        *,
        path: Path | None = None,
        flush_interval: float = 0.5,
        sample_interval: float = 30.0,
        process_filter: ProcessFilter = is_lmstudio,
    ) -> None:
        self.core = core
        self.path = path or default_path()
        self.flush_interval = flush_interval
        self.sample_interval = sample_interval
        self.sampler = ResourceSampler(process_filter)
        self.store: Store | None = None
        self.writer: BatchWriter | None = None
        self.error: str | None = None  # why recording is off, for `doctor` and the dashboard
        self._unsubscribe: Callable[[], None] | None = None
        self._tips: list[Suggestion] = []
        self._bench: Mapping[str, tuple[BenchFigures, ...]] = {}  # replaced whole, never changed in place
        self._tips_lock = threading.Lock()
        self._present: set[tuple[str, str]] = set()  # loaded instances already noted this run

    @property
    def running(self) -> bool:
        """The writer thread runs (the store opened)."""
        return self.writer is not None

    # ---- lifecycle (core loop) --------------------------------------------------------------------

    async def start(self) -> None:
        """Open (and migrate) the store, seed the load ETA, subscribe, start the writer. A store that cannot
        be opened turns analytics off (`error` says why); it never fails the start."""
        cfg = self.core.config.analytics
        try:
            self.store = await asyncio.to_thread(Store, self.path, retention_days=cfg.retention_days,
                                                 max_rows=cfg.max_rows)
            await asyncio.to_thread(self.store.prune)
            for instance, size, seconds in await asyncio.to_thread(self._load_history):
                self.core.estimator.record(instance, size, seconds)
        except (StoreError, OSError, sqlite3.DatabaseError) as exc:
            # analytics is optional: the tray and the endpoint run on without it
            self.error = str(exc) if not isinstance(exc, sqlite3.DatabaseError) else (
                f"{self.path} is damaged ({exc}); move it aside (it is kept as it is) and lmstudio-tray starts "
                "a new one")
            log.warning("analytics off: %s", self.error)
            if self.store is not None:
                await asyncio.to_thread(self.store.close)
                self.store = None
            return
        writer = BatchWriter(self.store, flush_interval=self.flush_interval, context_of=self.context_of)
        writer.add_chore("resources", self.sample_interval, self.sample)
        writer.add_chore("retention", PRUNE_INTERVAL_S, self._prune)
        writer.add_chore("tips", TIPS_INTERVAL_S, self.refresh_tips)
        self.writer = writer
        self._unsubscribe = self.core.bus.subscribe(self._on_event, *RECORDED)
        writer.start()

    async def stop(self) -> None:
        """Unsubscribe, write what is queued, close the store."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        writer, self.writer = self.writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None

    # ---- producers (hook path: queue only) ----------------------------------------------------------

    def _on_event(self, event: ev.Event) -> None:
        writer = self.writer
        if writer is not None:
            writer.put(event)

    def record_forwarded(self, record: Mapping[str, Any]) -> None:
        """A sink for `SessionTracker.add_sink`: one forwarded OpenCode event."""
        writer = self.writer
        if writer is not None:
            writer.put(record)

    # ---- writer-thread chores -----------------------------------------------------------------------

    def context_of(self, instance: str, model: str) -> int | None:
        """The context length `model` is loaded with on `instance` now (for rows that lack it)."""
        snap = self.core.monitor.snapshot(instance)  # an immutable snapshot: safe to read from this thread
        info = resolve_model(snap, model) if snap is not None else None
        return info.loaded_context_length if info is not None else None

    def sample(self) -> None:
        """Queue one resource sample per instance, and the loaded models not noted yet this run."""
        writer = self.writer
        if writer is None:
            return
        snapshots = self.core.monitor.snapshots()
        for s in self.sampler.sample(snapshots):
            writer.put(s)
        for snap in snapshots:
            for m in snap.loaded_models:
                for inst in m.instances:
                    if (snap.name, inst.id) not in self._present:
                        self._present.add((snap.name, inst.id))
                        writer.put(ModelPresent(snap.name, m.key, inst.id, inst.context_length))

    def _prune(self) -> None:
        if self.store is not None:
            self.store.prune()

    def _load_history(self) -> list[tuple[str, int, float]]:
        assert self.store is not None
        rows = self.store.conn.execute(
            "SELECT instance, size_bytes, seconds FROM (SELECT instance, size_bytes, seconds, ts, row_number() "
            "OVER (PARTITION BY instance ORDER BY ts DESC) AS n FROM loads WHERE ok = 1 AND size_bytes > 0 "
            "AND seconds > 0) WHERE n <= ? ORDER BY ts", (ETA_HISTORY,)).fetchall()
        return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]

    def known_models(self) -> set[str]:
        """The keys of every model the instances list (downloaded), for the suggestions."""
        return {m.key for snap in self.core.monitor.snapshots() for m in snap.models}

    def refresh_tips(self) -> list[Suggestion]:
        """Recompute the suggestions from the store (blocking: off the core loop, `WrongThread` on it)."""
        not_on_event_loop("recomputing the analytics tips")
        now = time.time()
        bench: dict[str, tuple[BenchFigures, ...]] = {}
        try:
            with reading(self.path) as conn:
                tips = suggest(conn, now, build_report(conn, now - WINDOW_S, now), self.known_models())
                for b in latest_bench(conn):
                    bench[b.model] = (*bench.get(b.model, ()), b)
        except StoreError:
            tips = []
        with self._tips_lock:
            self._tips, self._bench = tips, bench
        return tips

    # ---- readers (any thread, non-blocking) --------------------------------------------------------

    def tips(self, model: str | None = None) -> list[Suggestion]:
        """The cached suggestions (refreshed every few minutes), all or those about `model`."""
        with self._tips_lock:
            tips = list(self._tips)
        return for_model(tips, model) if model else tips

    def tip_texts(self, model: str | None = None) -> list[str]:
        """The cached suggestions as sentences (the system transform's, about `model`; the tray's, all)."""
        return [t.message for t in self.tips(model)]

    def bench_figures(self) -> Mapping[str, tuple[BenchFigures, ...]]:
        """The latest bench figures per model, read with the tips (refreshed every few minutes)."""
        with self._tips_lock:
            return self._bench

    def recording_status(self) -> RecordingStatus:
        """Whether the writer runs, and how far it is (or why recording is off)."""
        writer = self.writer
        if writer is None:
            return RecordingStatus(recording=False, error=self.error)
        return RecordingStatus(recording=True, error=self.error, pending=writer.pending,
                               written=writer.written_items, dropped=writer.dropped)

    def history(self, since: str, known_models: set[str]) -> dict[str, Any]:
        """See `read_history`: the dashboard's data from this store."""
        return read_history(self.path, since, known_models)


def attach_analytics(core: Core, *, path: Path | None = None, **options: Any) -> Analytics | None:
    """Record analytics whenever `core` runs (registered with `core.add_service`); None when disabled."""
    if not core.config.analytics.enabled:
        return None
    analytics = Analytics(core, path=path, **options)
    core.add_service(analytics.start, analytics.stop)
    return analytics
