"""Validate round trip through the real endpoint vs. asking LM Studio directly, and LM Studio calls per hook.

    .venv/bin/python bench/validate_bench.py [--calls 2000] [--hooks 1000] [--json]

Setup, all on 127.0.0.1: the LM Studio emulator (in this process), `lmstudio-tray serve` (a child process:
uvicorn + the core, as users run it), and one keep-alive HTTP/1.1 connection per target from this process
(stdlib `http.client`, TCP_NODELAY), the way the plugin's fetch keeps one connection to the tray.

Measured in the same run:
  1. `POST /v1/validate` round trip (the body the plugin sends from chat.params) - p50/p99/mean;
  2. the baseline: `GET /api/v1/models` on the emulator, the query an uncached plugin would make per hook;
     and, for scale, the transport floor: a do-nothing ASGI app on the same uvicorn/httptools stack;
  3. LM Studio requests while --hooks validate calls run, minus those in an idle window of the same length
     right after (the monitor's background polling, which runs whether or not hooks are called); counting
     starts once the monitor polls at its normal pace. An uncached plugin makes at least one LM Studio
     request per hook call.
Targets: p50 <= 1 ms, p99 <= 5 ms, >= 10x faster than the direct query, <= 1 % of the uncached calls.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.config.schema import MonitorConfig
from lmstudio_tray.emulator import Emulator, EmulatorSettings

MODEL = "qwen/qwen3-4b-2507"
FAST_WINDOW = MonitorConfig().fast_window
TARGETS = {"p50_ms": 1.0, "p99_ms": 5.0, "speedup": 10.0, "lmstudio_call_ratio": 0.01}


class KeepAlive:
    """One persistent HTTP/1.1 connection with Nagle off: what a well-behaved client does."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        host, port = url.split("//", 1)[1].rstrip("/").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = headers or {}

    def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path} -> {resp.status}: {data[:200]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(data: list[float], q: float) -> float:
    s = sorted(data)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(data: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(data, 0.5), "p99_ms": pct(data, 0.99), "mean_ms": statistics.fmean(data),
            "max_ms": max(data), "n": len(data)}


def start_serve(emu: Emulator, workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    cfg = workdir / "config.toml"
    cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n\n[endpoint]\nport = 0\n')
    endpoint_file = workdir / "endpoint.json"
    env = {**os.environ, "HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir / "config"),
           "XDG_STATE_HOME": str(workdir / "state"), "XDG_DATA_HOME": str(workdir / "data"),
           "XDG_CACHE_HOME": str(workdir / "cache"), "LMSTUDIO_TRAY_ENDPOINT_FILE": str(endpoint_file),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    # serve logs every event (one line per validate) to stderr: a file, as a pipe nobody reads would fill up
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), "serve", "--no-notify"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while not endpoint_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"serve did not start: {(workdir / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, json.loads(endpoint_file.read_text())


FLOOR_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", log_level="warning",
            lifespan="off", access_log=False)
"""


def start_floor() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("the floor server did not start") from None
            time.sleep(0.05)


def count_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def run(calls: int, hooks: int, hook_interval: float = 0.0) -> dict[str, Any]:
    emu = Emulator(EmulatorSettings(load_seconds=0.0)).start()
    emu.load(MODEL, context_length=8192)
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        proc, ep = start_serve(emu, Path(tmp))
        started = time.monotonic()
        floor_proc, floor_url = start_floor()
        try:
            tray = KeepAlive(ep["url"], {"Authorization": f"Bearer {ep['token']}"})
            direct = KeepAlive(emu.api_url)
            floor = KeepAlive(floor_url)
            body = json.dumps({"model": MODEL, "base_url": emu.api_url + "/v1", "context_limit": 8192,
                               "session_id": "ses_bench"}).encode()
            first = json.loads(tray.call("POST", "/v1/validate", body))
            assert first["category"] == "ready", first

            def validate() -> None:
                tray.call("POST", "/v1/validate", body)

            def models() -> None:
                direct.call("GET", "/api/v1/models")

            def nothing() -> None:
                floor.call("POST", "/v1/validate", body)

            timed(validate, 300)  # warm up every path
            timed(models, 100)
            timed(nothing, 100)
            # interleave in rounds so drift in machine load hits both sides alike
            v_lat: list[float] = []
            d_lat: list[float] = []
            f_lat: list[float] = []
            rounds = 10
            for _ in range(rounds):
                v_lat += timed(validate, calls // rounds)
                d_lat += timed(models, calls // rounds)
                f_lat += timed(nothing, calls // rounds)

            def paced_validate() -> None:
                validate()
                if hook_interval:
                    time.sleep(hook_interval)

            # The monitor polls fast for FAST_WINDOW s after a change (here: its first poll). Counting starts once
            # it polls at its normal pace, so the hook and idle windows compare like with like.
            time.sleep(max(0.0, started + FAST_WINDOW + 1 - time.monotonic()))
            before = emu.request_counts()
            t0 = time.perf_counter()
            timed(paced_validate, hooks)
            window = time.perf_counter() - t0
            during_paths = count_diff(before, emu.request_counts())
            before = emu.request_counts()
            time.sleep(window)
            idle_paths = count_diff(before, emu.request_counts())
            during, idle = sum(during_paths.values()), sum(idle_paths.values())
            metrics = json.loads(tray.call("GET", "/v1/metrics"))
            tray.close()
            direct.close()
            floor.close()
        finally:
            floor_proc.terminate()
            floor_proc.wait(10)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            emu.close()
    v, d, f = summary(v_lat), summary(d_lat), summary(f_lat)
    caused = max(0, during - idle)
    return {
        "validate": v,
        "direct_models_query": d,
        "transport_floor": f,
        "speedup_p50": d["p50_ms"] / v["p50_ms"],
        "speedup_p99": d["p99_ms"] / v["p99_ms"],
        "hooks": {
            "calls": hooks,
            "interval_ms": hook_interval * 1000,
            "window_s": window,
            "lmstudio_requests_during": during,
            "lmstudio_requests_idle_same_window": idle,
            "requests_during_by_route": during_paths,
            "requests_idle_by_route": idle_paths,
            "lmstudio_requests_caused": caused,
            "uncached_plugin_requests": hooks,
            "ratio_caused": caused / hooks,
            "ratio_including_background_polling": during / hooks,
        },
        "endpoint_metrics": {"server_side_p50_ms": metrics["validate"]["p50_ms"],
                             "server_side_p99_ms": metrics["validate"]["p99_ms"],
                             "cache": metrics["cache"]},
        "targets": TARGETS,
    }


def verdicts(r: dict[str, Any]) -> dict[str, bool]:
    return {
        "p50": r["validate"]["p50_ms"] <= TARGETS["p50_ms"],
        "p99": r["validate"]["p99_ms"] <= TARGETS["p99_ms"],
        "speedup": r["speedup_p50"] >= TARGETS["speedup"],
        "lmstudio_calls": r["hooks"]["ratio_caused"] <= TARGETS["lmstudio_call_ratio"],
    }


def print_table(r: dict[str, Any]) -> None:
    v, d, h = r["validate"], r["direct_models_query"], r["hooks"]
    ok = verdicts(r)
    mark = {True: "ok", False: "MISS"}
    print(f"{'':34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}{'n':>7}")
    for label, s in (("validate via endpoint", v), ("direct GET /api/v1/models", d),
                     ("floor: do-nothing app, same stack", r["transport_floor"])):
        print(f"{label:34}{s['p50_ms']:9.3f}{s['p99_ms']:9.3f}{s['mean_ms']:9.3f}{s['max_ms']:9.2f}{s['n']:7d}")
    em = r["endpoint_metrics"]
    print(f"{'  (server side, from /v1/metrics)':34}{em['server_side_p50_ms']:9.3f}{em['server_side_p99_ms']:9.3f}")
    print()
    print(f"validate p50 {v['p50_ms']:.3f} ms (target <= {TARGETS['p50_ms']} ms) {mark[ok['p50']]}; "
          f"p99 {v['p99_ms']:.3f} ms (target <= {TARGETS['p99_ms']} ms) {mark[ok['p99']]}")
    print(f"speedup vs direct: {r['speedup_p50']:.1f}x at p50, {r['speedup_p99']:.1f}x at p99 "
          f"(target >= {TARGETS['speedup']:.0f}x) {mark[ok['speedup']]}")
    print(f"{h['calls']} hook calls in {h['window_s']:.2f} s: {h['lmstudio_requests_during']} LM Studio requests, "
          f"{h['lmstudio_requests_idle_same_window']} in an idle window of the same length (background polling) -> "
          f"{h['lmstudio_requests_caused']} caused by hooks vs {h['uncached_plugin_requests']} for an uncached "
          f"plugin = {100 * h['ratio_caused']:.2f} % (target <= 1 %) {mark[ok['lmstudio_calls']]}; "
          f"{100 * h['ratio_including_background_polling']:.2f} % counting the background polls too")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="timed calls per side (default 2000)")
    ap.add_argument("--hooks", type=int, default=1000, help="hook calls for the LM Studio call count")
    ap.add_argument("--hook-interval-ms", type=float, default=0.0,
                    help="pause between the counted hook calls, to spread them over the monitor's poll cycles")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    result = run(args.calls, args.hooks, args.hook_interval_ms / 1000)
    result["verdicts"] = verdicts(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
