"""The team profile where people meet it: the OpenCode tools and the CLI refuse to unload or switch away
a model others used lately on a shared instance (a person can force it, an agent cannot), validate records
that use without a file write per call, refuses models the team does not allow, and ensure loads with the
team's context."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.cli import main
from lmstudio_tray.core.config import team
from lmstudio_tray.core.control import model_use
from tests.api.test_tools_session import assert_commands_exist
from tests.routing.conftest import GEMMA, QWEN, Pool

PROFILE = """
[team]
name = "ml"
busy_minutes = 5

[models]
allowed = ["qwen/qwen3-4b-2507", "google/gemma-3-12b"]
recommended = [{ key = "google/gemma-3-12b", context_length = 8192 }]

[[instances]]
name = "a"
url = "http://127.0.0.1:9"
"""


@pytest.fixture
def team_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "team.toml"
    path.write_text(PROFILE)
    monkeypatch.setenv(team.ENV, str(path))
    return path


def loaded_keys(pool: Pool, name: str) -> list[str]:
    return sorted(i["modelKey"] for i in pool.emus[name].loaded())


async def validate(pool: Pool, name: str, model: str, **extra: Any) -> dict[str, Any]:
    async with pool.client() as c:
        r = await c.post("/v1/validate", json={"model": model, "base_url": pool.emus[name].api_url + "/v1", **extra})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_tools_refuse_unload_and_switch_of_a_model_in_use_and_an_agent_cannot_force(
    pool_factory: Any, team_file: Path
) -> None:
    pool: Pool = pool_factory({"a": [QWEN, GEMMA]})
    assert (await validate(pool, "a", QWEN))["ok"]  # an OpenCode request just went to qwen on "a"
    async with pool.client() as c:
        r = await c.post("/v1/tools/unload", json={"instance": "a", "model": QWEN})
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["kind"] == "shared_busy"
        assert "shared by team 'ml'" in error["message"] and QWEN in error["message"]
        assert loaded_keys(pool, "a") == sorted([QWEN, GEMMA])  # nothing was taken away

        # switching to gemma would unload qwen: refused before anything loads or unloads
        r = await c.post("/v1/tools/switch", json={"instance": "a", "model": GEMMA})
        assert r.status_code == 409 and r.json()["error"]["kind"] == "shared_busy"
        r = await c.post("/v1/tools/unload", json={"instance": "a", "all": True})
        assert r.status_code == 409 and r.json()["error"]["kind"] == "shared_busy"
        assert loaded_keys(pool, "a") == sorted([QWEN, GEMMA])

        # gemma served nobody: unloading it is fine without force
        r = await c.post("/v1/tools/unload", json={"instance": "a", "model": GEMMA})
        assert r.status_code == 200 and r.json()["ok"]
        # only a person can force it: the tools have no `force` (ignored like any unknown field)
        for path, body in (("unload", {"model": QWEN}), ("unload", {"all": True}), ("switch", {"model": GEMMA})):
            r = await c.post(f"/v1/tools/{path}", json={"instance": "a", "force": True, **body})
            assert r.status_code == 409 and r.json()["error"]["kind"] == "shared_busy", r.text
            message = r.json()["error"]["message"]
            assert "An agent cannot force a change" in message and "repeat with --force" not in message
            assert_commands_exist(message)
    assert loaded_keys(pool, "a") == [QWEN]


async def test_instances_the_team_does_not_share_are_never_guarded(pool_factory: Any, team_file: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN, GEMMA]})
    assert (await validate(pool, "b", QWEN))["ok"]
    async with pool.client() as c:
        r = await c.post("/v1/tools/switch", json={"instance": "b", "model": GEMMA})
    assert r.status_code == 200, r.text
    assert loaded_keys(pool, "b") == [GEMMA]


async def test_validate_records_use_with_throttled_writes(pool_factory: Any, team_file: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    every = pool.router.uses.every = 2.0
    use_file = model_use.use_file()
    body = {"model": QWEN, "base_url": pool.emus["a"].api_url + "/v1"}
    started = time.monotonic()
    async with pool.client() as c:
        for _ in range(100):
            r = await c.post("/v1/validate", json=body)
            assert r.json()["ok"]
    elapsed = time.monotonic() - started
    # the first use is written at once, then at most one write per `every` seconds, however many calls
    assert 1 <= pool.router.uses_writes <= 2 + int(elapsed / every)
    assert pool.router.uses_writes < 100
    latest = pool.router.last_used("a", QWEN)
    assert latest is not None
    # the trailing write brings the file up to the last call without another request
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        not use_file.exists() or json.loads(use_file.read_text())["a"][QWEN] < latest
    ):
        await asyncio.sleep(0.1)
    assert json.loads(use_file.read_text())["a"][QWEN] == latest


async def test_a_blocked_verdict_records_no_use(pool_factory: Any, team_file: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    assert not (await validate(pool, "a", "mistral/devstral-small"))["ok"]
    assert pool.router.last_used("a", "mistral/devstral-small") is None
    assert pool.router.uses_writes == 0


async def test_validate_refuses_a_model_the_team_does_not_allow(
    pool_factory: Any, team_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    narrow = tmp_path / "narrow.toml"
    narrow.write_text(PROFILE.replace('allowed = ["qwen/qwen3-4b-2507", "google/gemma-3-12b"]',
                                      'allowed = ["google/gemma-3-12b"]'))
    monkeypatch.setenv(team.ENV, str(narrow))
    pool: Pool = pool_factory({"a": [QWEN]})
    v = await validate(pool, "a", QWEN)
    assert not v["ok"] and v["category"] == "not_allowed" and v["action"] == "block"
    assert "team profile 'ml'" in v["message"]
    assert [s["key"] for s in v["suggestions"]] == [GEMMA]
    assert any("google/gemma-3-12b (context 8192)" in step for step in v["steps"])
    # an instance id or a variant of a model the team does not allow is refused as well
    assert (await validate(pool, "a", QWEN + ":1"))["category"] in ("not_allowed", "unknown_model")
    # ensure does not load it either
    async with pool.client() as c:
        r = await c.post("/v1/ensure", json={"model": QWEN, "base_url": pool.emus["a"].api_url + "/v1"})
    assert r.status_code == 200 and not r.json()["ok"] and r.json()["category"] == "not_allowed"
    # the allowed model passes (JIT on: LM Studio would load it), and its step loads the team's context
    g = await validate(pool, "a", GEMMA)
    assert g["ok"] and g["category"] in ("jit", "ambiguous")  # gemma has quant variants
    assert any(f"`lmstudio-tray load {GEMMA} -c 8192`" in step for step in g["steps"])


async def test_ensure_loads_with_the_teams_recommended_context(pool_factory: Any, team_file: Path) -> None:
    pool: Pool = pool_factory({"a": [QWEN]})
    async with pool.client() as c:
        r = await c.post("/v1/ensure", json={"model": GEMMA, "base_url": pool.emus["a"].api_url + "/v1"})
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert r.json()["load"]["context_length"] == 8192
        # an explicit context still wins
        r = await c.post("/v1/tools/load", json={"instance": "a", "model": QWEN, "context_length": 16384})
        assert r.status_code == 200
    contexts = {i["modelKey"]: i["contextLength"] for i in pool.emus["a"].loaded()}
    assert contexts[GEMMA] == 8192


async def test_status_shows_the_router(pool_factory: Any) -> None:
    pool: Pool = pool_factory({"a": [QWEN], "b": [QWEN]})
    async with pool.client() as c:
        await c.post(pool.base() + "/chat/completions",
                     json={"model": QWEN, "messages": [{"role": "user", "content": "hi"}]})
        data = (await c.get("/v1/status")).json()
    assert {i["name"] for i in data["instances"]} == {"a", "b"}
    assert data["router"]["pools"] == {"team": ["a", "b"]}
    assert sum(u["served"] for u in data["router"]["instances"].values()) == 1


# ---- the CLI ----------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_config(tmp_path: Path, url: str, profile: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'team_profile = "{profile}"\n\n[[instances]]\nname = "a"\nurl = "{url}"\n')
    return path


def test_cli_unload_and_switch_refuse_without_force(
    tmp_path: Path, emulator_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "team.toml"
    profile.write_text(PROFILE)
    emu = emulator_factory()
    emu.load(QWEN)
    cfg = cli_config(tmp_path, emu.api_url, profile)
    # what the tray's router or validate wrote a minute ago, seen by the CLI through the file
    uses = model_use.ModelUseLog()
    uses.record("a", QWEN, time.time() - 60)
    uses.flush()

    code, _, err = run(capsys, "--config", str(cfg), "unload", QWEN)
    assert code == 1
    assert "shared by team 'ml'" in err and "--force" in err and "60 s ago" in err
    assert [i["modelKey"] for i in emu.loaded()] == [QWEN]

    code, _, err = run(capsys, "--config", str(cfg), "switch", GEMMA)
    assert code == 1 and "--force" in err
    assert [i["modelKey"] for i in emu.loaded()] == [QWEN]  # gemma was not even loaded

    code, _, err = run(capsys, "--config", str(cfg), "switch", GEMMA, "--force")
    assert code == 0, err
    assert [i["modelKey"] for i in emu.loaded()] == [GEMMA]
    assert emu.loaded()[0]["contextLength"] == 8192  # the team's recommended context

    code, _, err = run(capsys, "--config", str(cfg), "unload", "--all")
    assert code == 0, err  # nobody used gemma: no force needed
    assert emu.loaded() == []
