"""Start-to-icon time, idle CPU and RSS of the running tray with one (emulated) instance.

Run under the test desktop:  scripts/with-desktop.sh .venv/bin/python bench/tray_start.py
Targets (issue 4): start to icon <= 1.5 s, idle CPU <= 0.5 % of one core, RSS <= 80 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.emulator import Emulator, EmulatorSettings
from tests.desktop.xtools import tray_icons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        print("needs a display: scripts/with-desktop.sh .venv/bin/python bench/tray_start.py", file=sys.stderr)
        return 2
    emulator = Emulator(EmulatorSettings()).start()
    starts: list[float] = []
    try:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                config = Path(tmp, "config.toml")
                config.write_text(f'[[instances]]\nname = "bench"\nurl = "{emulator.api_url}"\n')
                env = dict(os.environ, XDG_STATE_HOME=f"{tmp}/state", XDG_CONFIG_HOME=f"{tmp}/config")
                before = set(tray_icons())
                t0 = time.perf_counter()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lmstudio_tray", "--config", str(config), "run"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                while True:
                    fresh = [g for w, g in tray_icons().items() if w not in before and g[2] >= 16]
                    if fresh:
                        break
                    if time.perf_counter() - t0 > 30 or proc.poll() is not None:
                        print("the icon never appeared", file=sys.stderr)
                        proc.kill()
                        return 1
                    time.sleep(0.01)
                starts.append(time.perf_counter() - t0)
                if run == args.runs - 1:
                    measure_idle(proc.pid, args.idle_seconds)
                proc.terminate()
                proc.wait(10)
    finally:
        emulator.close()
    print(f"start to icon: {', '.join(f'{s:.2f}' for s in starts)} s (median {sorted(starts)[len(starts) // 2]:.2f} s)")
    return 0


def measure_idle(pid: int, seconds: float) -> None:
    proc = psutil.Process(pid)
    time.sleep(3)  # let the first polls and the GTK start-up settle
    cpu0 = proc.cpu_times()
    t0 = time.perf_counter()
    time.sleep(seconds)
    cpu1 = proc.cpu_times()
    wall = time.perf_counter() - t0
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    rss = proc.memory_info().rss / 2**20
    print(f"idle CPU over {wall:.0f} s: {used:.2f} s = {100 * used / wall:.2f} % of one core")
    print(f"RSS: {rss:.1f} MiB, threads: {proc.num_threads()}")


if __name__ == "__main__":
    raise SystemExit(main())
