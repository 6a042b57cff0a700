"""Analytics benchmarks: ingest throughput, and what recording adds to a validate.

    .venv/bin/python bench/analytics_bench.py [--events 100000] [--validates 2000]

Prints:
  - ingest: events/s from `BatchWriter.put` to committed rows (a realistic mix: verdicts, forwarded
    OpenCode turns, model events), and the producer-side cost of one `put` (what the hook path pays);
  - validate: client-side and server-side p50/p95 of POST /v1/validate on two endpoints in the same
    process run, one with the store attached and one without (the baseline), requests interleaved so
    both see the same machine load. Target: no measurable difference on p50.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.analytics import Analytics
from lmstudio_tray.analytics.store import Store
from lmstudio_tray.analytics.writer import BatchWriter
from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.events import ModelLoaded, VerdictGiven
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator, EmulatorSettings

MODEL = "qwen/qwen3-4b-2507"


def turn(i: int) -> dict[str, Any]:
    t = time.time() * 1000
    return {"type": "message.updated", "time": t, "session_id": f"s{i % 50}", "instance": "local",
            "provider_id": "lmstudio", "model": MODEL,
            "properties": {"sessionID": f"s{i % 50}", "info": {
                "id": f"m{i}", "sessionID": f"s{i % 50}", "role": "assistant", "modelID": MODEL, "mode": "build",
                "time": {"created": t - 2000, "completed": t}, "tokens": {"input": 1200, "output": 80,
                                                                          "reasoning": 0, "cache": {"read": 0}}}}}


def bench_ingest(n: int, tmp: Path) -> None:
    store = Store(tmp / "ingest.sqlite3", max_rows=10_000_000)
    writer = BatchWriter(store, flush_interval=0.05, max_queue=n + 1)
    items: list[Any] = []
    for i in range(n):
        kind = i % 10
        if kind < 6:
            items.append(VerdictGiven("local", model=MODEL, model_key=MODEL, category="ready", latency_ms=0.3))
        elif kind < 9:
            items.append(turn(i))
        else:
            items.append(ModelLoaded("local", model=MODEL, instance_id=MODEL, context_length=8192))
    # producer cost alone (thread not started: nothing competes for the GIL)
    started = time.perf_counter()
    for item in items:
        writer.put(item)
    put_ns = (time.perf_counter() - started) / n * 1e9
    writer._queue.clear()
    # baseline in the same run: the bare deque append a put() wraps
    bare: deque[Any] = deque(maxlen=n + 1)
    started = time.perf_counter()
    for item in items:
        bare.append((time.time(), item))
    bare_ns = (time.perf_counter() - started) / n * 1e9
    bare.clear()

    writer.start()
    started = time.perf_counter()
    for item in items:
        writer.put(item)
    while writer.written_items < n:
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    writer.stop()
    rows = sum(store.counts().values())
    size = (tmp / "ingest.sqlite3").stat().st_size
    store.close()
    print(f"ingest: {n} events in {seconds:.2f} s = {n / seconds:,.0f} events/s "
          f"({store.batches} batches, {rows} rows, {size / 1e6:.1f} MB); put() = {put_ns:.0f} ns/event "
          f"(bare deque append baseline {bare_ns:.0f} ns); "
          f"dropped {writer.dropped}, failed batches {writer.failed_batches}")


def start_stack(emu: Emulator, db: Path | None) -> tuple[CoreThread, str, str]:
    cfg = parse_config({"instances": [{"name": "local", "url": emu.api_url}], "endpoint": {"port": 0},
                        "analytics": {"enabled": db is not None}})
    core = Core(cfg, lms_path=None)
    # wired as lmstudio_tray.wiring wires them: the endpoint gets the analytics as its insights
    analytics = Analytics(core, path=db) if db is not None else None
    server = attach_endpoint(core, discovery_file=(db or Path(tempfile.mkdtemp()) / "x").with_suffix(".json"),
                             insights=analytics)
    if analytics is not None:
        core.add_service(analytics.start, analytics.stop)
    thread = CoreThread(core)
    thread.start()
    return thread, server.url, server.token


def pct(data: list[float], q: float) -> float:
    s = sorted(data)
    return s[min(len(s) - 1, int(q * len(s)))]


def bench_validate(n: int, tmp: Path) -> None:
    emu = Emulator(EmulatorSettings(load_seconds=0.0)).start()
    emu.load(MODEL, context_length=8192)
    stacks = {"without store": start_stack(emu, None), "with store": start_stack(emu, tmp / "validate.sqlite3")}
    clients = {name: httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30)
               for name, (_, url, token) in stacks.items()}
    body = {"model": MODEL, "base_url": emu.api_url + "/v1", "session_id": "bench"}
    try:
        for c in clients.values():  # warm: connections, the status cache, imports
            for _ in range(200):
                c.post("/v1/validate", json=body)
        times: dict[str, list[float]] = {name: [] for name in clients}
        for i in range(n):
            order = list(clients.items()) if i % 2 == 0 else list(reversed(clients.items()))
            for name, c in order:
                t = time.perf_counter()
                r = c.post("/v1/validate", json=body)
                times[name].append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
        for name, c in clients.items():
            m = c.get("/v1/metrics").json()["validate"]
            data = times[name]
            print(f"validate {name:>13}: client p50 {statistics.median(data):.3f} ms, p95 {pct(data, 0.95):.3f} ms; "
                  f"server p50 {m['p50_ms']:.4f} ms, p99 {m['p99_ms']:.4f} ms ({m['count']} calls)")
        diff = statistics.median(times["with store"]) - statistics.median(times["without store"])
        print(f"validate: store adds {diff:+.3f} ms to the client p50 (same run, interleaved)")
    finally:
        for c in clients.values():
            c.close()
        for thread, _, _ in stacks.values():
            thread.stop()
        emu.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--validates", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="analytics-bench-") as tmp:
        bench_ingest(args.events, Path(tmp))
        bench_validate(args.validates, Path(tmp))


if __name__ == "__main__":
    main()
