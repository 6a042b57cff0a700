"""`POST /v1/tools/load` with load options: applied, refused where the load path cannot apply them, checked."""

from __future__ import annotations

from collections.abc import Callable

from tests.api.conftest import Api

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


async def test_load_tool_applies_rest_options_and_says_there_is_no_estimate(api: Api) -> None:
    await api.refreshed()
    r = await api.client.post("/v1/tools/load", json={"model": QWEN, "context_length": 8192, "ttl": 300})
    assert r.status_code == 200 and r.json()["ok"], r.text
    [inst] = api.emu.state.engine.loaded()
    assert (inst.context_length, inst.ttl) == (8192, 300)
    # this endpoint's core has no `lms`: the answer says the load went ahead without LM Studio's estimate
    assert "No memory estimate for qwen/qwen3-4b-2507 on local" in r.json()["text"]
    assert r.json()["data"][0]["warnings"] and r.json()["data"][0]["via"] == "rest"


async def test_load_tool_refuses_options_without_lms_and_bad_values(api_factory: Callable[..., Api]) -> None:
    api = api_factory(loads={"fit_check": "off"})
    await api.refreshed()
    r = await api.client.post("/v1/tools/load", json={"model": QWEN, "gpu": "max", "parallel": 2})
    assert r.status_code == 409 and r.json()["error"]["kind"] == "not_supported"
    assert "cannot set GPU offload, parallel requests" in r.json()["error"]["message"]
    assert api.emu.loaded() == []
    r = await api.client.post("/v1/tools/load", json={"model": QWEN, "gpu": "lots"})
    assert r.status_code == 422 and "is not off, max or a number between 0 and 1" in r.json()["error"]["message"]
    r = await api.client.post("/v1/tools/load", json={"models": [QWEN, GEMMA], "identifier": "mine"})
    assert r.status_code == 422 and "load one model with it" in r.json()["error"]["message"]
    r = await api.client.post("/v1/tools/load", json={"model": QWEN})
    assert r.status_code == 200 and "No memory estimate" not in r.json()["text"]  # fit_check off: not asked
