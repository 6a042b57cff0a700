"""Process-level faults with real `serve` and tray processes: taken ports, double starts, kill -9.

What the user sees: a clear one-line error (never a traceback), exactly one running instance, and a
restart after a crash that works without cleaning anything up by hand.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.hardening.helpers import (
    ServeProcess,
    child_env,
    start_serve,
    state_dir_of,
    wait_for,
    write_config,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(info: dict[str, Any]) -> bool:
    r = httpx.get(info["url"] + "/v1/status", headers={"authorization": f"Bearer {info['token']}"}, timeout=10)
    return r.status_code == 200


def test_port_taken_by_another_program(tmp_path: Path, emulator: Emulator) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        config = write_config(tmp_path / "config.toml", emulator.api_url, port=port)
        serve = start_serve(tmp_path, child_env(), config)
        try:
            info = serve.wait_ready()
            # it serves on another port and says so; the plugin finds it through endpoint.json
            assert not info["url"].endswith(f":{port}")
            assert healthy(info)
            assert f"port {port} is taken" in serve.stderr
            assert "Traceback" not in serve.stderr
        finally:
            assert serve.stop() == 0


def test_second_serve_refuses_while_the_first_runs(tmp_path: Path, emulator: Emulator) -> None:
    env = child_env()
    config = write_config(tmp_path / "config.toml", emulator.api_url, port=free_port())
    first = start_serve(tmp_path, env, config, name="first")
    try:
        info = first.wait_ready()
        second = start_serve(tmp_path, env, config, name="second")
        assert second.proc.wait(60) == 1
        assert f"another lmstudio-tray (pid {first.proc.pid}) already serves the endpoint" in second.stderr
        assert "Traceback" not in second.stderr
        # the first one and its discovery file are untouched
        assert json.loads(first.endpoint_file.read_text())["token"] == info["token"]
        assert healthy(info)
    finally:
        assert first.stop() == 0


def test_two_serves_started_at_once_leave_exactly_one(tmp_path: Path, emulator: Emulator) -> None:
    env = child_env()
    config = write_config(tmp_path / "config.toml", emulator.api_url, port=free_port())
    procs = [start_serve(tmp_path, env, config, name=f"racer{i}") for i in range(2)]
    try:
        def settled() -> bool:
            return any(p.proc.poll() is not None for p in procs) or all(
                "lmstudio-tray endpoint:" in p.stdout for p in procs)

        wait_for(settled, 60)
        time.sleep(1.0)
        running = [p for p in procs if p.proc.poll() is None]
        assert len(running) == 1, [(p.proc.returncode, p.stdout, p.stderr) for p in procs]
        loser = next(p for p in procs if p is not running[0])
        assert loser.proc.returncode == 1 and "Traceback" not in loser.stderr, loser.stderr
        info = json.loads(running[0].endpoint_file.read_text())
        assert info["pid"] == running[0].proc.pid and healthy(info)
    finally:
        for p in procs:
            p.stop()


def test_serve_killed_with_sigkill_restarts_cleanly(tmp_path: Path, emulator: Emulator) -> None:
    env = child_env()
    port = free_port()
    config = write_config(tmp_path / "config.toml", emulator.api_url, port=port)
    first = start_serve(tmp_path, env, config, name="first")
    info = first.wait_ready()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(20)
    stale = json.loads(first.endpoint_file.read_text())
    assert stale["pid"] == first.proc.pid, "the crash leaves its discovery file behind"
    second = start_serve(tmp_path, env, config, name="second")
    try:
        new = second.wait_ready()
        assert new["pid"] == second.proc.pid and new["token"] != info["token"]
        assert new["url"].endswith(f":{port}"), "the crashed process's port is reused at once"
        assert healthy(new)
        old = httpx.get(new["url"] + "/v1/status", headers={"authorization": f"Bearer {info['token']}"}, timeout=10)
        assert old.status_code == 401, "the crashed process's token is worthless"
        assert "Traceback" not in second.stderr
    finally:
        assert second.stop() == 0


def _tray(tmp_path: Path, env: dict[str, str], config: Path, name: str) -> ServeProcess:
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(config), "run", "--headless"],
                                stdout=o, stderr=e, env=env, stdin=subprocess.DEVNULL)
    return ServeProcess(proc, out, err, env)


@pytest.mark.parametrize("kill_first", [False, True], ids=["both-at-once", "after-kill-9"])
def test_one_tray_per_user(tmp_path: Path, emulator: Emulator, kill_first: bool) -> None:
    env = child_env()
    env.pop("DISPLAY", None)
    env["LMSTUDIO_TRAY_NOTIFIER"] = "log"
    config = write_config(tmp_path / "config.toml", emulator.api_url, port=0)
    trays = [_tray(tmp_path, env, config, f"tray{i}") for i in range(2)]
    try:
        wait_for(lambda: any(t.proc.poll() is not None for t in trays), 60)
        time.sleep(1.0)
        running = [t for t in trays if t.proc.poll() is None]
        assert len(running) == 1, [(t.proc.returncode, t.stderr) for t in trays]
        loser = next(t for t in trays if t is not running[0])
        assert loser.proc.returncode == 0
        winner = running[0]
        assert f"lmstudio-tray is already running (pid {winner.proc.pid})" in loser.stderr
        assert "Traceback" not in loser.stderr
        holder = state_dir_of(env) / "tray.pid"  # never the lock file itself: Windows cannot read a locked file
        assert holder.read_text().strip() == str(winner.proc.pid)
        info = winner.wait_ready(marker=None)  # the tray serves the OpenCode endpoint too
        assert healthy(info)
        if kill_first:
            winner.proc.send_signal(signal.SIGKILL)
            winner.proc.wait(20)
            assert holder.read_text().strip() == str(winner.proc.pid), "the crash leaves a stale pid behind"
            again = _tray(tmp_path, env, config, "tray-again")
            trays.append(again)
            # the OS dropped the dead tray's lock: the new one starts and takes it over
            wait_for(lambda: holder.read_text().strip() == str(again.proc.pid), 60)
            new = again.wait_ready(marker=None)
            assert new["token"] != info["token"] and healthy(new)
            assert again.proc.poll() is None, again.stderr
            assert "already running" not in again.stderr
    finally:
        for t in trays:
            t.stop()



def test_tray_next_to_a_running_serve_keeps_running_without_the_endpoint(tmp_path: Path, emulator: Emulator) -> None:
    env = child_env()
    env["LMSTUDIO_TRAY_NOTIFIER"] = "log"
    config = write_config(tmp_path / "config.toml", emulator.api_url, port=free_port())
    serve = start_serve(tmp_path, env, config)
    tray: ServeProcess | None = None
    try:
        info = serve.wait_ready()
        tray = _tray(tmp_path, env, config, "tray")
        wait_for(lambda: "OpenCode endpoint is not running here" in tray.stderr, 60)
        assert f"(pid {serve.proc.pid}) already serves the endpoint" in tray.stderr
        assert tray.proc.poll() is None and "Traceback" not in tray.stderr
        assert json.loads(serve.endpoint_file.read_text())["token"] == info["token"] and healthy(info)
    finally:
        if tray is not None:
            tray.stop()
        serve.stop()
