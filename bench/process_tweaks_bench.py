"""What each process-wide tweak of lmstudio_tray.platform.process gains, measured with and without it.

    .venv/bin/python bench/process_tweaks_bench.py [--runs 7] [--calls 3000] [--rounds 3] [--json]

1. `skip_uvicorn_command_line()`: a fresh interpreter holding what the tray holds before its endpoint
   starts (asyncio, the core) imports the endpoint (`lmstudio_tray.api.server`, as the tray does); resident
   memory (RSS) and wall time of that import, with and without the stand-in, median of --runs each,
   alternating.
2. `skip_httpx_command_line()`: the same for `import httpx` after `lmstudio_tray.cli` (the commands and
   the team profile fetch that use httpx).
3. `shorten_switch_interval()`: the endpoint and the core in a child process (the way `serve` runs them)
   next to one busy pure-Python thread (what the analytics writer or the tray's GUI are while they work),
   with CPython's default switch interval (5 ms, the baseline) and with 0.5 ms; --calls validate round
   trips over one keep-alive connection per variant and round, the variants alternating for --rounds rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from validate_bench import KeepAlive, summary, timed  # noqa: E402

from lmstudio_tray.emulator import Emulator, EmulatorSettings  # noqa: E402

MODEL = "qwen/qwen3-4b-2507"
MIB = 1024 * 1024

IMPORT_CHILD = r"""
import json, sys, time
import psutil

def rss():
    return psutil.Process().memory_info().rss

which, tweak = sys.argv[1], sys.argv[2] == "on"
import asyncio  # noqa: F401
if which == "uvicorn":
    import lmstudio_tray.core.runtime  # noqa: F401  what the tray holds before its endpoint starts
    from lmstudio_tray.platform.process import skip_uvicorn_command_line as tweak_fn
    target = "lmstudio_tray.api.server"
else:
    import lmstudio_tray.cli  # noqa: F401
    from lmstudio_tray.platform.process import skip_httpx_command_line as tweak_fn
    target = "httpx"
if tweak:
    tweak_fn()
before, t0 = rss(), time.perf_counter()
__import__(target)
seconds, after = time.perf_counter() - t0, rss()
print(json.dumps({"rss": after - before, "seconds": seconds, "modules": len(sys.modules),
                  "click": "click" in sys.modules}))
"""

SERVE_CHILD = r"""
import asyncio, json, sys, threading
from pathlib import Path

interval, config_path, discovery = float(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
sys.setswitchinterval(interval)

def busy() -> None:
    n = 0
    while True:  # pure Python: it holds the GIL until the interpreter asks it to hand over
        n += 1

from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.runtime import Core

core = Core(load_config(config_path), config_path=config_path)
server = attach_endpoint(core, port=0, discovery_file=discovery)

async def main() -> None:
    await core.start()
    threading.Thread(target=busy, daemon=True).start()
    print(json.dumps({"url": server.url, "token": server.token}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def import_cost(which: str, runs: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(runs):
        for variant in ("off", "on"):
            out = subprocess.run([sys.executable, "-c", IMPORT_CHILD, which, variant], capture_output=True,
                                 text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if out.returncode != 0:
                raise SystemExit(f"{which} {variant}: {out.stderr}")
            samples[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def med(variant: str, key: str) -> float:
        return float(statistics.median(s[key] for s in samples[variant]))

    off_mib, on_mib = med("off", "rss") / MIB, med("on", "rss") / MIB
    off_ms, on_ms = med("off", "seconds") * 1000, med("on", "seconds") * 1000
    return {
        "baseline_without": {"rss_mib": off_mib, "import_ms": off_ms, "modules": med("off", "modules"),
                             "click_loaded": samples["off"][0]["click"]},
        "with_tweak": {"rss_mib": on_mib, "import_ms": on_ms, "modules": med("on", "modules"),
                       "click_loaded": samples["on"][0]["click"]},
        "saved_rss_mib": off_mib - on_mib,
        "saved_ms": off_ms - on_ms,
        "runs": runs,
    }


def start_endpoint(interval: float, workdir: Path, emu: Emulator) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cfg = workdir / "config.toml"
    cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n\n[endpoint]\nport = 0\n')
    env = {**os.environ, "HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir / "config"),
           "XDG_STATE_HOME": str(workdir / "state"), "XDG_DATA_HOME": str(workdir / "data"),
           "XDG_CACHE_HOME": str(workdir / "cache"), "PYTHONPATH": str(ROOT),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    proc = subprocess.Popen([sys.executable, "-c", SERVE_CHILD, str(interval), str(cfg), str(workdir / "ep.json")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the endpoint child did not start")
    return proc, json.loads(line)


def switch_interval(calls: int, rounds: int) -> dict[str, Any]:
    emu = Emulator(EmulatorSettings(load_seconds=0.0)).start()
    emu.load(MODEL, context_length=8192)
    body = json.dumps({"model": MODEL, "base_url": emu.api_url + "/v1", "context_limit": 8192,
                       "session_id": "ses_bench"}).encode()
    lat: dict[str, list[float]] = {"default": [], "short": []}
    intervals = {"default": 0.005, "short": 0.0005}
    try:
        for r in range(rounds):
            for variant in (("default", "short") if r % 2 == 0 else ("short", "default")):
                with tempfile.TemporaryDirectory(prefix="switch-bench-") as tmp:
                    proc, ep = start_endpoint(intervals[variant], Path(tmp), emu)
                    try:
                        client = KeepAlive(ep["url"], {"Authorization": f"Bearer {ep['token']}"})
                        time.sleep(0.5)  # the endpoint's first requests and the busy thread settle
                        timed(lambda c=client: c.call("POST", "/v1/validate", body), 200)  # warm up
                        lat[variant] += timed(lambda c=client: c.call("POST", "/v1/validate", body), calls)
                        client.close()
                    finally:
                        proc.kill()
                        proc.wait(10)
    finally:
        emu.close()
    default, short = summary(lat["default"]), summary(lat["short"])
    return {"baseline_default_5ms": default, "short_0_5ms": short,
            "p99_ratio": short["p99_ms"] / default["p99_ms"], "rounds": rounds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh interpreters per import variant")
    ap.add_argument("--calls", type=int, default=3000, help="validate calls per switch-interval variant and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the switch-interval variants")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    result = {
        "uvicorn_command_line": import_cost("uvicorn", args.runs),
        "httpx_command_line": import_cost("httpx", args.runs),
        "switch_interval": switch_interval(args.calls, args.rounds),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name in ("uvicorn_command_line", "httpx_command_line"):
        r = result[name]
        off, on = r["baseline_without"], r["with_tweak"]
        print(f"{name}: without {off['rss_mib']:.1f} MiB / {off['import_ms']:.0f} ms,"
              f" with the tweak {on['rss_mib']:.1f} MiB / {on['import_ms']:.0f} ms: "
              f"saves {r['saved_rss_mib']:.1f} MiB and {r['saved_ms']:.0f} ms (median of {r['runs']})")
    s = result["switch_interval"]
    d, q = s["baseline_default_5ms"], s["short_0_5ms"]
    print(f"validate next to a busy thread: switch interval 5 ms p50 {d['p50_ms']:.2f} ms p99 {d['p99_ms']:.2f} ms; "
          f"0.5 ms p50 {q['p50_ms']:.2f} ms p99 {q['p99_ms']:.2f} ms ({s['rounds']} rounds x {d['n'] // s['rounds']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
