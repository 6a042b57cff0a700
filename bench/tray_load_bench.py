"""Validate throughput under load with the tray's icon and menu live, against `serve`, in the same run.

Run under the test desktop:
    scripts/with-desktop.sh .venv/bin/python bench/tray_load_bench.py [--hosts xembed sni] [--clients 16]
        [--requests 1000] [--rounds 5] [--json]
Target (issue 13): the tray's validate throughput within 10 % of `serve`'s (ratio >= 0.90).

Every validate publishes a `VerdictGiven` event on the core's bus; a tray whose presenter rebuilt its menu,
tooltip and icon on the core loop for every event answered hooks at half the rate `serve` does.

Processes, as users run them: the LM Studio emulator (`lmstudio-tray emulator`, one for the whole run), the
server under test, and this load generator (bench/load_test.py's clients: one thread and one keep-alive
connection each). Servers under test, one at a time, in rounds; each round runs every target once, in an
order that rotates from round to round, so that other work on the machine hits all of them alike. The
ratio is the median over the rounds of (tray req/s / serve req/s in the same round); the table shows
each target's median round. Targets:
- `serve_baseline`: `lmstudio-tray serve --no-notify` (endpoint, analytics, the core; no tray);
- `tray_xembed`: `lmstudio-tray run` with pystray's GTK backend, its icon docked in the desktop's trayer;
- `tray_sni`: `lmstudio-tray run` with its StatusNotifierItem view (no GTK), drawn by a real watcher and
  host (status-notifier-watcher + gtk-sni-tray-standalone, started here as bench/tray_start.py does).
A tray is measured only once its menu has been drawn (the presenter writes it to $LMSTUDIO_TRAY_MENU_DUMP)
and its endpoint answers, so the presenter is attached and subscribed while the clients run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load_test import MODEL, Connection, hammer, wait_file

TARGET_RATIO = 0.90
HOSTS = ("xembed", "sni")
FIGURES = ("throughput_per_s", "p50_ms", "p90_ms", "p99_ms", "mean_ms")


def isolated_env(work: Path) -> dict[str, str]:
    """A process of its own: config, state (lock, endpoint file, logs) and data (analytics) in `work`."""
    return {**os.environ, "HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
            "XDG_STATE_HOME": str(work / "state"), "XDG_DATA_HOME": str(work / "data"),
            "XDG_CACHE_HOME": str(work / "cache"), "LMSTUDIO_TRAY_ENDPOINT_FILE": str(work / "endpoint.json"),
            "LMSTUDIO_TRAY_MENU_DUMP": str(work / "menu.json"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def server_command(target: str, config: Path) -> tuple[list[str], dict[str, str]]:
    base = [sys.executable, "-m", "lmstudio_tray", "--config", str(config)]
    if target == "serve_baseline":
        return [*base, "serve", "--no-notify"], {}
    if target == "tray_xembed":
        return [*base, "run"], {"PYSTRAY_BACKEND": "gtk"}  # even while the SNI watcher runs
    return [*base, "run"], {}  # the watcher answers: the tray picks its StatusNotifierItem view


@contextlib.contextmanager
def started(target: str, api_url: str) -> Iterator[dict[str, Any]]:
    """The server under test, up with its endpoint (and, for a tray, its menu drawn); stopped after."""
    with tempfile.TemporaryDirectory(prefix=f"lmstudio-tray-{target}-") as tmp:
        work = Path(tmp)
        config = work / "config.toml"
        config.write_text(f'[[instances]]\nname = "local"\nurl = "{api_url}"\n\n[endpoint]\nport = 0\n')
        cmd, extra = server_command(target, config)
        env = {**isolated_env(work), **extra}
        if target != "tray_xembed":
            env.pop("PYSTRAY_BACKEND", None)
        log = work / "server.log"
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        try:
            info = wait_file(work / "endpoint.json", proc, log, target)
            if target != "serve_baseline":
                wait_file(work / "menu.json", proc, log, f"{target}'s menu")
            info["pid"] = proc.pid
            yield info
            info["alive_after"] = proc.poll() is None
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def measure(target: str, api_url: str, clients: int, requests: int) -> dict[str, Any]:
    body = json.dumps({"model": MODEL, "base_url": api_url + "/v1", "provider_id": "lmstudio",
                       "agent": "build", "session_id": "tray-load"}).encode()

    def validate(conn: Connection) -> str | None:
        status, data = conn.call("POST", "/v1/validate", body)
        if status != 200:
            return f"HTTP {status}: {data[:120]!r}"
        return None if b'"category"' in data else f"no verdict: {data[:120]!r}"

    with started(target, api_url) as info:
        auth = {"Authorization": f"Bearer {info['token']}"}
        warm = Connection(info["url"], auth)  # the first polls and connection setup are not measured
        for _ in range(100):
            warm.call("POST", "/v1/validate", body)
        warm.close()
        result = hammer(clients, requests, lambda: Connection(info["url"], auth), validate)
    result["alive_after"] = info.get("alive_after", False)
    return result


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput (all its figures from that one round), plus every round's rate."""
    ordered = sorted(rounds, key=lambda r: r["throughput_per_s"])
    pick = dict(ordered[(len(ordered) - 1) // 2])
    pick = {k: v for k, v in pick.items() if k in FIGURES or k in ("n", "errors", "seconds")}
    pick["rounds_throughput_per_s"] = [round(r["throughput_per_s"], 1) for r in rounds]
    pick["errors"] = sum(r["errors"] for r in rounds)
    pick["alive_after"] = all(r["alive_after"] for r in rounds)
    return pick


def run(hosts: list[str], clients: int, requests: int, rounds: int) -> dict[str, Any]:
    targets = ["serve_baseline", *(f"tray_{h}" for h in hosts)]
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="lmstudio-tray-emu-") as tmp:
        work = Path(tmp)
        emu_log = work / "emulator.log"
        emu = subprocess.Popen(
            [sys.executable, "-m", "lmstudio_tray", "emulator", "--load", MODEL, "--ready-file",
             str(work / "emulator.json")], env=isolated_env(work), stdout=emu_log.open("wb"),
            stderr=subprocess.STDOUT)
        try:
            api_url = wait_file(work / "emulator.json", emu, emu_log, "the emulator")["api_url"].rstrip("/")
            with sni_host() if "sni" in hosts else contextlib.nullcontext():
                for n in range(rounds):
                    for target in targets[n % len(targets):] + targets[:n % len(targets)]:
                        print(f"round {n + 1}/{rounds}: {target}", file=sys.stderr, flush=True)
                        results[target].append(measure(target, api_url, clients, requests))
        finally:
            emu.terminate()
            emu.wait(20)
    data: dict[str, Any] = {"target_ratio": TARGET_RATIO, "clients": clients, "requests_per_client": requests,
                            "rounds": rounds}
    for target in targets:
        data[target] = median_round(results[target])
    data["ratios"] = {}
    for t in targets[1:]:
        paired = [tray["throughput_per_s"] / serve["throughput_per_s"]
                  for tray, serve in zip(results[t], results["serve_baseline"], strict=True)]
        data["ratios"][f"{t}_throughput_vs_serve"] = statistics.median(paired)
        data[t]["rounds_ratio_vs_serve"] = [round(r, 3) for r in paired]
    return data


@contextlib.contextmanager
def sni_host() -> Iterator[None]:
    from tray_start import SniHost

    with SniHost():
        yield


def print_report(data: dict[str, Any]) -> None:
    targets = [k for k in data if k == "serve_baseline" or k.startswith("tray_")]
    print(f"{data['clients']} clients x {data['requests_per_client']} validates per round, "
          f"{data['rounds']} rounds (median round shown)")
    print(f"{'':18}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}   rounds (req/s)")
    for t in targets:
        s = data[t]
        print(f"{t:18}{s['throughput_per_s']:9.0f}{s['p50_ms']:9.2f}{s['p90_ms']:9.2f}{s['p99_ms']:9.2f}"
              f"{s['errors']:8d}   {s['rounds_throughput_per_s']}")
    for name, ratio in data["ratios"].items():
        verdict = "met" if ratio >= data["target_ratio"] else "MISS"
        rounds = data[name.removesuffix("_throughput_vs_serve")]["rounds_ratio_vs_serve"]
        print(f"{name}: {ratio:.2f}, median of rounds {rounds} (target >= {data['target_ratio']:.2f}) {verdict}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", nargs="+", choices=HOSTS, default=list(HOSTS),
                    help="tray hosts to measure: xembed (trayer, pystray's GTK backend), sni (D-Bus, no GTK)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=1000, help="validates per client per round (default 1000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of every target; the median is reported")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        print("needs a display: scripts/with-desktop.sh .venv/bin/python bench/tray_load_bench.py", file=sys.stderr)
        return 2
    data = run(args.hosts, args.clients, args.requests, max(1, args.rounds))
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print_report(data)
    clean = all(data[t]["errors"] == 0 and data[t]["alive_after"] for t in data if isinstance(data[t], dict)
                and "errors" in data[t])
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
