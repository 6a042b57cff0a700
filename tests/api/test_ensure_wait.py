"""`ensure` and loads in progress: a request for a model that is loading waits for that load (time-boxed),
whoever started it, and an ensure loads the context the request plans for.

Loads are held in progress (a long `load_seconds`) until the test finishes them with `Emulator.finish_loads`,
so "while it loads" is a state the test controls, not a race.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.api.conftest import Api

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
LLAMA = "llama-3.2-3b-instruct"
HELD = 3600.0  # load_seconds: a load stays in progress until finish_loads()


async def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def loading(emu: Emulator) -> list[str]:
    return [j["identifier"] for j in emu.snapshot()["loading"]]


def instances(emu: Emulator, key: str = GEMMA) -> list[tuple[str, int]]:
    return sorted((m["identifier"], m["contextLength"]) for m in emu.loaded() if m["modelKey"] == key)


def load_requests(emu: Emulator) -> int:
    return len([r for r in emu.requests if r.path == "/api/v1/models/load"])


async def waiting_for_the_load(api: Api, n: int) -> None:
    """Until `n` ensures wait for the load in progress (the endpoint counts them in /v1/metrics)."""
    deadline = time.monotonic() + 30
    while (await api.client.get("/v1/metrics")).json()["ensures_waiting"] < n:
        assert time.monotonic() < deadline, f"timed out waiting for {n} ensures to wait for the load"
        await asyncio.sleep(0.01)


def ensure(api: Api, model: str = GEMMA, **extra: Any) -> asyncio.Future[httpx.Response]:
    return asyncio.ensure_future(api.client.post("/v1/ensure", json={"model": model, "base_url": api.url + "/v1",
                                                                     **extra}))


async def test_a_request_for_a_model_another_ensure_is_loading_waits_for_that_load(api_factory: Any) -> None:
    """OpenCode's answer and title requests: the first starts the load, the second must not go to LM Studio
    (JIT off: "Invalid model identifier") but wait; both get the context the request plans for."""
    api: Api = api_factory({"jit": False, "load_seconds": HELD}, validation={"policy": {"not_loaded": "ensure"}})
    api.emu.load(QWEN)
    api.emu.load(LLAMA)
    await api.refreshed()
    v1 = await api.validate(GEMMA, context_limit=16384)
    assert (v1["category"], v1["action"]) == ("not_loaded", "ensure")
    first = ensure(api, context_limit=16384, session_id="answer")
    await until(lambda: loading(api.emu) == [GEMMA], "the ensure's load")
    v2 = await api.validate(GEMMA, context_limit=16384)
    assert (v2["category"], v2["action"], v2["ok"]) == ("loading", "ensure", False), v2
    second = ensure(api, context_limit=16384, session_id="title")
    await waiting_for_the_load(api, 1)
    api.emu.finish_loads()
    r1, r2 = (r.json() for r in await asyncio.gather(first, second))
    assert r1["ok"] and r2["ok"], (r1, r2)
    assert (r1["category"], r2["category"]) == ("not_loaded", "loading")
    assert "context 16384" in r1["message"]
    assert instances(api.emu) == [(GEMMA, 16384)] and load_requests(api.emu) == 1
    assert (await api.validate(GEMMA, context_limit=16384))["category"] == "ready"


@pytest.mark.parametrize("started_by", ["tool", "tray"])
async def test_a_request_waits_for_a_tool_or_tray_load(api_factory: Any, started_by: str) -> None:
    api: Api = api_factory({"jit": False, "load_seconds": HELD})  # the default policy
    await api.refreshed()
    if started_by == "tool":
        load: asyncio.Future[Any] = asyncio.ensure_future(
            api.client.post("/v1/tools/load", json={"model": GEMMA, "context_length": 8192}))
    else:  # the tray's menu acts through the core's thread
        load = asyncio.wrap_future(api.thread.submit(api.core.actions.load("local", GEMMA, context_length=8192)))
    await until(lambda: loading(api.emu) == [GEMMA], "the load")
    v = await api.validate(GEMMA, context_limit=8192)
    assert (v["category"], v["action"], v["ok"]) == ("loading", "ensure", False), v
    waiting = ensure(api, context_limit=8192)
    # a request planning for more than that load gives: after the wait it is judged by the policy for what
    # it finds, `warn` for context_too_small by default, and nothing reloads behind the user's back
    planning_more = ensure(api, context_limit=16384)
    await waiting_for_the_load(api, 2)
    api.emu.finish_loads()
    await load
    fits, small = (r.json() for r in await asyncio.gather(waiting, planning_more))
    assert fits["ok"] and fits["category"] == "loading" and fits["category_now"] == "ready", fits
    assert f"{GEMMA} is ready on local (waited " in fits["message"] and "context 8192" in fits["message"], fits
    assert small["category_now"] == "context_too_small", small
    assert small["ok"] and "8192" in small["message"] and "16384" in small["message"], small
    assert instances(api.emu) == [(GEMMA, 8192)] and load_requests(api.emu) == 1


async def test_after_the_wait_a_context_too_small_is_reloaded_when_the_policy_says_ensure(api_factory: Any) -> None:
    api: Api = api_factory({"jit": False, "load_seconds": HELD},
                           validation={"policy": {"context_too_small": "ensure"}})
    await api.refreshed()
    tool = asyncio.ensure_future(api.client.post("/v1/tools/load", json={"model": GEMMA, "context_length": 8192}))
    await until(lambda: loading(api.emu) == [GEMMA], "the tool's load")
    waiting = ensure(api, context_limit=16384)
    await waiting_for_the_load(api, 1)
    api.emu.finish_loads()
    await tool
    await until(lambda: loading(api.emu) == [f"{GEMMA}:2"], "the reload with the planned context")
    api.emu.finish_loads()
    body = (await waiting).json()
    assert body["ok"] and "context 16384" in body["message"], body
    assert instances(api.emu) == [(f"{GEMMA}:2", 16384)]  # the small copy is unloaded


async def test_ensure_reloads_a_model_loaded_with_too_small_a_context(api_factory: Any) -> None:
    api: Api = api_factory({"jit": False, "load_seconds": 0.05},
                           validation={"policy": {"context_too_small": "ensure"}})
    api.emu.load(GEMMA, context_length=4096)
    await api.refreshed()
    v = await api.validate(GEMMA, context_limit=16384)
    assert (v["category"], v["action"]) == ("context_too_small", "ensure")
    body = (await ensure(api, context_limit=16384)).json()
    assert body["ok"] and body["load"]["context_length"] == 16384, body
    assert instances(api.emu) == [(f"{GEMMA}:2", 16384)]
    assert (await api.validate(GEMMA, context_limit=16384))["category"] == "ready"


@pytest.mark.parametrize(("model", "category"), [(QWEN, "jit"), (GEMMA, "ambiguous")])  # GEMMA has variants
async def test_jit_on_a_request_for_a_model_jit_is_loading_waits_for_it(
    api_factory: Any, model: str, category: str
) -> None:
    """The first request's JIT load is only expected by the tray (LM Studio lists no loading state): the
    second request waits until the model is listed as loaded."""
    api: Api = api_factory({"jit": True, "load_seconds": HELD})
    await api.refreshed()
    v1 = await api.validate(model)
    assert (v1["category"], v1["ok"]) == (category, True)
    async with httpx.AsyncClient(base_url=api.url, timeout=120) as lmstudio:
        answer = asyncio.ensure_future(lmstudio.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}]}))
        await until(lambda: loading(api.emu) == [model], "the JIT load")
        v2 = await api.validate(model)
        assert (v2["category"], v2["action"]) == ("loading", "ensure"), v2
        waiting = ensure(api, model)
        await waiting_for_the_load(api, 1)
        api.emu.finish_loads()
        assert (await answer).status_code == 200
        body = (await waiting).json()
    assert body["ok"] and body["category"] == "loading", body
    assert [m["identifier"] for m in api.emu.loaded()] == [model]


async def test_jit_on_a_request_during_an_explicit_load_waits_instead_of_loading_a_second_copy(
    api_factory: Any,
) -> None:
    """With JIT on, a request sent to LM Studio while the tray loads the model would start a JIT load of
    its own (a second copy, LM Studio's default context): the default `loading = "ensure"` waits."""
    api: Api = api_factory({"jit": True, "load_seconds": HELD})
    await api.refreshed()
    tool = asyncio.ensure_future(api.client.post("/v1/tools/load", json={"model": GEMMA, "context_length": 16384}))
    await until(lambda: loading(api.emu) == [GEMMA], "the tool's load")
    v = await api.validate(GEMMA, context_limit=16384)
    assert (v["category"], v["action"]) == ("loading", "ensure"), v
    waiting = ensure(api, context_limit=16384)
    await waiting_for_the_load(api, 1)
    api.emu.finish_loads()
    await tool
    assert (await waiting).json()["ok"]
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as lmstudio:
        r = await lmstudio.post("/v1/chat/completions", json={"model": GEMMA,
                                                              "messages": [{"role": "user", "content": "hi"}]})
    assert r.json()["model"] == GEMMA
    assert instances(api.emu) == [(GEMMA, 16384)]


async def test_the_wait_for_a_load_is_time_boxed(api_factory: Any) -> None:
    api: Api = api_factory({"jit": False, "load_seconds": HELD}, validation={"ensure_timeout": 0.5})
    await api.refreshed()
    tool = asyncio.ensure_future(api.client.post("/v1/tools/load", json={"model": GEMMA}))
    await until(lambda: loading(api.emu) == [GEMMA], "the tool's load")
    body = (await ensure(api)).json()
    assert not body["ok"] and body["category"] == "loading", body
    assert f"{GEMMA} is still loading after 0.5 s" in body["message"]
    assert "Next steps:" in body["text"]
    api.emu.finish_loads()
    assert (await tool).json()["ok"]


# ---- a load another lmstudio-tray process runs (`lmstudio-tray load` in a terminal) -----------------------


def cli(api: Api, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path, Path]:
    """`lmstudio-tray ARGS` in its own process, against the same LM Studio and state dir as the endpoint."""
    cfg = tmp_path / "cli-config.toml"
    cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{api.emu.api_url}"\n')
    out, err = tmp_path / "cli.out", tmp_path / "cli.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), *args],
                                stdout=stdout, stderr=stderr, text=True)
    return proc, out, err


async def finished(proc: subprocess.Popen[str]) -> int:
    return await asyncio.to_thread(proc.wait, 120)


async def test_a_request_waits_for_a_cli_load_in_another_process(api_factory: Any, tmp_path: Path) -> None:
    """LM Studio lists no loading state: without a word from the CLI the endpoint would call the model
    not loaded (JIT off: blocked by default; with ensure: a second copy)."""
    api: Api = api_factory({"jit": False, "load_seconds": HELD})  # the default policy
    await api.refreshed()
    proc, _out, err = cli(api, tmp_path, "load", GEMMA, "-c", "16384")
    try:
        await until(lambda: loading(api.emu) == [GEMMA], "the CLI's load")
        v = await api.validate(GEMMA, context_limit=16384)
        assert (v["category"], v["action"], v["ok"]) == ("loading", "ensure", False), v
        waiting = ensure(api, context_limit=16384)
        await waiting_for_the_load(api, 1)
        api.emu.finish_loads()
        assert await finished(proc) == 0, err.read_text()
        body = (await waiting).json()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert body["ok"] and (body["category"], body["category_now"]) == ("loading", "ready"), body
    assert instances(api.emu) == [(GEMMA, 16384)] and load_requests(api.emu) == 1
    assert not list((tmp_path / "xdg" / "state" / "lmstudio-tray" / "loads").glob("*.json"))  # cleaned up


async def test_a_cli_load_waits_for_the_endpoints_load_instead_of_loading_a_second_copy(
    api_factory: Any, tmp_path: Path
) -> None:
    api: Api = api_factory({"jit": False, "load_seconds": HELD}, validation={"policy": {"not_loaded": "ensure"}})
    await api.refreshed()
    first = ensure(api, context_limit=16384)
    await until(lambda: loading(api.emu) == [GEMMA], "the ensure's load")
    proc, out, err = cli(api, tmp_path, "--log-level", "info", "load", GEMMA, "-c", "16384", "--json")
    try:
        await until(lambda: "to finish loading" in err.read_text(), "the CLI to wait for the endpoint's load")
        assert loading(api.emu) == [GEMMA]  # still the one load
        api.emu.finish_loads()
        assert await finished(proc) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (await first).json()["ok"]
    result = json.loads(out.read_text())
    assert (result["instance_id"], result["context_length"], result["already_loaded"]) == (GEMMA, 16384, True)
    assert instances(api.emu) == [(GEMMA, 16384)] and load_requests(api.emu) == 1
