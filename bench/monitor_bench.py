"""Monitor benchmarks: detection latency and the CPU cost of polling.

    .venv/bin/python bench/monitor_bench.py [--trials 10] [--seconds 20]

Prints, for the default config (1 s poll interval):
  - detection latency, model appears -> `model.loaded` event and server stops -> `instance.offline`
    (p50/p95 over --trials; target p95 <= 1.5 s);
  - CPU of the monitor process polling 1 and 50 instances every 1 s (targets: 50 instances < 10 % of a
    core, idle monitor with one instance < 0.5 %), next to a baseline measured in the same run: a bare
    httpx loop making the same requests with no parsing, diffing or events.
The emulators run in a separate process so their CPU is not counted.

    .venv/bin/python bench/monitor_bench.py --poll-cost 2000

instead prints the CPU of one status poll (`LMStudioClient.list_models()` on a warm client, as the
monitor makes it once a second) next to a bare httpx GET of the same route, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.config.schema import Config, InstanceConfig, MonitorConfig
from lmstudio_tray.core.events import Event, InstanceOffline, ModelLoaded
from lmstudio_tray.core.runtime import Core

HOST_SCRIPT = """
import json, sys, signal, threading
from lmstudio_tray.emulator import Emulator, EmulatorSettings
n = int(sys.argv[1])
emus = [Emulator(EmulatorSettings(load_seconds=0.0)).start() for _ in range(n)]
print(json.dumps([[e.api_url, e.control_url] for e in emus]), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
threading.Event().wait()
"""


class Emulators:
    """N emulators in a child process; controlled over their control port."""

    def __init__(self, n: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, str(n)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.urls: list[list[str]] = json.loads(self.proc.stdout.readline())

    def control(self, index: int, path: str, body: dict[str, object] | None = None) -> None:
        httpx.post(self.urls[index][1] + path, json=body or {}, timeout=10).raise_for_status()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_core(urls: list[str]) -> Core:
    cfg = Config(
        instances=[InstanceConfig(name=f"e{i}", url=u) for i, u in enumerate(urls)],
        monitor=MonitorConfig(),  # the defaults are what is measured
    )
    return Core(cfg, lms_path=None, secrets=_NoSecrets())


class _NoSecrets:
    backend = "none"

    def get(self, name: str) -> str | None:
        return None

    def set(self, name: str, token: str) -> None: ...

    def delete(self, name: str) -> None: ...


async def detection(emus: Emulators, trials: int) -> dict[str, list[float]]:
    core = make_core([emus.urls[0][0]])
    got: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    def on_event(event: Event) -> None:
        got.put_nowait((event.kind, time.perf_counter()))

    core.bus.subscribe(on_event, ModelLoaded, InstanceOffline)
    await core.start()
    appear: list[float] = []
    offline: list[float] = []
    try:
        for _ in range(trials):
            await asyncio.sleep(random.uniform(11, 12))  # past the fast-poll window: stable 1 s polling
            t0 = time.perf_counter()
            await asyncio.to_thread(emus.control, 0, "/_emulator/load", {"model": "qwen/qwen3-4b-2507"})
            kind, t1 = await asyncio.wait_for(got.get(), 10)
            assert kind == "model.loaded", kind
            appear.append(t1 - t0)
            await asyncio.to_thread(emus.control, 0, "/_emulator/unload-all")
            await asyncio.sleep(random.uniform(11, 12))  # past the fast-poll window after the change
            while not got.empty():
                got.get_nowait()
            t0 = time.perf_counter()
            await asyncio.to_thread(emus.control, 0, "/_emulator/server/stop")
            kind, t1 = await asyncio.wait_for(got.get(), 10)
            assert kind == "instance.offline", kind
            offline.append(t1 - t0)
            await asyncio.to_thread(emus.control, 0, "/_emulator/server/start")
            await asyncio.sleep(1)
            while not got.empty():
                got.get_nowait()
    finally:
        await core.stop()
    return {"model appears": appear, "server stops": offline}


async def poll_cpu(urls: list[str], seconds: float) -> float:
    core = make_core(urls)
    await core.start()
    await asyncio.sleep(12)  # leave the fast window that follows the first sight of each instance
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
    await core.stop()
    return cpu * 100


async def baseline_cpu(urls: list[str], seconds: float) -> float:
    async with httpx.AsyncClient() as http:

        async def loop(url: str) -> None:
            while True:
                await http.get(url + "/api/v1/models")
                await asyncio.sleep(1.0)

        tasks = [asyncio.ensure_future(loop(u)) for u in urls]
        await asyncio.sleep(2)
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return cpu * 100


async def poll_cost(url: str, polls: int) -> tuple[float, float]:
    """CPU milliseconds per status poll: the tray's client, then a bare httpx GET of the same route."""
    from lmstudio_tray.core.lmstudio.client import LMStudioClient

    client = LMStudioClient(url)
    try:
        for _ in range(20):  # warm: connection open, API generation known
            await client.list_models()
        c0 = time.process_time()
        for _ in range(polls):
            await client.list_models()
        ours = (time.process_time() - c0) / polls * 1000
    finally:
        await client.aclose()
    async with httpx.AsyncClient() as http:
        for _ in range(20):
            await http.get(url + "/api/v1/models")
        c0 = time.process_time()
        for _ in range(polls):
            await http.get(url + "/api/v1/models")
        base = (time.process_time() - c0) / polls * 1000
    return ours, base


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--skip-cpu", action="store_true", help="only the detection latency")
    ap.add_argument("--poll-cost", type=int, default=0, metavar="N",
                    help="only the CPU of one status poll, averaged over N polls")
    args = ap.parse_args()
    if args.poll_cost:
        one = Emulators(1)
        try:
            one.control(0, "/_emulator/load", {"model": "qwen/qwen3-4b-2507"})
            ours, base = await poll_cost(one.urls[0][0], args.poll_cost)
        finally:
            one.close()
        print(f"CPU of one status poll (list_models, warm): {ours:.3f} ms; bare httpx GET {base:.3f} ms "
              f"(n={args.poll_cost})")
        return
    emus = Emulators(50)
    try:
        det = await detection(emus, args.trials)
        print("detection latency at the default 1 s poll interval (target p95 <= 1.5 s)")
        for name, values in det.items():
            p50, p95 = statistics.median(values), pct(values, 0.95)
            print(f"  {name:<15} p50 {p50:.3f} s  p95 {p95:.3f} s  (n={len(values)})")
        all_urls = [u[0] for u in emus.urls]
        for n, target in () if args.skip_cpu else ((1, 0.5), (50, 10.0)):
            ours = await poll_cpu(all_urls[:n], args.seconds)
            base = await baseline_cpu(all_urls[:n], args.seconds)
            ratio = ours / base if base > 0 else float("inf")
            print(
                f"CPU polling {n:>2} instance(s) every 1 s: {ours:.2f} % of a core (target < {target} %); "
                f"bare httpx loop {base:.2f} % -> {ratio:.1f}x"
            )
    finally:
        emus.close()


if __name__ == "__main__":
    asyncio.run(main())
