"""Load test: 16 concurrent plugin clients x 10,000 validates against a real `lmstudio-tray serve`.

    .venv/bin/python bench/load_test.py [--clients 16] [--requests 10000] [--baseline-requests 500] [--json]

Three processes, as users run it: the LM Studio emulator (`lmstudio-tray emulator`), `lmstudio-tray serve`
(uvicorn + the core) and this load generator (one thread and one keep-alive connection per client, the way
each OpenCode process keeps one connection to the tray). Every answer must be HTTP 200 with a verdict
(`ok` and `category`); anything else, or a dropped connection, counts as an error. Target: zero errors.

Baseline, measured in the same run with the same clients: the query an uncached plugin would make per hook
(`GET /api/v1/models` on LM Studio directly), --baseline-requests per client.
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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL = "qwen/qwen3-4b-2507"


class Connection:
    """One persistent HTTP/1.1 connection with Nagle off; reconnects (and counts it) if the server drops it."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        host, port = url.split("//", 1)[1].rstrip("/").split(":")
        self.host, self.port, self.headers = host, int(port), headers
        self.reconnects = 0
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.reconnects += 1
            self.conn = self._connect()
            raise

    def close(self) -> None:
        self.conn.close()


def percentile(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    return {
        "n": len(latencies),
        "throughput_per_s": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
        "seconds": seconds,
    }


def hammer(clients: int, requests: int, make: Callable[[], Connection],
           one: Callable[[Connection], str | None]) -> dict[str, Any]:
    """`clients` threads, each with its own connection, `requests` calls each, started together."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    conns = [make() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        conn, mine = conns[i], latencies[i]
        barrier.wait()
        for _ in range(requests):
            started = time.perf_counter()
            try:
                problem = one(conn)
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            mine.append((time.perf_counter() - started) * 1000)
            if problem is not None:
                errors.append(problem)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for c in conns:
        c.close()
    result: dict[str, Any] = summary([x for lat in latencies for x in lat], seconds)
    result["errors"] = len(errors)
    result["error_samples"] = sorted(set(errors))[:5]
    result["reconnects"] = sum(c.reconnects for c in conns)
    return result


def wait_file(path: Path, proc: subprocess.Popen[bytes], log: Path, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (OSError, ValueError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{what} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def run(clients: int, requests: int, baseline_requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lmstudio-tray-load-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
               "XDG_STATE_HOME": str(work / "state"), "XDG_DATA_HOME": str(work / "data"),
               "XDG_CACHE_HOME": str(work / "cache"), "LMSTUDIO_TRAY_ENDPOINT_FILE": str(work / "endpoint.json"),
               "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
        emu_log, serve_log = work / "emulator.log", work / "serve.log"
        emu = subprocess.Popen(
            [sys.executable, "-m", "lmstudio_tray", "emulator", "--load", MODEL, "--ready-file",
             str(work / "emulator.json")], env=env, stdout=emu_log.open("wb"), stderr=subprocess.STDOUT)
        serve: subprocess.Popen[bytes] | None = None
        try:
            emu_info = wait_file(work / "emulator.json", emu, emu_log, "the emulator")
            api_url = emu_info["api_url"].rstrip("/")
            cfg = work / "config.toml"
            cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{api_url}"\n\n[endpoint]\nport = 0\n')
            # serve logs one line per event to stderr: a file, as a pipe nobody reads would fill up
            serve = subprocess.Popen(
                [sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), "serve", "--no-notify"],
                env=env, stdout=subprocess.DEVNULL, stderr=serve_log.open("wb"))
            info = wait_file(work / "endpoint.json", serve, serve_log, "serve")
            auth = {"Authorization": f"Bearer {info['token']}"}
            body = json.dumps({"model": MODEL, "base_url": api_url + "/v1", "session_id": "load-test"}).encode()

            def validate(conn: Connection) -> str | None:
                status, data = conn.call("POST", "/v1/validate", body)
                if status != 200:
                    return f"HTTP {status}: {data[:120]!r}"
                verdict = json.loads(data)
                if "ok" not in verdict or "category" not in verdict:
                    return f"no verdict: {data[:120]!r}"
                return None

            def direct(conn: Connection) -> str | None:
                status, data = conn.call("GET", "/api/v1/models")
                return None if status == 200 and b'"models"' in data else f"HTTP {status}"

            # warm-up: the first poll and the connection setup are not what is measured
            warm = Connection(info["url"], auth)
            for _ in range(50):
                warm.call("POST", "/v1/validate", body)
            first = json.loads(warm.call("POST", "/v1/validate", body)[1])
            warm.close()
            validates = hammer(clients, requests, lambda: Connection(info["url"], auth), validate)
            baseline = hammer(clients, baseline_requests, lambda: Connection(api_url, {}), direct)
            with_metrics = Connection(info["url"], auth)
            metrics = json.loads(with_metrics.call("GET", "/v1/metrics")[1])
            with_metrics.close()
            alive = serve.poll() is None
        finally:
            for proc in (serve, emu):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    return {
        "clients": clients,
        "requests_per_client": requests,
        "verdict_category": first.get("category"),
        "validate": validates,
        "baseline_direct_models_query": baseline,
        "ratio_p50": validates["p50_ms"] / baseline["p50_ms"],
        "ratio_p99": validates["p99_ms"] / baseline["p99_ms"],
        "ratio_throughput": validates["throughput_per_s"] / baseline["throughput_per_s"],
        # measured inside serve (no transport): not comparable with the round trips, so not named p50_ms
        "server_side": {"validate_p50_ms": metrics["validate"]["p50_ms"],
                        "validate_p99_ms": metrics["validate"]["p99_ms"],
                        "count": metrics["validate"]["count"], "lmstudio_calls": metrics["lmstudio_calls"]},
        "serve_alive_after": alive,
    }


def print_report(r: dict[str, Any]) -> None:
    v, b = r["validate"], r["baseline_direct_models_query"]
    total = r["clients"] * r["requests_per_client"]
    print(f"{r['clients']} clients x {r['requests_per_client']} validates = {total} requests "
          f"(verdict: {r['verdict_category']})")
    print(f"{'':30}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for label, s in (("validate via serve", v), ("baseline: direct LM Studio", b)):
        print(f"{label:30}{s['throughput_per_s']:9.0f}{s['p50_ms']:9.2f}{s['p90_ms']:9.2f}{s['p99_ms']:9.2f}"
              f"{s['max_ms']:9.1f}{s['errors']:8d}")
    ss = r["server_side"]
    print(f"server side (from /v1/metrics): p50 {ss['validate_p50_ms']} ms, p99 {ss['validate_p99_ms']} ms over "
          f"{ss['count']} "
          f"validates; LM Studio calls made by the tray: {ss['lmstudio_calls']}")
    print(f"ratio vs baseline: p50 {r['ratio_p50']:.2f}x, p99 {r['ratio_p99']:.2f}x, "
          f"throughput {r['ratio_throughput']:.2f}x")
    ok = v["errors"] == 0 and r["serve_alive_after"]
    print(f"errors: {v['errors']} (target 0) {'ok' if ok else 'MISS'}"
          + (f"; samples: {v['error_samples']}" if v["error_samples"] else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=10_000, help="validates per client (default 10000)")
    ap.add_argument("--baseline-requests", type=int, default=500, help="direct LM Studio queries per client")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    result = run(args.clients, args.requests, args.baseline_requests)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if result["validate"]["errors"] == 0 and result["serve_alive_after"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
