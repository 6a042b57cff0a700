"""The tools never take the model away from the OpenCode session that calls them."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from lmstudio_tray.cli import build_parser
from tests.api.conftest import Api

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
VL = "qwen/qwen2.5-vl-7b"


def loaded(api: Api) -> list[str]:
    return sorted(i["identifier"] for i in api.emu.loaded())


async def tool(api: Api, path: str, **body: Any) -> dict[str, Any]:
    r = await api.client.post(f"/v1/tools/{path}", json={"base_url": api.url + "/v1", **body})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


@pytest.fixture
async def session_on_qwen(api: Api) -> Api:
    """Qwen and gemma loaded; session s1 runs on qwen (its requests went through validate)."""
    api.emu.load(QWEN, context_length=8192)
    api.emu.load(GEMMA, context_length=4096)
    await api.refreshed()
    assert (await api.validate(QWEN, session_id="s1", agent="build"))["ok"]
    return api


# ---- the session's model stays ---------------------------------------------------------------------------


async def test_switch_keeps_the_sessions_model_and_says_how_the_person_switches(session_on_qwen: Api) -> None:
    api = session_on_qwen
    api.emu.unload(GEMMA)
    api.emu.load(VL)
    await api.refreshed()
    data = await tool(api, "switch", model=GEMMA, session_id="s1")
    assert loaded(api) == sorted([GEMMA, QWEN])  # gemma ready, qwen kept, the other chat model gone
    assert data["kept"] == [QWEN] and data["ok"] is False
    assert data["data"]["unloaded"] == [VL]
    assert f"Kept {QWEN} loaded" in data["text"] and "/models in OpenCode" in data["text"]
    assert f"Loaded {GEMMA}" in data["text"] and f"unloaded {VL}" in data["text"]


async def test_unload_of_the_sessions_own_model_keeps_it(session_on_qwen: Api) -> None:
    api = session_on_qwen
    data = await tool(api, "unload", model=QWEN, session_id="s1")
    assert loaded(api) == sorted([GEMMA, QWEN])
    assert data["ok"] is False and data["kept"] == [QWEN] and data["data"] == []
    assert data["text"].startswith("Nothing was unloaded on local.") and "/models" in data["text"]
    data = await tool(api, "unload", models=[QWEN, GEMMA], session_id="s1")
    assert loaded(api) == [QWEN] and data["data"] == [GEMMA] and data["kept"] == [QWEN]


async def test_unload_all_keeps_the_sessions_model(session_on_qwen: Api) -> None:
    api = session_on_qwen
    data = await tool(api, "unload", all=True, session_id="s1")
    assert loaded(api) == [QWEN]
    assert data["data"] == [GEMMA] and data["kept"] == [QWEN]
    assert data["text"].startswith(f"Unloaded {GEMMA} on local. Kept {QWEN} loaded")


async def test_the_model_the_plugin_names_is_kept_without_any_validate(api: Api) -> None:
    # e.g. the tray restarted since the session's last request: the plugin still knows its model
    api.emu.load(QWEN)
    api.emu.load(GEMMA)
    await api.refreshed()
    data = await tool(api, "unload", all=True, session_id="never-seen", session_model=QWEN)
    assert loaded(api) == [QWEN] and data["kept"] == [QWEN]


async def test_without_a_session_nothing_is_kept(session_on_qwen: Api) -> None:
    # a person with curl (or a session validate never saw) gets the action as asked
    api = session_on_qwen
    data = await tool(api, "unload", all=True, session_id="another-session")
    assert loaded(api) == [] and data["ok"] and data["kept"] == []


async def test_server_stop_refuses_the_instance_the_session_runs_on(session_on_qwen: Api) -> None:
    api = session_on_qwen
    r = await api.client.post("/v1/tools/server/stop", json={"base_url": api.url + "/v1", "session_id": "s1"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["kind"] == "in_use_by_session" and "/models in OpenCode" in err["message"]
    assert_commands_exist(err["message"])


def assert_commands_exist(message: str) -> None:
    """Every `lmstudio-tray ...` command quoted in `message` parses with the real command line."""
    commands = [c for c in message.split("`")[1::2] if c.startswith("lmstudio-tray ")]
    assert commands, message
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])
