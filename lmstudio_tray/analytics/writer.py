"""The batch writer: a background thread that drains a queue into the store, one transaction per batch.

`put` is all the hook path pays: a deque append (thread-safe, no lock held across IO). The thread wakes
every `flush_interval` seconds, or early when a full batch is waiting, and also runs the periodic chores
(resource samples, retention, refreshing the cached suggestions) so the core loop never touches SQLite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from lmstudio_tray.analytics.records import (
    ContextLookup,
    ModelPresent,
    ResourceSample,
    event_rows,
    forwarded_rows,
    present_rows,
    resource_rows,
)
from lmstudio_tray.analytics.store import Row, Store
from lmstudio_tray.core.events import Event

log = logging.getLogger(__name__)

Item = tuple[float, Any]  # (wall-clock time it happened, Event | forwarded record | ResourceSample)


class Chore:
    """A function the writer thread runs every `interval` seconds (the first run right after start)."""

    def __init__(self, name: str, interval: float, fn: Callable[[], object]) -> None:
        self.name, self.interval, self.fn = name, interval, fn
        self.due = 0.0


class BatchWriter:
    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 0.5,
        batch_size: int = 500,
        max_queue: int = 100_000,
        context_of: ContextLookup | None = None,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.context_of = context_of
        self._queue: deque[Item] = deque(maxlen=max_queue)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._chores: list[Chore] = []
        self.dropped = 0  # items pushed out of a full queue (the writer fell far behind)
        self.failed_batches = 0
        self.written_items = 0

    # ---- producer side (any thread; must stay cheap) ------------------------------------------------

    def put(self, item: Event | Mapping[str, Any] | ResourceSample | ModelPresent, ts: float | None = None) -> None:
        q = self._queue
        if len(q) == q.maxlen:
            self.dropped += 1
        q.append((time.time() if ts is None else ts, item))
        if len(q) >= self.batch_size and not self._wake.is_set():  # set() takes a lock: only when it matters
            self._wake.set()

    def add_chore(self, name: str, interval: float, fn: Callable[[], object]) -> None:
        self._chores.append(Chore(name, interval, fn))

    @property
    def pending(self) -> int:
        return len(self._queue)

    # ---- the thread -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lmstudio-tray-analytics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then end the thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def flush_now(self) -> None:
        """Write everything queued, on the caller's thread (tests, shutdown when the thread is gone)."""
        while self._queue:
            self._write_batch()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._queue:
                self._write_batch()
            self._run_chores()
        self.flush_now()

    def _run_chores(self) -> None:
        now = time.monotonic()
        for chore in self._chores:
            if now < chore.due:
                continue
            chore.due = now + chore.interval
            try:
                chore.fn()
            except Exception:  # a failed sample or prune must not stop the recording
                log.exception("analytics chore %s failed", chore.name)

    def _write_batch(self) -> None:
        rows: list[Row] = []
        taken = 0
        q = self._queue
        while q and taken < self.batch_size:
            ts, item = q.popleft()
            taken += 1
            try:
                rows.extend(self._rows(ts, item))
            except Exception:  # one odd event must not lose the batch
                log.exception("analytics could not record %r", type(item).__name__)
        try:
            self.store.write(rows)
            self.written_items += taken
        except Exception as exc:
            self.failed_batches += 1
            log.warning("analytics: a batch of %d records was not written: %s", taken, exc)

    def _rows(self, ts: float, item: Any) -> list[Row]:
        if isinstance(item, Event):
            return event_rows(ts, item)
        if isinstance(item, ResourceSample):
            return resource_rows(ts, item)
        if isinstance(item, ModelPresent):
            return present_rows(ts, item)
        if isinstance(item, Mapping):
            return forwarded_rows(ts, item, self.context_of)
        return []
