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


def bench_run(model: str, gen_tps: float, *, suite: str = "quick", version: str | None = "0.4.12") -> Any:
    """A one-model `BenchReport` whose generated tokens/s are `gen_tps` (spread ±10 %)."""
    from lmstudio_tray.core.control.bench import SUITE_VERSION, BenchReport, ModelBench, Spread, Suite

    result = ModelBench(model=model, quantization="Q4_K_M", context_length=4096, memory_bytes=2_500_000_000,
                        loaded_for_bench=False, load_seconds=None, first_token_seconds=Spread(0.2, 0.1, 0.3),
                        prompt_tokens_per_s=Spread(900.0, 800.0, 1000.0),
                        generated_tokens_per_s=Spread(gen_tps, gen_tps * 0.9, gen_tps * 1.1),
                        checks_passed=0, checks=0, runs=3)
    return BenchReport(Suite(suite), SUITE_VERSION, version, (result,))


def store_bench(path: Path, runs: Iterable[tuple[float, Any]]) -> None:
    """Keep (ts, BenchReport) pairs in the store at `path`, as `lmstudio-tray bench` does."""
    from lmstudio_tray.analytics.bench import bench_rows

    store = Store(path)
    for ts, report in runs:
        store.write(bench_rows(report, instance="local", ts=ts))
    store.close()
