"""The dashboard: sign-in by single-use code + cookie, its data routes, and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.api.dashboard import COOKIE, DashboardGate
from lmstudio_tray.core import events as ev
from tests.analytics import streams as s
from tests.analytics.conftest import Stack
from tests.analytics.helpers import bench_run, ingest, store_bench

MODEL = "qwen/qwen3-4b-2507"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Set to a path (docs/dashboard.png) to keep the screenshot the browser test takes.
SCREENSHOT_ENV = "LMSTUDIO_TRAY_DASHBOARD_PNG"


def gate_of(stack: Stack) -> DashboardGate:
    gate = stack.server.app
    assert isinstance(gate, DashboardGate)
    return gate


@contextlib.contextmanager
def sign_in(stack: Stack) -> Iterator[httpx.Client]:
    """A browser-like client (no bearer token) holding the dashboard cookie."""
    with stack.client() as c:
        url = c.post("/v1/dashboard/code").json()["url"]
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        r = browser.get(url)
        assert r.status_code == 200 and r.url.path == "/dashboard"
        yield browser


def test_without_the_cookie_everything_is_401(stack: Stack) -> None:
    with stack.client(token=False) as anon, stack.client() as with_token:
        for client in (anon, with_token):  # the endpoint token is not a dashboard session either
            page = client.get("/dashboard")
            assert page.status_code == 401 and "lmstudio-tray dashboard" in page.text
            api = client.get("/dashboard/api/live")
            assert api.status_code == 401 and api.json()["error"]["kind"] == "unauthorized"
            assert client.get("/dashboard/api/history").status_code == 401
        assert anon.post("/v1/dashboard/code").status_code == 401  # codes need the token


def test_a_code_signs_in_once_with_a_strict_httponly_cookie(stack: Stack) -> None:
    with stack.client() as c:
        issued = c.post("/v1/dashboard/code").json()
    assert stack.server.token not in issued["url"] and issued["expires_in"] == 60
    assert issued["url"] == f"{stack.server.url}/dashboard?code={issued['code']}"
    with httpx.Client(base_url=stack.server.url, timeout=30) as browser:
        r = browser.get("/dashboard", params={"code": issued["code"]})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=/dashboard" in cookie and stack.server.token not in cookie
        page = browser.get("/dashboard")
        assert page.status_code == 200 and "<title>lmstudio-tray dashboard</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        live = browser.get("/dashboard/api/live").json()
        assert [i["name"] for i in live["status"]["instances"]] == ["local"]
        assert live["analytics"]["recording"] is True
        assert browser.get("/dashboard/app.js").headers["content-type"].startswith("text/javascript")
        # the cookie opens the dashboard only, not the endpoint's API
        assert browser.get("/v1/status").status_code == 401
    with httpx.Client(base_url=stack.server.url, timeout=30) as other:
        again = other.get("/dashboard", params={"code": issued["code"]})
        assert again.status_code == 401 and "expired" in again.text
        assert COOKIE not in again.headers.get("set-cookie", "")


def test_codes_expire(stack: Stack) -> None:
    gate_of(stack).auth.code_ttl = 0.3
    with stack.client() as c:
        code = c.post("/v1/dashboard/code").json()["code"]
    time.sleep(1.0)
    with stack.client(token=False) as browser:
        assert browser.get("/dashboard", params={"code": code}).status_code == 401
        assert browser.get("/dashboard", params={"code": "made-up"}).status_code == 401


def test_other_sites_hosts_and_methods_are_refused(stack: Stack) -> None:
    base = stack.server.url
    with sign_in(stack) as browser:
        assert browser.get(base + "/dashboard/api/live", headers={"origin": "http://evil.example"}).status_code == 403
        assert browser.get(base + "/dashboard/api/live", headers={"origin": base}).status_code == 200
        assert browser.get(base + "/dashboard/api/live", headers={"host": "evil.example"}).status_code == 421
        assert browser.post(base + "/dashboard/api/live").status_code == 405
        assert browser.get(base + "/dashboard/api/history", params={"since": "later"}).status_code == 422


def test_history_reports_what_the_store_holds(stack: Stack) -> None:
    base = stack.emu.api_url + "/v1"
    with stack.client() as c:
        c.post("/v1/events", json={"events": s.opencode_run(base, MODEL, time.time() - 30)})
        c.post("/v1/validate", json={"model": MODEL, "base_url": base})
    stack.flushed()
    with sign_in(stack) as browser:
        data = browser.get(stack.server.url + "/dashboard/api/history", params={"since": "24h"}).json()
    assert data["empty"] is False
    assert data["report"]["totals"]["turns"] == 2 and data["report"]["totals"]["verdicts"] == 1
    assert sum(b["turns"] for b in data["series"]["buckets"]) == 2


def test_history_carries_bench_runs_and_session_durations(stack_factory: Callable[..., Stack],
                                                            tmp_path: Path) -> None:
    db, now = tmp_path / "analytics.sqlite3", time.time()  # the store the stack opens
    store_bench(db, [(now - 7200, bench_run(MODEL, 50.0)), (now - 3600, bench_run(MODEL, 55.0)),
                     (now - 40 * 86400, bench_run(MODEL, 10.0))])  # the last one is outside the window
    ingest(db, s.turns("http://127.0.0.1:1234/v1", MODEL, now - 600, 3, session="s1", seconds=2.0, output=50))
    stack = stack_factory()
    with sign_in(stack) as browser:
        data = browser.get(stack.server.url + "/dashboard/api/history", params={"since": "7d"}).json()
    assert [(b["model"], b["gen_tps"], b["gen_tps_low"], b["gen_tps_high"], b["suite"], b["lmstudio_version"])
            for b in data["bench"]] == [(MODEL, 50.0, 45.0, 55.00000000000001, "quick", "0.4.12"),
                                        (MODEL, 55.0, 49.5, 60.50000000000001, "quick", "0.4.12")]
    [model] = data["report"]["models"]
    assert model["session_median_s"] == 6.0 and model["session_total_s"] == 6.0  # first turn's end to the last's


# ---- the page in a real browser -------------------------------------------------------------------


def seed_week(db: Path, base: str) -> None:
    """A plausible week of use for the page to draw (deterministic)."""
    rng = random.Random(7)
    now = time.time()
    events: list[dict[str, Any]] = []
    bus: list[tuple[float, ev.Event]] = [(now - 7 * 86400, ev.StateChanged("local", old=None, new="ready"))]
    models = {MODEL: (2.0, 55.0), "google/gemma-3-12b": (5.0, 18.0), "openai/gpt-oss-20b": (3.5, 30.0)}
    for day in range(7):
        for hour in range(9, 19):
            t = now - (7 - day) * 86400 + hour * 3600
            for name, (secs, tps) in models.items():
                n = rng.randint(0, 4)
                seconds = secs * rng.uniform(0.7, 1.4)
                output = int(seconds * tps * rng.uniform(0.8, 1.2))
                events += s.turns(base, name, t, n, session=f"{name}{day}{hour}", seconds=seconds, output=output,
                                  input_tokens=rng.randint(2000, 7000))
                bus += [(t + i, ev.VerdictGiven("local", model=name, model_key=name, category="ready",
                                                latency_ms=rng.uniform(0.2, 0.6))) for i in range(n)]
            if hour == 9:
                bus.append((t, ev.LoadFinished("local", model=MODEL, instance_id=MODEL, seconds=rng.uniform(3, 6),
                                               size_bytes=2_500_000_000)))
    for i in range(3):
        bus.append((now - 3600 + i, ev.VerdictGiven("local", model="qwen3-4b", category="unknown_model", ok=False)))
    ingest(db, events, bus)
    store_bench(db, [(now - (7 - day) * 86400, bench_run(name, tps * (1 + day / 50)))
                     for day in range(0, 7, 2) for name, (_, tps) in models.items()])
    store_bench(db, [(now - 3600, bench_run(MODEL, 40.0, suite="coding"))])


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / ('profile' + str(time.monotonic_ns()))}", "--virtual-time-budget=10000",
           *args, url]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_the_page_in_headless_chromium(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    if CHROMIUM is None:  # the test command installs it; only a hand-run without it may skip
        message = "needs Chromium (Debian: apt install chromium; scripts/deps/desktop.sh installs it)"
        if os.environ.get("LMSTUDIO_TRAY_REQUIRE_DESKTOP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    db = tmp_path / "analytics.sqlite3"  # the store the stack opens
    seed_week(db, "http://127.0.0.1:1/v1")
    stack = stack_factory()
    stack.emu.load(MODEL, context_length=8192)
    with stack.client() as c:
        # the monitor sees the loaded model before the page is opened
        for _ in range(200):
            if c.post("/v1/validate", json={"model": MODEL, "base_url": stack.emu.api_url + "/v1"}).json()["ok"]:
                break
            time.sleep(0.05)
        url = c.post("/v1/dashboard/code").json()["url"]
        shot_url = c.post("/v1/dashboard/code").json()["url"]
    stack.flushed()

    dom = chromium(tmp_path, url, "--dump-dom").stdout
    assert 'data-loaded="1"' in dom, dom[:2000]
    assert 'data-instance="local"' in dom and '<span class="state ready">ready</span>' in dom
    assert f"<li>{MODEL} (ctx 8192)" in dom  # live: the loaded model and its context
    assert dom.count("<svg") >= 6 and dom.count("<rect") > 10 and "<polyline" in dom  # the charts drew data
    assert f"<td>{MODEL}</td>" in dom and "<td>google/gemma-3-12b</td>" in dom
    assert 'data-kind="fix_model_id"' in dom and "did you mean" in dom
    assert "recording (" in dom
    # a bench chart per model, each with its runs' spread, and the session durations in the models table
    for name in (MODEL, "google/gemma-3-12b", "openai/gpt-oss-20b"):
        assert f'data-bench-model="{name}"' in dom
    assert dom.count('class="spread"') >= 3 * 4 and "quick v1" in dom and "coding v1" in dom
    row = re.search(f"<tr><td>{re.escape(MODEL)}</td>(.*?)</tr>", dom)
    assert "<th>session median</th>" in dom and row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert len(cells) == 12 and all(re.fullmatch(r"\d+(\.\d)? (s|min|h)", c) for c in cells[-2:]), cells

    replay = chromium(tmp_path, url, "--dump-dom").stdout  # the same link in another browser profile
    assert "This dashboard link has expired" in replay and 'data-instance="local"' not in replay

    png = tmp_path / "dashboard.png"
    chromium(tmp_path, shot_url, f"--screenshot={png}", "--window-size=1400,1500")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000  # a rendered page, not a blank one
    keep = os.environ.get(SCREENSHOT_ENV)
    if keep:
        shutil.copyfile(png, keep)


def test_the_dashboard_command_prints_a_working_single_use_link(stack: Stack,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from lmstudio_tray.cli import main

    assert main(["dashboard", "--no-open"]) == 0
    out = capsys.readouterr().out
    url = out.strip().rsplit(" ", 1)[-1]
    assert url.startswith(stack.server.url + "/dashboard?code=") and stack.server.token not in out
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        assert browser.get(url).status_code == 200
        assert browser.get(stack.server.url + "/dashboard/api/live").status_code == 200


def test_the_dashboard_command_asks_the_endpoint_directly_whatever_the_proxy(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmstudio_tray.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # a proxy that is down: the token must not go there, nor the request fail
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{dead}")
    assert main(["dashboard", "--no-open"]) == 0
    assert "/dashboard?code=" in capsys.readouterr().out


def test_the_dashboard_command_without_a_running_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    from lmstudio_tray.cli import main

    assert main(["dashboard", "--no-open"]) == 1
    assert "no running endpoint found; start the tray or `lmstudio-tray serve`" in capsys.readouterr().err
