"""Router overhead: time to first byte and streamed-token throughput, routed vs direct, in the same run.

    .venv/bin/python bench/router_bench.py [--requests 300] [--streams 100] [--concurrency 8]

Three processes, so none steals the other's interpreter: the emulators (a pool of two with the model
loaded), the endpoint (core + router, as `lmstudio-tray serve` runs it), and this client. Requests
alternate between the direct call to an emulator and the same call through `/v1/route/bench/v1/...`, so
load from the other engineers on the machine hits both sides alike.

Prints:
  - time to first byte of a streamed chat completion (p50/p90/p99), direct vs routed, and the added p50
    (target: <= 2 ms), next to a bare TCP relay process: on a loaded machine any extra process hop waits
    for a CPU, and the relay shows how much of the added time that alone is;
  - streamed tokens per second, one stream at a time and --concurrency at once, direct vs routed, as fast
    as the emulator can stream (the pipe's limit) and at a real model's pace of 100 tokens/s per stream
    (target: unchanged, i.e. a ratio close to 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "qwen/qwen3-4b-2507"
EMULATORS = """
import json, sys, signal, threading
from lmstudio_tray.emulator import Emulator, EmulatorSettings
emus = [Emulator(EmulatorSettings(load_seconds=0.0)).start() for _ in range(2)]
for e in emus:
    e.load(sys.argv[1])
print(json.dumps([[e.api_url, e.control_url] for e in emus]), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
threading.Event().wait()
"""
RELAY = """
import asyncio, socket, sys
host, port = sys.argv[1].split("//")[1].rsplit(":", 1)
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
async def handle(r1, w1):
    r2, w2 = await asyncio.open_connection(host, int(port))
    await asyncio.gather(pipe(r1, w2), pipe(r2, w1))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""
ENDPOINT = """
import asyncio, json, signal, sys
from pathlib import Path
from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core
urls = json.loads(sys.argv[1])
config = parse_config({
    "instances": [{"name": f"e{i}", "url": u} for i, u in enumerate(urls)],
    "pools": [{"name": "bench", "instances": [f"e{i}" for i in range(len(urls))]}],
    "endpoint": {"port": 0},
})
async def main():
    core = Core(config, lms_path=None)
    server = attach_endpoint(core, discovery_file=Path(sys.argv[2]))
    await core.start()
    print(json.dumps({"url": server.url, "token": server.token}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await core.stop()
asyncio.run(main())
"""


def body(text: str) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": True}


async def ttfb(client: httpx.AsyncClient, url: str, headers: dict[str, str], text: str) -> tuple[float, int]:
    """Seconds to the first body byte of a streamed completion, and the chunks (tokens) it streamed."""
    started = time.perf_counter()
    first = 0.0
    chunks = 0
    async with client.stream("POST", url, json=body(text), headers=headers) as r:
        r.raise_for_status()
        async for chunk in r.aiter_raw():
            if not first:
                first = time.perf_counter() - started
            chunks += chunk.count(b"data: ")
    return first, chunks


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def cpu_rate(proc: psutil.Process, seconds: float) -> float:
    before = cpu_seconds(proc)
    await asyncio.sleep(seconds)
    return (cpu_seconds(proc) - before) / seconds


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q * len(data)))]


async def run(args: argparse.Namespace) -> None:
    emus = subprocess.Popen([sys.executable, "-c", EMULATORS, MODEL], stdout=subprocess.PIPE, text=True)
    endpoint: subprocess.Popen[str] | None = None
    relay: subprocess.Popen[str] | None = None
    try:
        assert emus.stdout is not None
        pairs: list[list[str]] = json.loads(emus.stdout.readline())
        urls = [api for api, _ in pairs]
        with tempfile.TemporaryDirectory() as tmp:
            endpoint = subprocess.Popen(
                [sys.executable, "-c", ENDPOINT, json.dumps(urls), str(Path(tmp) / "endpoint.json")],
                stdout=subprocess.PIPE, text=True,
            )
            assert endpoint.stdout is not None
            info = json.loads(endpoint.stdout.readline())
            # the floor: a bare TCP relay process (no HTTP at all) costs the same extra hop
            relay = subprocess.Popen([sys.executable, "-c", RELAY, urls[0]], stdout=subprocess.PIPE, text=True)
            assert relay.stdout is not None
            relay_url = f"http://127.0.0.1:{relay.stdout.readline().strip()}/v1/chat/completions"
            routed_url = info["url"] + "/v1/route/bench/v1/chat/completions"
            auth = {"authorization": f"Bearer {info['token']}"}
            direct_url = urls[0] + "/v1/chat/completions"
            # concurrent direct streams go to both emulators in turn, as the router spreads them
            direct_urls = [u + "/v1/chat/completions" for u in urls]
            limits = httpx.Limits(max_keepalive_connections=args.concurrency * 2)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                for _ in range(20):  # warm connections and caches on both paths
                    await ttfb(client, direct_url, {}, "warm up")
                    await ttfb(client, routed_url, auth, "warm up")
                    await ttfb(client, relay_url, {}, "warm up")
                ep_proc = psutil.Process(endpoint.pid)
                idle_rate = await cpu_rate(ep_proc, 3.0)  # the monitor's polling, to subtract
                cpu_before = cpu_seconds(ep_proc)
                loop_started = time.perf_counter()
                direct: list[float] = []
                routed: list[float] = []
                relayed: list[float] = []
                for i in range(args.requests):
                    text = f"request number {i}"
                    trio = [(direct, direct_url, {}), (routed, routed_url, auth), (relayed, relay_url, {})]
                    for samples, url, headers in trio[i % 3:] + trio[:i % 3]:
                        samples.append((await ttfb(client, url, headers, text))[0] * 1000)
                print(f"time to first byte over {args.requests} streamed chat completions (ms):")
                for name, data in (("direct", direct), ("relayed", relayed), ("routed", routed)):
                    print(f"  {name:7} p50 {pct(data, .5):6.2f}  p90 {pct(data, .9):6.2f}  p99 {pct(data, .99):6.2f}")
                # the relayed calls do not touch the endpoint; only the monitor's polling runs meanwhile
                busy = cpu_seconds(ep_proc) - cpu_before - idle_rate * (time.perf_counter() - loop_started)
                print(f"  endpoint CPU per routed request: {busy / args.requests * 1000:.2f} ms "
                      f"(machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
                added = pct(routed, .5) - pct(direct, .5)
                hop = pct(relayed, .5) - pct(direct, .5)
                print(f"  added by the router, end to end: p50 {added:+.2f} ms (target <= 2 ms)"
                      f"  {'OK' if added <= 2 else 'OVER TARGET'}")
                print(f"  added by a bare TCP relay process (the cost of any extra hop right now): p50 {hop:+.2f} ms;"
                      f" router minus relay: {added - hop:+.2f} ms")
                inside = (await client.get(info["url"] + "/v1/route/", headers=auth)).json()["overhead_ms"]
                print(f"  of which the router's own code (timed inside the endpoint, instance time excluded): "
                      f"p50 {inside['p50']:.3f} ms  p99 {inside['p99']:.3f} ms;"
                      " the rest is the extra process hop waiting for a CPU")

                print("streamed tokens per second (token_delay 0: the pipe's own limit):")
                for conc in (1, args.concurrency):
                    rates: dict[str, float] = {}
                    for name, url, headers in (("direct", direct_url, {}), ("routed", routed_url, auth)):
                        started = time.perf_counter()
                        total = 0
                        for batch in range(args.streams // conc):
                            got = await asyncio.gather(*(
                                ttfb(client, direct_urls[k % len(direct_urls)] if name == "direct" else url, headers,
                                 f"a longer prompt so the reply has more words {batch} {k}")
                                for k in range(conc)))
                            total += sum(c for _, c in got)
                        rates[name] = total / (time.perf_counter() - started)
                    print(f"  {conc} at a time: direct {rates['direct']:8.0f}/s  routed {rates['routed']:8.0f}/s"
                          f"  ratio {rates['routed'] / rates['direct']:.2f}")
                # at a real model's pace (100 tokens/s per stream) the router must not slow anything down
                for _, control in pairs:
                    httpx.post(control + "/_emulator/settings", json={"token_delay": 0.01}, timeout=10)
                rates = {}
                for name, url, headers in (("direct", direct_url, {}), ("routed", routed_url, auth)):
                    started = time.perf_counter()
                    total = 0
                    for batch in range(3):
                        got = await asyncio.gather(*(
                            ttfb(client, direct_urls[k % len(direct_urls)] if name == "direct" else url, headers,
                                 f"a longer prompt so the reply has more words {batch} {k}")
                            for k in range(args.concurrency)))
                        total += sum(c for _, c in got)
                    rates[name] = total / (time.perf_counter() - started)
                print(f"  at 100 tokens/s per stream, {args.concurrency} streams: direct {rates['direct']:6.0f}/s"
                      f"  routed {rates['routed']:6.0f}/s  ratio {rates['routed'] / rates['direct']:.2f}")
                print(f"(token_delay 0 measures the pipe: the emulator streams a token per chunk as fast as it can; "
                      f"real models make 20-150 tokens/s per stream) stdev of direct ttfb "
                      f"{statistics.pstdev(direct):.2f} ms")
    finally:
        for proc in (relay, endpoint, emus):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--streams", type=int, default=96)
    p.add_argument("--concurrency", type=int, default=8)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
