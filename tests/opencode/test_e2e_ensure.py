"""End to end: `not_loaded = "ensure"` with the real opencode binary, JIT off and a load that takes seconds.

OpenCode sends two requests for one prompt (the answer and, in parallel, the session title), each through
the plugin's `chat.params` hook. The first starts the load; the other finds the model `loading` and must
wait for it: with JIT off, LM Studio refuses a request for a model that is not loaded yet. The load must
also give the model the context OpenCode plans for (`limit.context`), not LM Studio's default.

Everything runs in isolated HOME/XDG dirs on 127.0.0.1; processes started here are stopped by pid.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.opencode.conftest import require_or_skip
from tests.opencode.test_e2e import GEMMA, QWEN, Env, _chat_requests, _e2e

# the TUI starts slowly on a busy machine; each wait below has its own deadline and says what it waited for
pytestmark = [pytest.mark.opencode, pytest.mark.timeout(600)]
LLAMA = "llama-3.2-3b-instruct"
PLANNED_CONTEXT = 16384  # the provider's limit.context for GEMMA: above LM Studio's default of 4096
LOAD_SECONDS = 3.0
HELD = 3600.0  # load_seconds of a load the test finishes itself (Emulator.finish_loads)
ENSURE = '[validation.policy]\nnot_loaded = "ensure"\n'
DEADLINE = 120.0


def _ensure_env(opencode_bin: Path, tmp_path: Path, emulator_factory: Any, load_seconds: float) -> Iterator[Env]:
    emu: Emulator = emulator_factory(jit=False, load_seconds=load_seconds)
    # two other models loaded: LM Studio then answers a request for GEMMA before it is loaded with
    # "Invalid model identifier" (with one, it would quietly serve the other model instead)
    yield from _e2e(opencode_bin, tmp_path, emu, preload={QWEN: 8192, LLAMA: 4096}, model=GEMMA,
                    small_model=GEMMA, contexts={GEMMA: PLANNED_CONTEXT}, tray_config=ENSURE)


@pytest.fixture
def ensure_env(opencode_bin: Path, tmp_path: Path, emulator_factory: Any) -> Iterator[Env]:
    yield from _ensure_env(opencode_bin, tmp_path, emulator_factory, LOAD_SECONDS)


@pytest.fixture
def held_env(opencode_bin: Path, tmp_path: Path, emulator_factory: Any) -> Iterator[Env]:
    yield from _ensure_env(opencode_bin, tmp_path, emulator_factory, HELD)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


class Tmux:
    """A private tmux server (its own socket) with one pane running a command."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lmst-tmux-"))  # a short path: socket paths are limited
        self.env = env

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(["tmux", "-S", str(self.dir / "sock"), "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "oc")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.dir / "sock"), "kill-server"], env=self.env, capture_output=True,
                       timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def tmux() -> Iterator[Callable[[dict[str, str]], Tmux]]:
    if shutil.which("tmux") is None:
        require_or_skip("tmux is not installed (scripts/deps/desktop.sh installs it)")
    servers: list[Tmux] = []

    def make(env: dict[str, str]) -> Tmux:
        servers.append(Tmux(env))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _endpoint_metrics(env: Env) -> dict[str, Any]:
    state = Path(env.env["XDG_STATE_HOME"]) / "lmstudio-tray" / "endpoint.json"
    ep = json.loads(state.read_text())
    r = httpx.get(ep["url"] + "/v1/metrics", headers={"authorization": f"Bearer {ep['token']}"}, timeout=10)
    data: dict[str, Any] = r.json()
    return data


def _gemma_instances(emu: Emulator) -> list[dict[str, Any]]:
    return [i for i in emu.loaded() if i["modelKey"] == GEMMA]


def _tray_status(env: Env) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "lmstudio_tray", "status", "--json"], env=env.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _assert_loaded_with_planned_context(env: Env) -> None:
    instances = _gemma_instances(env.emu)
    assert len(instances) == 1, instances  # one load, shared by every request; no second copy
    assert instances[0]["contextLength"] >= PLANNED_CONTEXT, instances
    (local,) = [i for i in _tray_status(env)["instances"] if i["name"] == "local"]
    (model,) = [m for m in local["models"] if m["key"] == GEMMA]
    assert [i["context_length"] for i in model["instances"]] == [instances[0]["contextLength"]], model


def test_run_waits_for_the_ensured_load_and_loads_the_planned_context(ensure_env: Env) -> None:
    assert _gemma_instances(ensure_env.emu) == []
    proc = ensure_env.run("say hi", model=GEMMA, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Hello from the LM Studio emulator ({GEMMA})" in proc.stdout, proc.stdout + proc.stderr
    assert "Invalid model identifier" not in proc.stdout + proc.stderr
    # the answer and the title: both went to LM Studio, after the load
    assert _chat_requests(ensure_env.emu, GEMMA) >= 2
    _assert_loaded_with_planned_context(ensure_env)


def test_tui_waits_for_the_load_with_a_progress_toast_and_answers(held_env: Env,
                                                                   tmux: Callable[[dict[str, str]], Tmux]) -> None:
    """The TUI, typed into like a person would: the request waits for the load (held in progress until the
    test has seen the progress toast change), then the answer shows, no error. OpenCode's title request
    comes in parallel or after the answer, depending on timing; either way it must not fail or load a
    second copy (`run` above checks the parallel case: with JIT off an early request would fail)."""
    env, emu = held_env, held_env.emu
    term = tmux(env.env)
    term("new-session", "-d", "-s", "oc", "-x", "160", "-y", "48", "-c", str(env.project), str(env.opencode))
    wait_for(lambda: "Ask anything" in term.screen(), "the TUI's prompt")
    term("send-keys", "-t", "oc", "-l", "say hi")
    wait_for(lambda: "say hi" in term.screen(), "the typed prompt")
    term("send-keys", "-t", "oc", "Enter")
    wait_for(lambda: [j for j in emu.snapshot()["loading"] if j["model"] == GEMMA], "the ensure's load")
    wait_for(lambda: _endpoint_metrics(env)["ensures"] >= 1, "the request to wait for the load")
    seen: set[str] = set()

    def progress_changed() -> bool:
        seen.update(re.findall(rf"Loading {re.escape(GEMMA)} (\d+)%", term.screen()))
        return len(seen) >= 2

    wait_for(progress_changed, "the progress toast to change")
    assert [j["model"] for j in emu.snapshot()["loading"]] == [GEMMA]  # still one load for everyone
    emu.finish_loads()

    def answered() -> str:
        # the reply under the prompt, and its footer with the time it took: the step has finished
        text = term.screen()
        return text if "Hello from the LM Studio emulator" in text and re.search(r"Build · Gemma · \d", text) else ""

    try:
        screen = wait_for(answered, "the answer")
    except AssertionError as exc:  # what the person would have seen says why (a toast over it, an error, nothing)
        raise AssertionError(f"{exc}; the screen:\n{term.screen()}") from None
    for error in ("Error", "Invalid model identifier", "No models loaded", "failed"):
        assert error not in screen, screen
    assert _chat_requests(emu, GEMMA) >= 2, emu.request_counts()
    _assert_loaded_with_planned_context(env)
