"""What `lmstudio-tray bench` itself costs beyond the model's own time, against a bare client in the same run.

    .venv/bin/python bench/bench_overhead.py [--rounds 5] [--runs 4] [--scale 0.05] [--json]

The emulator runs in a process of its own with per-model speeds (`speed_scale`): each reply waits the time to
first token its speed table gives for the prompt, then the per-token time after each piece, so the model's time
is known. This process then alternates, round after round (load from other work hits every side alike):

  - baseline: the quick suite's prompts streamed by a bare stdlib client (`http.client`, one connection, no
    parsing beyond finding the pieces): what any client pays;
  - bench: `Bench.run` on the loaded model, as `lmstudio-tray bench` runs it (the listing, the suite, the
    figures, the restore check), with its `BenchTracker` (bus events and the mark file other processes read);
  - bench without tracker: the same, no events and no mark file (what the tracker adds).

Model time per prompt = the emulator's time to first token for that prompt + pieces × its per-token time
(from the speed table, the prompt's token count and the pieces the baseline counted; the output is
deterministic). Prints, per prompt and per run (one run = the suite's prompts), the wall time beyond the model's
time and this process's CPU time (all its threads), medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.control.bench import SUITES, Bench, Suite
from lmstudio_tray.core.control.bench_marks import Benches
from lmstudio_tray.core.events import ALL_KINDS, EventBus
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.emulator.state.catalog import default_catalog
from lmstudio_tray.emulator.state.speed import speed_of

MODEL = "qwen/qwen3-4b-2507"
EMULATOR = """
import json, sys, signal, threading
from lmstudio_tray.emulator import Emulator, EmulatorSettings
emu = Emulator(EmulatorSettings(load_seconds=0.0, speed_scale=float(sys.argv[2]))).start()
emu.load(sys.argv[1])
print(json.dumps(emu.api_url), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
threading.Event().wait()
"""


def model_seconds(prompt_tokens: int, pieces: int, scale: float) -> float:
    """The emulated model's time for one reply (see `EmulatorState.first_token_wait` and `token_wait`)."""
    speed = speed_of(next(s for s in default_catalog() if s.key == MODEL))
    return scale * (speed.first_token_seconds(prompt_tokens) + pieces / speed.generated_tokens_per_s)


def bare_client(url: str, prompts: list[tuple[str, int]]) -> tuple[float, float, list[tuple[int, int]]]:
    """Stream each prompt with http.client: wall and CPU seconds, and (prompt tokens, pieces) per prompt."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    seen = []
    wall, cpu = time.perf_counter(), time.process_time()
    for text, max_tokens in prompts:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                           "stream": True, "stream_options": {"include_usage": True}, "temperature": 0})
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        pieces, prompt_tokens = 0, 0
        for line in resp:
            if not line.startswith(b"data: {"):
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                prompt_tokens = data["usage"]["prompt_tokens"]
            elif data["choices"] and data["choices"][0]["delta"].get("content"):
                pieces += 1
        seen.append((prompt_tokens, pieces))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    return wall, cpu, seen


async def bench_once(url: str, runs: int, state_dir: Path, tracked: bool) -> tuple[float, float, int]:
    """One `Bench.run` of `runs` runs: wall and CPU seconds, and the events it published."""
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append, *ALL_KINDS)
    client = LMStudioClient(url, timeout=30)
    tracker = Benches(bus, state_dir).tracker("local") if tracked else None
    # the version is given: its probe (one extra token at the end of a bench) is not what is measured here
    bench = Bench(client, tracker=tracker, lmstudio_version="bench")
    wall, cpu = time.perf_counter(), time.process_time()
    await bench.run([MODEL], Suite.QUICK, runs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await client.aclose()
    return wall, cpu, len(events)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=4, help="runs of the quick suite per bench")
    parser.add_argument("--scale", type=float, default=0.05, help="the emulator's speed_scale")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    prompts = [(p.text, p.max_tokens) for p in SUITES[Suite.QUICK]]
    emu = subprocess.Popen([sys.executable, "-c", EMULATOR, MODEL, str(args.scale)], stdout=subprocess.PIPE,
                           text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert emu.stdout is not None
        url = json.loads(emu.stdout.readline())
        figures = asyncio.run(measure(url, prompts, args))
    finally:
        emu.terminate()
        emu.wait(10)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(render(figures))
    return 0


async def measure(url: str, prompts: list[tuple[str, int]], args: argparse.Namespace) -> dict[str, Any]:
    n = len(prompts)
    base_wall, base_cpu, tracked_wall, tracked_cpu, bare_wall, bare_cpu = [], [], [], [], [], []
    model_run = 0.0
    events = 0
    bare_client(url, prompts)  # warm-up: connections, imports, the emulator's first replies
    with tempfile.TemporaryDirectory() as tmp:
        await bench_once(url, 1, Path(tmp), True)
        for _ in range(args.rounds):
            wall, cpu, seen = await asyncio.to_thread(bare_client, url, prompts * args.runs)
            model_run = sum(model_seconds(t, p, args.scale) for t, p in seen[:n])
            base_wall.append(wall / args.runs - model_run)
            base_cpu.append(cpu / args.runs)
            wall, cpu, events = await bench_once(url, args.runs, Path(tmp), True)
            tracked_wall.append(wall / args.runs - model_run)
            tracked_cpu.append(cpu / args.runs)
            wall, cpu, _ = await bench_once(url, args.runs, Path(tmp), False)
            bare_wall.append(wall / args.runs - model_run)
            bare_cpu.append(cpu / args.runs)

    def ms(values: list[float], per: int = 1) -> float:
        return round(1000 * median(values) / per, 2)

    return {
        "settings": {"rounds": args.rounds, "runs": args.runs, "speed_scale": args.scale, "prompts_per_run": n,
                     "model_seconds_per_run": round(model_run, 4), "events_per_bench": events},
        "baseline_client": {"wall_ms_per_run": ms(base_wall), "wall_ms_per_prompt": ms(base_wall, n),
                            "cpu_ms_per_run": ms(base_cpu), "cpu_ms_per_prompt": ms(base_cpu, n)},
        "bench": {"wall_ms_per_run": ms(tracked_wall), "wall_ms_per_prompt": ms(tracked_wall, n),
                  "cpu_ms_per_run": ms(tracked_cpu), "cpu_ms_per_prompt": ms(tracked_cpu, n)},
        "bench_without_tracker": {"wall_ms_per_run": ms(bare_wall), "wall_ms_per_prompt": ms(bare_wall, n),
                                  "cpu_ms_per_run": ms(bare_cpu), "cpu_ms_per_prompt": ms(bare_cpu, n)},
    }


def render(f: dict[str, Any]) -> str:
    s = f["settings"]
    lines = [f"bench overhead: {s['rounds']} rounds x {s['runs']} runs of the quick suite ({s['prompts_per_run']} "
             f"prompts), emulator speed_scale {s['speed_scale']}: model time {1000 * s['model_seconds_per_run']:.1f} "
             f"ms per run; {s['events_per_bench']} bus events per bench",
             f"  {'':24} {'wall beyond model':>20} {'':>10} {'CPU':>10} {'':>10}",
             f"  {'':24} {'per run':>10} {'per prompt':>10} {'per run':>10} {'per prompt':>10}"]
    for key, name in (("baseline_client", "bare client (baseline)"), ("bench", "bench"),
                      ("bench_without_tracker", "bench, no tracker")):
        v = f[key]
        lines.append(f"  {name:24} {v['wall_ms_per_run']:>8.2f}ms {v['wall_ms_per_prompt']:>8.2f}ms "
                     f"{v['cpu_ms_per_run']:>8.2f}ms {v['cpu_ms_per_prompt']:>8.2f}ms")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
