"""The tools never take the model away from the OpenCode session that calls them, an agent cannot force a change
on a shared instance, and every field the endpoint accepts changes something (the ones that did not are gone)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
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


async def test_a_title_request_on_small_model_is_not_the_sessions_model(session_on_qwen: Api) -> None:
    """OpenCode asks for the session title with agent `title` on small_model: that is not a switch."""
    api = session_on_qwen
    assert (await api.validate(GEMMA, session_id="s1", agent="title"))["ok"]
    sessions = (await api.client.get("/v1/sessions")).json()["sessions"]
    assert [(s["session_id"], s["model"], s["models"]) for s in sessions] == [("s1", QWEN, [QWEN])]
    r = await api.client.post("/v1/compaction", json={"session_id": "s1", "base_url": api.url + "/v1"})
    assert not any("switched" in c for c in r.json()["context"]), r.json()
    data = await tool(api, "unload", all=True, session_id="s1")
    assert data["kept"] == [QWEN] and loaded(api) == [QWEN]


async def test_server_stop_refuses_the_instance_the_session_runs_on(session_on_qwen: Api) -> None:
    api = session_on_qwen
    r = await api.client.post("/v1/tools/server/stop", json={"base_url": api.url + "/v1", "session_id": "s1"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["kind"] == "in_use_by_session" and "/models in OpenCode" in err["message"]
    assert_commands_exist(err["message"])


# ---- fields that are used now --------------------------------------------------------------------------


async def test_messages_are_trimmed_to_opencodes_context_limit_when_it_is_smaller(api: Api) -> None:
    api.emu.load(QWEN, context_length=8192)
    await api.refreshed()
    msgs = [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant", "tokens": 300} for i in range(10)]
    body = {"model": QWEN, "base_url": api.url + "/v1", "messages": msgs}
    whole = (await api.client.post("/v1/transform/messages", json=body)).json()
    assert whole["dropped"] == []  # 3,000 tokens fit the 8,192 window
    fit = (await api.client.post("/v1/transform/messages", json={**body, "context_limit": 4096})).json()
    assert fit["dropped"] and fit["keep"][-1] == "m9" and fit["tokens_after"] <= fit["budget"] < whole["budget"]
    # a limit above the loaded window changes nothing: the window is what LM Studio enforces
    big = (await api.client.post("/v1/transform/messages", json={**body, "context_limit": 32768})).json()
    assert big == whole


# ---- fields nothing used are gone; an agent cannot force ----------------------------------------------------


async def test_the_schemas_have_no_field_nothing_uses(api: Api) -> None:
    schemas = (await api.client.get("/openapi.json")).json()["components"]["schemas"]
    fields = {name: set(schemas[name]["properties"]) for name in
              ("ValidateIn", "SystemIn", "TextIn", "MessagesIn", "UnloadIn", "SwitchIn")}
    assert fields["ValidateIn"] == {"model", "base_url", "context_limit", "agent", "session_id"}
    assert fields["SystemIn"] == {"model", "base_url"}
    assert fields["TextIn"] == {"model", "base_url", "text"}
    assert "force" not in fields["UnloadIn"] | fields["SwitchIn"]


async def test_removed_fields_are_ignored_like_any_unknown_field(api: Api) -> None:
    # an older plugin still sends them: they are no error
    api.emu.load(QWEN)
    await api.refreshed()
    v = await api.validate(QWEN, provider_id="lmstudio", session_id="s1")
    assert v["ok"]
    r = await api.client.post("/v1/transform/system", json={"model": QWEN, "base_url": api.url + "/v1",
                                                             "session_id": "s1"})
    assert r.status_code == 200 and r.json()["system"]
    r = await api.client.post("/v1/text-complete", json={"model": QWEN, "text": "Hi<|im_end|>", "session_id": "s1"})
    assert r.json()["text"] == "Hi"


def assert_commands_exist(message: str) -> None:
    """Every `lmstudio-tray ...` command quoted in `message` parses with the real command line."""
    commands = [c for c in message.split("`")[1::2] if c.startswith("lmstudio-tray ")]
    assert commands, message
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])


async def test_endpoint_doc_lists_exactly_the_fields_each_route_takes(api: Api) -> None:
    """The Transforms and Tools tables of docs/endpoint.md name every body field a route takes, and no other."""
    spec = (await api.client.get("/openapi.json")).json()
    doc = (Path(__file__).resolve().parents[2] / "docs" / "endpoint.md").read_text()
    tables = doc[doc.index("### Transforms"):doc.index("### Others")]
    rows = [line.split("|")[1:3] for line in tables.splitlines() if line.startswith("| `POST /v1/")]
    assert len(rows) >= 10, rows
    for route_cell, body_cell in rows:
        routes = [r.removeprefix("POST ") for r in re.findall(r"`([^`]+)`", route_cell)]
        paths = [r if r.startswith("/v1/") else routes[0].rsplit("/", 1)[0] + r for r in routes]
        documented = {re.split(r"[:\s]", f)[0] for f in re.findall(r"`([^`]+)`", body_cell)}
        for path in paths:
            ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            fields = set(spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"])
            if path.startswith("/v1/tools/"):  # the section says: `instance` or `base_url` pick the LM Studio
                fields -= {"instance", "base_url"}
            assert documented == fields, (path, documented, fields)
