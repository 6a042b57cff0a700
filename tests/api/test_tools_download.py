"""The download tool through the real endpoint: refused unless the config allows the model (the refusal names
what the person sets, and doing that works), then the job and how to follow it, the same download on a second
call, already downloaded, unknown models and LM Studio offline."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from lmstudio_tray.cli import build_parser
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.store import parse_value, set_value
from lmstudio_tray.core.control.downloads import agent_may_download
from tests.api.conftest import Api

GRANITE = "ibm/granite-4-micro"
ALLOW = {"opencode": {"tools": {"downloads": "allowlist", "download_allow": ["ibm/*", "nobody/*"]}}}


async def call(api: Api, **body: Any) -> tuple[int, dict[str, Any]]:
    r = await api.client.post("/v1/tools/download", json={"base_url": api.url + "/v1", **body})
    data: dict[str, Any] = r.json()
    return r.status_code, data


async def test_off_by_default_and_the_refusal_says_what_the_person_sets(api: Api, tmp_path: Path) -> None:
    code, data = await call(api, model=GRANITE)
    assert code == 403 and data["error"]["kind"] == "download_not_allowed"
    message = data["error"]["message"]
    assert "a person decides" in message and api.emu.downloads() == []
    path = tmp_path / "config.toml"
    for command in re.findall(r"`lmstudio-tray ([^`]+)`", message):
        args = shlex.split(command)
        build_parser().parse_args(args)
        if args[:2] == ["config", "set"]:
            set_value(path, args[2], parse_value(args[3]))
    assert agent_may_download(load_config(path).opencode.tools, GRANITE)


async def test_an_allowed_download_answers_with_the_job_and_a_second_call_follows_it(api_factory: Any) -> None:
    api: Api = api_factory({"download_speed": 1.0}, **ALLOW)
    await api.refreshed()
    code, first = await call(api, model=GRANITE)
    assert code == 200 and first["ok"], first
    job_id = first["data"]["job_id"]
    assert first["text"].startswith(f"Started downloading {GRANITE} (2.3 GB) on local.")
    assert "call lmstudio_download_model again with the same model" in first["text"] and job_id in first["text"]
    code, again = await call(api, model=GRANITE)
    assert code == 200 and again["data"]["job_id"] == job_id and again["data"]["attached"] is True
    assert again["text"].startswith(f"{GRANITE} is downloading on local: ")
    assert len(api.emu.downloads()) == 1
    status = (await api.client.get("/v1/status")).json()
    assert [d["job_id"] for d in status["downloads"]] == [job_id]
    api.emu.finish_downloads()
    await api.on_core(api.core.downloads.wait("local", job_id))
    code, done = await call(api, model=GRANITE)
    assert code == 200 and done["text"] == f"{GRANITE} is downloaded on local; load it with lmstudio_load_model."


async def test_not_in_the_allow_list_unknown_model_and_offline(api_factory: Any) -> None:
    api: Api = api_factory({"download_speed": 1.0}, **ALLOW)
    await api.refreshed()
    code, data = await call(api, model="qwen/qwen3-8b")
    assert code == 403 and "opencode.tools.download_allow: ibm/*, nobody/*" in data["error"]["message"]
    code, data = await call(api, model="nobody/nothing")
    assert code == 409 and data["error"]["kind"] == "unknown_model"
    api.emu.stop_server()
    await api.refreshed()
    code, data = await call(api, model=GRANITE)
    assert code == 409 and data["error"]["kind"] == "offline" and "not running" in data["error"]["message"]
