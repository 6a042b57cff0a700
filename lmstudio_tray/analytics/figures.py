"""What `lmstudio-tray stats` and `bench` read from and write to the store, as functions both the command line and
the agent's tools call (the tools through the core's `Measurements` port, which the composition root builds on
these): the usage summary of a window and keeping a bench's results (the latest bench figures per model are
`bench.latest_bench`, read with the usage figures by `diagnostics.usage.measured`).

Every function here blocks (SQLite): never on an event loop (`WrongThread`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from lmstudio_tray.analytics.bench import bench_history, bench_rows
from lmstudio_tray.analytics.reports import build_report, parse_since
from lmstudio_tray.analytics.store import Store, default_path, reading
from lmstudio_tray.analytics.suggestions import suggest
from lmstudio_tray.core.control.bench import BenchReport
from lmstudio_tray.core.threads import not_on_event_loop


def read_stats(path: Path | None, since: str, now: float | None = None) -> dict[str, Any]:
    """`stats --json`'s data for the window `since` ("7d", "12h", "all"): `window`, `report` (totals, per model and
    per instance), `suggestions` and the `bench` rows of the window, newest first. ValueError names a bad `since`;
    StoreError when nothing was recorded yet (the message says so)."""
    not_on_event_loop("reading the analytics store")
    window = parse_since(since)
    moment = time.time() if now is None else now
    start = moment - window if math.isfinite(window) else 0.0
    with reading(path) as conn:
        report = build_report(conn, start, moment)
        tips = suggest(conn, moment)
        bench = bench_history(conn, start, moment)
    return {"window": since, "report": report.to_json(), "suggestions": [t.to_json() for t in tips], "bench": bench}


def record_bench(path: Path | None, report: BenchReport, instance: str, ts: float | None = None) -> None:
    """Keep a bench's results: one row per model, in one transaction (opens and migrates the store). StoreError
    when the store cannot be opened."""
    not_on_event_loop("writing the analytics store")
    store = Store(path or default_path())
    try:
        store.write(bench_rows(report, instance=instance, ts=time.time() if ts is None else ts))
    finally:
        store.close()
