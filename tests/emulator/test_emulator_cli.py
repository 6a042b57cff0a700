from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import ModelSpec
from lmstudio_tray.emulator.cli import main
from tests.emulator.helpers import http

TOKEN = "sk-lm-Abcd1234:ABCDEFGHIJabcdefghij"


def wait_for(path: Path, proc: subprocess.Popen[Any]) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_subprocess_ready_file_and_sigterm(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    spec = ModelSpec(key="acme/tiny", display_name="Tiny", publisher="acme")
    catalog.write_text(json.dumps([spec.to_json()]))
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "lmstudio_tray.emulator.cli", "--ready-file", str(ready), "--token", TOKEN,
            "--version", "0.4.8", "--no-jit", "--catalog", str(catalog), "--home", str(tmp_path / "lmhome"),
            "--load", "acme/tiny",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        info = wait_for(ready, proc)
        assert info["pid"] == proc.pid
        api = str(info["api_url"])
        assert http.get(f"{api}/v1/models").status_code == 401
        models = http.get(f"{api}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert [m["id"] for m in models["data"]] == ["acme/tiny"]
        state = http.get(f"{info['control_url']}/_emulator/state").json()
        assert state["settings"]["jit"] is False
        assert (tmp_path / "lmhome" / "bin" / "lms").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert api in out


def test_kill_through_control_port_ends_the_process(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_tray.emulator.cli", "--ready-file", str(ready), "--stopped"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        info = wait_for(ready, proc)
        with pytest.raises(httpx.ConnectError):
            http.get(f"{info['api_url']}/lmstudio-greeting")
        http.post(f"{info['control_url']}/_emulator/kill")
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_arguments() -> None:
    assert main(["--version", "banana"]) == 2
