"""Cost of saving a preference, and how long a profile switch takes to reach a running core.

    .venv/bin/python bench/config_bench.py [--writes 200] [--switches 10] [--json]

Measured in the same run:
  1. `update_config` (tomlkit edit keeping comments + schema validation + backup + two atomic writes)
     per call, against the baseline of a bare `atomic_write` of the same text (the floor any safe write
     pays: temp file, fsync, rename);
  2. `Core.apply_config` for a profile switch that swaps the watched instance (monitor stopped and
     started, first poll of the new LM Studio emulator included), in-process;
  3. end to end: `profile use` written to the file -> the running core reports the new profile, through
     the file watcher (polls every CONFIG_WATCH_SECONDS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.profiles import use_profile
from lmstudio_tray.core.config.store import update_config
from lmstudio_tray.core.runtime import CONFIG_WATCH_SECONDS, Core
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.emulator import Emulator, EmulatorSettings

CONFIG = """\
# bench config: comments and layout like a user's file
version = 2

[[instances]]
name = "home"
url = "{home}"

[monitor]
poll_interval = 1.0  # default

[notifications]
enabled = true

[profiles.work]
description = "other box"

[[profiles.work.instances]]
name = "gpu"
url = "{gpu}"
"""


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1 if len(ordered) > 1 else 0] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def bench_writes(path: Path, n: int) -> dict[str, Any]:
    saves, floor = [], []
    for i in range(n):
        started = time.perf_counter()
        update_config(path, {"notifications.enabled": i % 2 == 0})
        saves.append(time.perf_counter() - started)
    text = path.read_text()
    for _ in range(n):
        started = time.perf_counter()
        atomic_write(path.with_name("floor.toml"), text)
        floor.append(time.perf_counter() - started)
    save, base = ms(saves), ms(floor)
    return {"update_config": save, "atomic_write_baseline": base,
            "overhead_p50_ms": round(save["p50_ms"] - base["p50_ms"], 3)}


async def bench_switches(path: Path, n: int) -> dict[str, Any]:
    core = Core(load_config(path), config_path=path, lms_path=None)
    await core.start()
    direct: list[float] = []
    watched: list[float] = []
    try:
        for i in range(n):
            target = "work" if i % 2 == 0 else None
            started = time.perf_counter()
            new = use_profile(path, target)
            await core.apply_config(new)
            direct.append(time.perf_counter() - started)
        for _ in range(n):
            target = "work" if core.config.active_profile is None else None
            started = time.perf_counter()
            use_profile(path, target)
            while core.config.active_profile != target:
                await asyncio.sleep(0.005)
            watched.append(time.perf_counter() - started)
    finally:
        await core.stop()
    return {"apply_config_switch": ms(direct), "profile_use_to_running_core": ms(watched),
            "watch_interval_s": CONFIG_WATCH_SECONDS}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Emulator(EmulatorSettings(home=Path(tmp) / "h")).start()
        gpu = Emulator(EmulatorSettings(home=Path(tmp) / "g")).start()
        try:
            path = Path(tmp) / "config.toml"
            path.write_text(CONFIG.format(home=home.api_url, gpu=gpu.api_url))
            result = {"writes": bench_writes(path, args.writes),
                      "switches": asyncio.run(bench_switches(path, args.switches))}
        finally:
            home.close()
            gpu.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        w, s = result["writes"], result["switches"]
        save = w["update_config"]
        print(f"update_config      p50 {save['p50_ms']:.2f} ms  p95 {save['p95_ms']:.2f} ms")
        print(f"atomic_write floor p50 {w['atomic_write_baseline']['p50_ms']:.2f} ms  "
              f"(save overhead p50 {w['overhead_p50_ms']:.2f} ms)")
        print(f"apply_config switch (new instance polled) p50 {s['apply_config_switch']['p50_ms']:.1f} ms  "
              f"max {s['apply_config_switch']['max_ms']:.1f} ms")
        e2e = s["profile_use_to_running_core"]
        print(f"profile use -> running core (watcher, {s['watch_interval_s']:.0f} s interval) "
              f"p50 {e2e['p50_ms']:.0f} ms  max {e2e['max_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
