"""OpenCode (the real binary) pointed at a router pool: the plugin sends the endpoint token, the secret
never lands in opencode.json, and a restarted tray with a new token just keeps working."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.emulator import Emulator
from tests.opencode.conftest import OPENCODE_VERSION, PLUGIN_FILE, deps_dir, find_opencode, require_or_skip
from tests.opencode.test_e2e import _seed_plugin_package
from tests.routing.conftest import QWEN

pytestmark = pytest.mark.opencode


@pytest.fixture
def opencode_bin() -> Path:
    found = find_opencode()
    if found is None:
        require_or_skip(f"opencode-ai@{OPENCODE_VERSION} is not installed under {deps_dir()}")
    assert found is not None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tray:
    def __init__(self, env: dict[str, str], endpoint: Path) -> None:
        self.env, self.endpoint = env, endpoint
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> dict[str, Any]:
        self.proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "serve", "--no-notify"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not self.endpoint.exists() and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        assert self.endpoint.exists(), self.proc.communicate()[1] if self.proc.poll() is not None else "no start"
        info: dict[str, Any] = json.loads(self.endpoint.read_text())
        return info

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def test_opencode_through_the_router_with_token_rotation(
    opencode_bin: Path, tmp_path: Path, emulator_factory: Any
) -> None:
    emus: list[Emulator] = [emulator_factory(jit=False), emulator_factory(jit=False)]
    for emu in emus:
        emu.load(QWEN, context_length=8192)
    port = _free_port()
    home = tmp_path / "home"
    xdg = {k: str(home / sub) for k, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                                              ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state"))}
    for p in xdg.values():
        Path(p).mkdir(parents=True, exist_ok=True)
    cfg = home / ".config" / "lmstudio-tray" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "".join(f'[[instances]]\nname = "box{i}"\nurl = "{e.api_url}"\n\n' for i, e in enumerate(emus))
        + '[[pools]]\nname = "team"\ninstances = ["box0", "box1"]\n\n'
        + f"[endpoint]\nport = {port}\n"
    )
    project = tmp_path / "project"
    (project / ".opencode" / "plugins").mkdir(parents=True)
    shutil.copy(PLUGIN_FILE, project / ".opencode" / "plugins" / "lmstudio-tray.ts")
    opencode_json = json.dumps({
        "$schema": "https://opencode.ai/config.json",
        "model": f"lmstudio-pool/{QWEN}", "small_model": f"lmstudio-pool/{QWEN}", "autoupdate": False,
        "share": "disabled",
        "provider": {"lmstudio-pool": {
            "npm": "@ai-sdk/openai-compatible", "name": "LM Studio pool (router)",
            "options": {"baseURL": f"http://127.0.0.1:{port}/v1/route/team/v1"},
            "models": {QWEN: {"name": "Qwen", "limit": {"context": 8192, "output": 1024}}},
        }},
    })
    (project / "opencode.json").write_text(opencode_json)
    (home / ".config" / "opencode").mkdir(parents=True, exist_ok=True)
    for d in (project / ".opencode", home / ".config" / "opencode"):
        _seed_plugin_package(d)
    env = {**os.environ, "HOME": str(home), "USERPROFILE": str(home), **xdg, "PWD": str(project),
           "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
           "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "npm_config_registry": "http://127.0.0.1:9/"}
    tray = Tray(env, Path(xdg["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(opencode_bin), "run", "-m", f"lmstudio-pool/{QWEN}", "say hi"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=90)

    def chats() -> int:
        return sum(1 for e in emus for r in e.requests if r.path == "/v1/chat/completions")

    tokens = []
    try:
        for _ in range(2):  # the second round runs against a restarted tray with a new token
            info = tray.start()
            tokens.append(info["token"])
            before = chats()
            proc = run()
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "Hello from the LM Studio emulator" in proc.stdout
            assert chats() > before
            tray.stop()
    finally:
        tray.stop()
    assert tokens[0] != tokens[1]
    assert (project / "opencode.json").read_text() == opencode_json  # no secret written anywhere
    sent = json.dumps([r.to_json() for e in emus for r in e.requests])
    assert tokens[0] not in sent and tokens[1] not in sent  # the endpoint token never reaches LM Studio
