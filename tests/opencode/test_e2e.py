"""End to end with the real opencode binary, the emulator as LM Studio and `lmstudio-tray serve`.

Everything runs in isolated HOME/XDG dirs on 127.0.0.1; processes started here are stopped by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.opencode.conftest import PLUGIN_FILE, deps_dir

pytestmark = pytest.mark.opencode
QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


@dataclass
class Env:
    root: Path
    project: Path
    env: dict[str, str]
    emu: Emulator
    opencode: Path

    def run(self, prompt: str, model: str = QWEN, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.opencode), "run", "-m", f"lmstudio/{model}", prompt],
            cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout,
        )


def _seed_plugin_package(config_dir: Path) -> None:
    # OpenCode npm-installs @opencode-ai/plugin into every config dir before loading plugins; a
    # pre-seeded copy avoids a ~70 s stall without registry access.
    src = deps_dir() / "node_modules" / "@opencode-ai"
    dst = config_dir / "node_modules" / "@opencode-ai"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        shutil.copytree(src, dst, symlinks=True)
    for name in ("zod", "@standard-schema", "effect"):
        s, d = deps_dir() / "node_modules" / name, config_dir / "node_modules" / name
        if s.exists() and not d.exists():
            shutil.copytree(s, d, symlinks=True)
    (config_dir / "package.json").write_text(json.dumps({"dependencies": {"@opencode-ai/plugin": "1.18.33"}}))
    lock = {"name": config_dir.name, "lockfileVersion": 3, "requires": True,
            "packages": {"": {"dependencies": {"@opencode-ai/plugin": "1.18.33"}},
                         "node_modules/@opencode-ai/plugin": {"version": "1.18.33"}}}
    (config_dir / "package-lock.json").write_text(json.dumps(lock))


@pytest.fixture
def e2e(opencode_bin: Path, tmp_path: Path, emulator_factory: object) -> Iterator[Env]:
    yield from _e2e(opencode_bin, tmp_path, emulator_factory(jit=False))  # type: ignore[operator]


def _port_with_a_status_code() -> int:
    """A free port whose digits contain "500" (OpenCode reads status codes anywhere in an error message)."""
    for port in [*range(45000, 45010), *range(35000, 35010), *range(50000, 50010), *range(25000, 25010)]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port with 500 in it")


@pytest.fixture
def e2e_port_500(opencode_bin: Path, tmp_path: Path, emulator_factory: object) -> Iterator[Env]:
    emu = emulator_factory(jit=False, port=_port_with_a_status_code())  # type: ignore[operator]
    yield from _e2e(opencode_bin, tmp_path, emu)


def _e2e(opencode_bin: Path, tmp_path: Path, emu: Emulator, *, preload: dict[str, int] | None = None,
         model: str = QWEN, small_model: str = QWEN, contexts: dict[str, int] | None = None,
         tray_config: str = "") -> Iterator[Env]:
    """`preload`: models loaded before the test (key -> context); `contexts`: each provider model's
    limit.context; `tray_config`: TOML appended to the tray's config file."""
    for key, ctx in (preload if preload is not None else {QWEN: 8192}).items():
        emu.load(key, context_length=ctx)
    limits = {QWEN: 8192, GEMMA: 8192, **(contexts or {})}
    home = tmp_path / "home"
    xdg = {k: str(home / sub) for k, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                                              ("XDG_CACHE_HOME", ".cache"), ("XDG_STATE_HOME", ".local/state"))}
    for p in xdg.values():
        Path(p).mkdir(parents=True, exist_ok=True)
    project = tmp_path / "project"
    (project / ".opencode" / "plugins").mkdir(parents=True)
    shutil.copy(PLUGIN_FILE, project / ".opencode" / "plugins" / "lmstudio-tray.ts")
    (project / "opencode.json").write_text(json.dumps({
        "$schema": "https://opencode.ai/config.json",
        "model": f"lmstudio/{model}", "small_model": f"lmstudio/{small_model}", "autoupdate": False,
        "share": "disabled",
        "provider": {"lmstudio": {
            "npm": "@ai-sdk/openai-compatible", "name": "LM Studio (emulator)",
            "options": {"baseURL": emu.api_url.rstrip("/") + "/v1"},
            "models": {QWEN: {"name": "Qwen", "limit": {"context": limits[QWEN], "output": 1024}},
                       GEMMA: {"name": "Gemma", "limit": {"context": limits[GEMMA], "output": 1024}}},
        }},
    }))
    (home / ".config" / "opencode").mkdir(parents=True, exist_ok=True)
    for d in (project / ".opencode", home / ".config" / "opencode"):
        _seed_plugin_package(d)
    cfg = home / ".config" / "lmstudio-tray" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n\n[endpoint]\nport = 0\n\n{tray_config}')
    env = {**os.environ, "HOME": str(home), "USERPROFILE": str(home), **xdg, "PWD": str(project),
           "OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
           "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "npm_config_registry": "http://127.0.0.1:9/"}
    # a file, not a pipe nobody reads: a long test's log must not fill the pipe and stall the endpoint
    serve_log = tmp_path / "serve.log"
    with serve_log.open("w") as out:
        serve = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "serve", "--no-notify"], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, text=True)
    endpoint = Path(xdg["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json"
    deadline = time.monotonic() + 20
    while not endpoint.exists() and time.monotonic() < deadline and serve.poll() is None:
        time.sleep(0.05)
    assert endpoint.exists(), serve_log.read_text() if serve.poll() is not None else "serve did not start"
    try:
        yield Env(tmp_path, project, env, emu, opencode_bin)
    finally:
        serve.terminate()
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()


def _chat_requests(emu: Emulator, model: str | None = None) -> int:
    return sum(
        1 for r in emu.requests
        if r.path.endswith("/chat/completions")
        and (model is None or (isinstance(r.json, dict) and r.json.get("model") == model))
    )


def test_loaded_model_answers(e2e: Env) -> None:
    proc = e2e.run("say hi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hello from the LM Studio emulator" in proc.stdout
    assert _chat_requests(e2e.emu) >= 1


def _verdicts(env: Env) -> dict[str, int]:
    """How many validations the endpoint answered, per category: each OpenCode retry asks again."""
    ep = json.loads((Path(env.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json").read_text())
    r = httpx.get(ep["url"] + "/v1/metrics", headers={"authorization": f"Bearer {ep['token']}"}, timeout=10,
                  trust_env=False)
    categories: dict[str, int] = r.json()["validate"]["categories"]
    return categories


def test_unloaded_model_with_jit_off_fails_fast_with_our_message(e2e: Env) -> None:
    e2e.emu.clear_requests()
    proc = e2e.run("say hi", model=GEMMA)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "LM Studio 'local'" in proc.stderr and "Next steps:" in proc.stderr
    # the title request goes to small_model (loaded); nothing may reach LM Studio for the blocked model
    assert _chat_requests(e2e.emu, GEMMA) == 0
    # asked once and not again: OpenCode did not retry the blocked request (it would, 5 times, ~1 min)
    assert _verdicts(e2e).get("not_loaded") == 1


def test_lmstudio_stopped_fails_fast_instead_of_retrying(e2e: Env) -> None:
    e2e.emu.stop_server()
    time.sleep(2.5)  # the tray notices within its poll interval
    proc = e2e.run("say hi", timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not reachable" in proc.stderr
    # the answer and the title request, each asked once: no retries
    assert 1 <= _verdicts(e2e).get("offline", 0) <= 2, _verdicts(e2e)


def test_a_verdict_that_looks_transient_to_opencode_still_fails_fast(e2e_port_500: Env) -> None:
    """The blocked model's message names the server, http://127.0.0.1:<port with 500>: OpenCode must not
    mistake it for an HTTP 500 and retry for a minute."""
    env = e2e_port_500
    assert "500" in env.emu.api_url
    proc = env.run("say hi", model=GEMMA, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Next steps:" in proc.stderr
    assert _verdicts(env).get("not_loaded") == 1  # one ask; a retried request asks again (6 times in all)
    assert _chat_requests(env.emu, GEMMA) == 0
