"""`lmstudio_server_status` through the endpoint with a real `lms`: the answer carries this machine's LM Studio
server settings; no tool changes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.runtime import Core, CoreThread
from tests.api.conftest import client_for, make_config
from tests.emulator_fixtures import LmsHome

TOKEN = "sk-lm-abcd1234:abcdefghij0123456789"


@pytest.fixture
def endpoint(lms_home: LmsHome) -> Iterator[EndpointServer]:
    core = Core(make_config(lms_home.emulator), lms_path=lms_home.lms)
    server = attach_endpoint(core)
    thread = CoreThread(core)
    thread.start()
    yield server
    thread.stop()


async def test_server_status_tool_reports_the_settings(endpoint: EndpointServer, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    async with client_for(endpoint) as client:
        answer = (await client.post("/v1/tools/server/status", json={})).json()
        assert answer["ok"]
        data = answer["data"]
        assert (data["running"], data["port"], data["bind"], data["cors"], data["jit"], data["auth_required"]) == (
            True, emu.api_port, "127.0.0.1", False, True, "no")
        assert ("Server settings: reachable from this machine only, CORS off, Just-in-Time loading on, API token "
                "required: no.") in answer["text"]
        emu.update(auth_token=TOKEN)
        emu.stop_server()
        emu.start_server(bind="0.0.0.0", cors=True)
        text = (await client.post("/v1/tools/server/status", json={})).json()["text"]
        assert "reachable from the local network (0.0.0.0), CORS on" in text and "required: yes" in text


async def test_no_tool_changes_the_server_settings(endpoint: EndpointServer) -> None:
    async with client_for(endpoint) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    tools = sorted(p for p in paths if p.startswith("/v1/tools/server"))
    assert tools == ["/v1/tools/server/start", "/v1/tools/server/status", "/v1/tools/server/stop"]
    for path in tools:
        schema = str(paths[path])
        assert "bind" not in schema and "cors" not in schema.lower()
