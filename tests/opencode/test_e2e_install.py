"""End to end: `lmstudio-tray opencode install --provider` sets OpenCode up, then the real opencode uses it.

The emulator plays LM Studio, `lmstudio-tray serve` runs the endpoint, and nothing is written by hand:
the plugin file and the provider come from the installer. Covers the answer path, the
`lmstudio_load_model` tool driven by a (scripted) model tool call, and compaction context with
`opencode serve`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.analytics.store import DB_NAME
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.opencode.jsonc import comments_of, parse_config_object
from tests.opencode.test_e2e import GEMMA, QWEN, Env, _chat_requests, _seed_plugin_package

pytestmark = pytest.mark.opencode


# a user's own opencode.jsonc: comments, trailing commas, a comment after a trailing comma
COMMENTED_CONFIG = """\
// my OpenCode settings (JSONC)
{
  "$schema": "https://opencode.ai/config.json", // keeps OpenCode from rewriting this file
  /* sharing off: "share": "auto", // was the default */
  "share": "disabled",
  "autoupdate": false,
  "instructions": [
    // none yet,
  ],
  "provider": {
    // LM Studio goes here
  },
}
"""


def _tray(env: dict[str, str], cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def installed(opencode_bin: Path, tmp_path: Path, emulator_factory: Any,
              request: pytest.FixtureRequest) -> Iterator[Env]:
    options: dict[str, Any] = getattr(request, "param", {})
    emu: Emulator = emulator_factory(jit=False)
    emu.load(QWEN, context_length=8192)
    home = tmp_path / "home"
    xdg = {k: str(home / sub) for k, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                                              ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state"))}
    for p in xdg.values():
        Path(p).mkdir(parents=True, exist_ok=True)
    project = tmp_path / "project"
    project.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n\n[endpoint]\nport = 0\n'
                   + options.get("config", ""))
    env = {**os.environ, "HOME": str(home), "USERPROFILE": str(home), **xdg, "PWD": str(project),
           "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
           "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "npm_config_registry": "http://127.0.0.1:9/",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    if options.get("endpoint_file"):
        env["LMSTUDIO_TRAY_ENDPOINT_FILE"] = str(tmp_path / "elsewhere" / "ep.json")

    config = project / "opencode.json"
    if options.get("commented"):
        config = project / "opencode.jsonc"
        config.write_text(COMMENTED_CONFIG)
    proc = _tray(env, cfg, "opencode", "install", "--project", str(project), "--provider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / ".opencode" / "plugins" / "lmstudio-tray.ts").is_file()
    text = config.read_text()
    assert parse_config_object(text)["provider"]["lmstudio"]["models"][QWEN]["limit"]["context"] == 8192
    if options.get("commented"):
        assert Counter(comments_of(text)) == Counter(comments_of(COMMENTED_CONFIG))

    (home / ".config" / "opencode").mkdir(parents=True, exist_ok=True)
    for d in (project / ".opencode", home / ".config" / "opencode"):
        _seed_plugin_package(d)
    serve = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), "serve", "--no-notify"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    endpoint = Path(env.get("LMSTUDIO_TRAY_ENDPOINT_FILE") or
                    Path(xdg["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json")
    deadline = time.monotonic() + 20
    while not endpoint.exists() and time.monotonic() < deadline and serve.poll() is None:
        time.sleep(0.05)
    assert endpoint.exists(), serve.communicate()[1] if serve.poll() is not None else "serve did not start"
    try:
        yield Env(tmp_path, project, env, emu, opencode_bin)
    finally:
        serve.terminate()
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()


def _endpoint_get(env: Env, path: str) -> Any:
    info = json.loads((Path(env.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json").read_text())
    r = httpx.get(info["url"] + path, headers={"Authorization": f"Bearer {info['token']}"}, timeout=5)
    r.raise_for_status()
    return r.json()


def test_installed_setup_answers_and_events_land_in_the_store(installed: Env) -> None:
    proc = installed.run("say hi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hello from the LM Studio emulator" in proc.stdout
    assert _chat_requests(installed.emu, QWEN) >= 1
    # the plugin asked the endpoint before the request and forwarded the session's events
    metrics = _endpoint_get(installed, "/v1/metrics")
    assert metrics["validate"]["categories"].get("ready", 0) >= 1
    assert metrics["events"] >= 1
    # ... and they landed in the analytics store: the verdicts and the finished turn with its tokens
    db = Path(installed.env["XDG_DATA_HOME"]) / "lmstudio-tray" / DB_NAME
    deadline = time.monotonic() + 20
    turns: list[tuple[Any, ...]] = []
    verdicts: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and not (turns and verdicts):
        time.sleep(0.25)
        if db.exists():
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                turns = conn.execute("SELECT model, output_tokens FROM turns WHERE model = ?", (QWEN,)).fetchall()
                verdicts = conn.execute("SELECT category FROM verdicts WHERE model = ?", (QWEN,)).fetchall()
    assert turns and all(t[1] and t[1] > 0 for t in turns), turns
    assert ("ready",) in verdicts


def test_load_model_tool_loads_a_model_in_lm_studio(installed: Env) -> None:
    assert all(m["modelKey"] != GEMMA for m in installed.emu.loaded())
    proc = installed.run(f'CALLTOOL:lmstudio_load_model {{"model": "{GEMMA}"}}', timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert any(m["modelKey"] == GEMMA for m in installed.emu.loaded()), installed.emu.loaded()
    # the tool's answer went back to the model as the tool result of the next request
    tool_msgs = [m for r in installed.emu.requests if r.path.endswith("/chat/completions") and isinstance(r.json, dict)
                 for m in r.json.get("messages", []) if m.get("role") == "tool"]
    assert any(GEMMA in json.dumps(m.get("content")) and "loaded" in json.dumps(m.get("content")) for m in tool_msgs)
    assert "tool result:" in proc.stdout


def _tool_results(env: Env) -> str:
    """Every tool result the model got back, as one text."""
    return json.dumps([m.get("content") for r in env.emu.requests if r.path.endswith("/chat/completions")
                       and isinstance(r.json, dict) for m in r.json.get("messages", []) if m.get("role") == "tool"])


@pytest.mark.parametrize("installed", [{"config": '\n[opencode.tools]\ndownloads = "allowlist"\n'
                                                  'download_allow = ["ibm/*"]\n'}], indirect=True)
def test_download_tool_starts_an_allowed_download(installed: Env) -> None:
    installed.emu.update(download_speed=1.0)
    proc = installed.run('CALLTOOL:lmstudio_download_model {"model": "ibm/granite-4-micro"}', timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [d["model"] for d in installed.emu.downloads()] == ["ibm/granite-4-micro"], installed.emu.downloads()
    results = _tool_results(installed)
    assert "Started downloading ibm/granite-4-micro" in results and "lmstudio_download_model again" in results


def test_download_tool_refuses_what_the_person_did_not_allow(installed: Env) -> None:
    proc = installed.run('CALLTOOL:lmstudio_download_model {"model": "ibm/granite-4-micro"}', timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert installed.emu.downloads() == []
    assert "opencode.tools.downloads allowlist" in _tool_results(installed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_compaction_request_carries_our_context(installed: Env) -> None:
    port = _free_port()
    server = subprocess.Popen([str(installed.opencode), "serve", "--hostname", "127.0.0.1", "--port", str(port)],
                              cwd=installed.project, env=installed.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/global/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        q = {"directory": str(installed.project)}
        with httpx.Client(base_url=base, timeout=120, params=q) as oc:
            sid = oc.post("/session", json={}).json()["id"]
            model = {"providerID": "lmstudio", "modelID": QWEN}
            r = oc.post(f"/session/{sid}/message", json={"model": model, "parts": [{"type": "text", "text": "hi"}]})
            assert r.status_code == 200, r.text
            installed.emu.clear_requests()
            r = oc.post(f"/session/{sid}/summarize", json=model)
            assert r.status_code == 200, r.text
        bodies = [json.dumps(r.json) for r in installed.emu.requests if r.path.endswith("/chat/completions")]
        assert bodies, "no compaction request reached LM Studio"
        assert any(f"The summary will be read by {QWEN} with a loaded context window of 8192 tokens" in b
                   for b in bodies), bodies
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.parametrize("installed", [{"endpoint_file": True}], indirect=True)
def test_plugin_and_serve_share_an_overridden_discovery_file(installed: Env) -> None:
    assert not (Path(installed.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json").exists()
    installed.emu.clear_requests()
    proc = installed.run("say hi", model=GEMMA)  # not loaded, JIT off: only a plugin that found the tray blocks it
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Next steps:" in proc.stderr
    assert _chat_requests(installed.emu, GEMMA) == 0


@pytest.mark.parametrize("installed", [{"commented": True}], indirect=True)
def test_opencode_loads_the_plugin_from_a_commented_jsonc_that_install_edited(installed: Env) -> None:
    config = installed.project / "opencode.jsonc"
    text = config.read_text()
    proc = installed.run("say hi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hello from the LM Studio emulator" in proc.stdout
    assert _chat_requests(installed.emu, QWEN) >= 1
    # the plugin ran: it asked the endpoint before the request
    assert _endpoint_get(installed, "/v1/metrics")["validate"]["categories"].get("ready", 0) >= 1
    assert config.read_text() == text  # OpenCode read it as it is (it rewrites a file it finds wanting)
    debug = subprocess.run([str(installed.opencode), "debug", "config"], cwd=installed.project, env=installed.env,
                           capture_output=True, text=True, timeout=120)
    assert debug.returncode == 0, debug.stderr
    resolved = json.loads(debug.stdout)
    assert resolved["share"] == "disabled" and resolved["provider"]["lmstudio"]["models"][QWEN]["limit"] == {
        "context": 8192, "output": 2048}
