"""The endpoint in-process: security, every verdict category, policies, transforms, tools, bad bodies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmstudio_tray.emulator import Fault
from tests.api.conftest import Api, client_for

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


async def refreshed(api: Api) -> None:
    await api.refreshed()


# ---- security --------------------------------------------------------------------------------------


async def test_health_is_public_everything_else_needs_the_token(api: Api) -> None:
    bare = client_for(api.server, token="")
    async with bare:
        assert (await bare.get("/v1/health")).json()["ok"] is True
        for path in ("/v1/status", "/v1/metrics", "/openapi.json", "/v1/plugin"):
            r = await bare.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"]["kind"] == "unauthorized"
        r = await bare.post("/v1/validate", json={"model": QWEN}, headers={"authorization": "Bearer nope"})
        assert r.status_code == 401
        r = await bare.get("/v1/status", headers={"authorization": api.token})  # no "Bearer "
        assert r.status_code == 401


async def test_the_metrics_count_what_the_guard_and_the_dashboard_gate_refused(api: Api) -> None:
    before = (await api.client.get("/v1/metrics")).json()["refused"]
    bare = client_for(api.server, token="")
    async with bare:
        assert (await bare.get("/v1/status")).status_code == 401  # the guard: no token
        assert (await bare.get("/dashboard/api/live", headers={"origin": "http://evil.example"})).status_code == 403
        assert (await bare.get("/dashboard/api/live")).status_code == 401  # no cookie: not a refusal of a stranger
    assert (await api.client.get("/v1/metrics")).json()["refused"] == before + 2


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "localhost", "127.0.0.2:{port}"])
async def test_foreign_host_is_refused(api: Api, host: str) -> None:
    host = host.format(port=api.port)
    r = await api.client.get("/v1/status", headers={"host": host})
    assert r.status_code == 421 and r.json()["error"]["kind"] == "forbidden_host"
    assert (await api.client.get("/v1/health", headers={"host": host})).status_code == 421


async def test_localhost_host_is_allowed(api: Api) -> None:
    assert (await api.client.get("/v1/status", headers={"host": f"localhost:{api.port}"})).status_code == 200


async def test_any_origin_is_refused(api: Api) -> None:
    for origin in (f"http://127.0.0.1:{api.port}", "https://evil.example", "null"):
        r = await api.client.get("/v1/status", headers={"origin": origin})
        assert r.status_code == 403 and r.json()["error"]["kind"] == "forbidden_origin"


async def test_body_limit(api: Api) -> None:
    limit = api.core.config.endpoint.max_body_bytes
    r = await api.client.post("/v1/text-complete", json={"model": "m", "text": "x" * (limit + 10)})
    assert r.status_code == 413

    async def chunks() -> Any:
        for _ in range(limit // 1000 + 2):
            yield b"x" * 1000

    r = await api.client.post("/v1/text-complete", content=chunks())
    assert r.status_code == 413
    assert (await api.client.get("/v1/metrics")).json()["refused"] >= 2  # both counted where people look


# ---- bad bodies: 422 with a readable message, never 500 ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/validate", {}),
        ("/v1/validate", {"model": 5}),
        ("/v1/validate", {"model": ""}),
        ("/v1/validate", {"model": "x", "context_limit": -1}),
        ("/v1/validate", {"model": "x", "base_url": "not a url"}),
        ("/v1/validate", []),
        ("/v1/events", {"events": "nope"}),
        ("/v1/transform/messages", {"model": "m", "messages": [{"id": "a"}]}),
        ("/v1/tools/load", {}),
        ("/v1/tools/unload", {}),
        ("/v1/tools/search", {"query": "x", "min_size": "lots"}),
        ("/v1/tools/search", {"type": "vlm"}),
        ("/v1/tools/compare", {"models": ["only-one"]}),
        ("/v1/tools/benchmark", {"runs": 0}),
        ("/v1/tools/stats", {"since": "yesterday"}),
        ("/v1/tools/recommend", {"task": ""}),
        ("/v1/compaction", {"session_id": ""}),
    ],
)
async def test_bad_bodies_are_422_with_message(api: Api, path: str, body: Any) -> None:
    r = await api.client.post(path, json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["kind"] == "invalid_request" and err["message"]


async def test_malformed_json_and_unknown_route(api: Api) -> None:
    r = await api.client.post("/v1/validate", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["message"]
    r = await api.client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["kind"] == "not_found"
    r = await api.client.get("/v1/validate")
    assert r.status_code == 405


async def test_openapi_describes_every_route(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/v1/health", "/v1/status", "/v1/validate", "/v1/ensure", "/v1/events", "/v1/transform/system",
        "/v1/transform/messages", "/v1/compaction", "/v1/text-complete", "/v1/tools/list", "/v1/tools/load",
        "/v1/tools/unload", "/v1/tools/switch", "/v1/tools/server/start", "/v1/tools/server/stop",
        "/v1/tools/server/status", "/v1/tools/search", "/v1/metrics", "/v1/tokens/reload",
    } <= paths
    schemas = spec["components"]["schemas"]
    assert {"ValidateIn", "VerdictOut", "ErrorOut", "EnsureOut", "EventsIn", "ToolOut"} <= set(schemas)
    assert "422" in spec["paths"]["/v1/validate"]["post"]["responses"]


# ---- validation categories ---------------------------------------------------------------------------


async def test_ready_and_warm_validate_makes_no_lmstudio_call(api_factory: Any) -> None:
    # the background poller stays asleep for the whole test, however slowly the machine runs it
    api = api_factory(monitor={"poll_interval": 300, "fast_window": 0})
    api.emu.load(QWEN, context_length=8192)
    await refreshed(api)
    calls = api.core.monitor.lmstudio_calls
    before = len(api.emu.requests)
    for _ in range(50):
        v = await api.validate(QWEN, context_limit=8192)
        assert (v["category"], v["ok"], v["action"]) == ("ready", True, "allow")
    assert v["facts"]["loaded_context_length"] == 8192 and v["facts"]["instance"] == "local"
    # the 50 validates themselves ask LM Studio nothing
    assert api.core.monitor.lmstudio_calls == calls
    assert len(api.emu.requests) == before
    m = (await api.client.get("/v1/metrics")).json()
    assert m["validate"]["count"] == 50 and m["validate"]["p50_ms"] is not None
    assert m["cache"]["hits"] >= 50


async def test_jit_on_unloaded_is_jit(api: Api) -> None:
    await refreshed(api)
    v = await api.validate(QWEN)
    assert v["category"] == "jit" and v["ok"] and v["facts"]["jit"] is True
    # gemma has several quant variants: JIT would pick one for the user
    assert (await api.validate(GEMMA))["category"] == "ambiguous"


async def test_not_loaded_with_jit_off_blocks(api_factory: Any) -> None:
    api: Api = api_factory({"jit": False})
    api.emu.load(QWEN, context_length=4096)
    await refreshed(api)
    v = await api.validate(GEMMA)
    # JIT off: LM Studio lists only loaded models, so the unloaded one is unknown to it
    assert v["category"] in ("not_loaded", "unknown_model") and v["ok"] is False and v["action"] == "block"
    assert "Next steps:" in v["text"]
    assert any(s["key"] == QWEN or s["loaded"] for s in v["suggestions"]) or v["category"] == "not_loaded"


async def test_unknown_model_suggests(api: Api) -> None:
    await refreshed(api)
    v = await api.validate("qwen/qwen3-4b")
    assert v["category"] == "unknown_model" and not v["ok"]
    assert v["suggestions"][0]["key"] == QWEN


async def test_context_too_small_warns(api: Api) -> None:
    api.emu.load(QWEN, context_length=4096)
    await refreshed(api)
    v = await api.validate(QWEN, context_limit=32768)
    assert (v["category"], v["ok"], v["action"]) == ("context_too_small", True, "warn")


async def test_offline(api: Api) -> None:
    api.emu.stop_server()
    await refreshed(api)
    v = await api.validate(QWEN)
    assert (v["category"], v["ok"]) == ("offline", False)
    assert v["retry_after_ms"]


async def test_auth_failed(api_factory: Any) -> None:
    api: Api = api_factory({"auth_token": "secret", "version": "0.4.8"})
    await refreshed(api)
    v = await api.validate(QWEN)
    assert (v["category"], v["ok"]) == ("auth_failed", False)


async def test_error_state(api: Api) -> None:
    api.emu.add_fault(Fault(path="/api/*", kind="status", status=500))
    api.emu.add_fault(Fault(path="/v1/*", kind="status", status=500))
    await refreshed(api)
    v = await api.validate(QWEN)
    assert v["category"] in ("error", "offline") and not v["ok"]


async def test_unknown_base_url_becomes_adhoc_instance(api: Api, emulator_factory: Any) -> None:
    other = emulator_factory()
    other.load(GEMMA, context_length=2048)
    r = await api.client.post("/v1/validate", json={"model": GEMMA, "base_url": other.api_url.rstrip("/") + "/v1"})
    v = r.json()
    assert v["category"] == "ready" and v["facts"]["instance"] != "local"
    assert len(api.core.monitor.names) == 2


async def test_policy_allow_lets_blocked_categories_through(api_factory: Any) -> None:
    api: Api = api_factory({"jit": False}, validation={"policy": {"not_loaded": "allow",
                                                                        "unknown_model": "warn"}})
    await refreshed(api)
    v = await api.validate(GEMMA)
    assert v["ok"] is True and v["action"] in ("allow", "warn")


# ---- ensure ------------------------------------------------------------------------------------------


async def test_ensure_loads_once_for_concurrent_sessions(api_factory: Any) -> None:
    api: Api = api_factory({"jit": True, "load_seconds": 0.3},
                                 validation={"policy": {"jit": "ensure"}})
    await refreshed(api)
    v = await api.validate(QWEN)
    assert v["action"] == "ensure" and v["ok"] is False
    results = await asyncio.gather(*(
        api.client.post("/v1/ensure", json={"model": QWEN, "base_url": api.url + "/v1", "session_id": f"s{i}"})
        for i in range(5)
    ))
    bodies = [r.json() for r in results]
    assert all(b["ok"] for b in bodies), bodies
    loads = [r for r in api.emu.requests if r.method == "POST" and r.path == "/api/v1/models/load"]
    assert len(loads) == 1
    assert (await api.validate(QWEN))["category"] == "ready"


async def test_ensure_is_time_boxed(api_factory: Any) -> None:
    api: Api = api_factory({"jit": False, "load_seconds": 3.0},
                                 validation={"ensure_timeout": 0.3})
    api.emu.load(QWEN)
    await refreshed(api)
    r = await api.client.post("/v1/ensure", json={"model": GEMMA, "base_url": api.url + "/v1"})
    body = r.json()
    assert r.status_code == 200 and body["seconds"] < 2.5
    assert body["ok"] is False


async def test_ensure_refuses_what_loading_cannot_fix(api: Api) -> None:
    api.emu.stop_server()
    await refreshed(api)
    body = (await api.client.post("/v1/ensure", json={"model": QWEN, "base_url": api.url + "/v1"})).json()
    assert body["ok"] is False and body["category"] == "offline"


# ---- events, transforms ------------------------------------------------------------------------------


async def test_events_feed_session_health_and_invalidate(api_factory: Any) -> None:
    # slow polling, so the only reason for a fresh LM Studio poll right after the events is the error event
    api = api_factory(monitor={"poll_interval": 60, "fast_poll_interval": 60})
    await refreshed(api)
    mon = api.core.monitor.instance("local")
    polled_at = mon.snapshot_at
    from lmstudio_tray.core.events import SessionFailing

    seen: list[Any] = []
    api.core.bus.subscribe(seen.append, SessionFailing)
    err = {"name": "APIError", "data": {"message": "No models loaded", "statusCode": 400,
                                        "metadata": {"url": api.url + "/v1/chat/completions"}}}
    events = [{"type": "session.error", "properties": {"sessionID": "s1", "error": err},
               "base_url": api.url + "/v1", "model": QWEN}] * 3
    r = await api.client.post("/v1/events", json={"events": events})
    assert r.json() == {"accepted": 3}
    assert len(seen) == 1 and seen[0].reason == "No models loaded"
    for _ in range(100):  # the poke wakes the poller at once; allow it a moment to answer
        if mon.snapshot_at != polled_at:
            break
        await asyncio.sleep(0.02)
    assert mon.snapshot_at != polled_at, "an error reported by OpenCode should trigger a fresh poll"
    s = (await api.client.get("/v1/sessions")).json()
    assert s["sessions"][0]["failures"] == 3


async def test_system_transform(api: Api) -> None:
    api.emu.load(QWEN, context_length=8192)
    await refreshed(api)
    r = await api.client.post("/v1/transform/system", json={"model": QWEN, "base_url": api.url + "/v1"})
    assert "8192" in r.json()["system"][0]
    r = await api.client.post("/v1/transform/system", json={"model": QWEN, "base_url": "https://api.openai.com/v1"})
    assert r.json() == {"system": []}


async def test_messages_transform_trims_to_loaded_context(api: Api) -> None:
    api.emu.load(QWEN, context_length=4096)
    await refreshed(api)
    msgs = [{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant", "tokens": 600} for i in range(12)]
    r = await api.client.post("/v1/transform/messages", json={"model": QWEN, "base_url": api.url + "/v1",
                                                              "messages": msgs})
    data = r.json()
    assert data["dropped"] and data["keep"][-1] == "m11" and data["tokens_after"] <= data["budget"]
    r = await api.client.post("/v1/transform/messages", json={"model": "gpt-4o", "base_url": "https://x.example/v1",
                                                              "messages": msgs})
    assert r.json()["dropped"] == []


async def test_compaction_and_text_complete(api: Api) -> None:
    api.emu.load(QWEN, context_length=8192)
    await refreshed(api)
    await api.validate(QWEN, session_id="s1")
    r = await api.client.post("/v1/compaction", json={"session_id": "s1", "base_url": api.url + "/v1"})
    assert any("8192" in c for c in r.json()["context"])
    r = await api.client.post("/v1/text-complete", json={"model": QWEN, "base_url": api.url + "/v1",
                                                          "text": "<think></think>Hi<|im_end|>"})
    assert r.json() == {"text": "Hi", "changed": True, "repairs": ["empty-think-block", "end-token"]}


# ---- tools -------------------------------------------------------------------------------------------


async def test_tools_load_list_switch_unload_search(api: Api) -> None:
    await refreshed(api)
    r = await api.client.post("/v1/tools/load", json={"model": QWEN, "context_length": 4096})
    assert r.status_code == 200 and r.json()["ok"], r.text
    assert any(i["id"] == QWEN for i in [{"id": x["identifier"]} if "identifier" in x else x
                                          for x in api.emu.loaded()]) or api.emu.loaded()
    listing = (await api.client.post("/v1/tools/list", json={})).json()
    assert f"{QWEN} [llm] loaded" in listing["text"]
    r = await api.client.post("/v1/tools/switch", json={"model": GEMMA})
    assert r.json()["ok"]
    snap = await api.on_core(api.core.monitor.get("local", max_age=0))
    assert [m.key for m in snap.loaded_models] == [GEMMA]
    r = await api.client.post("/v1/tools/unload", json={"all": True})
    assert GEMMA in r.json()["text"]
    found = (await api.client.post("/v1/tools/search", json={"query": "gemma"})).json()
    assert GEMMA in found["text"]
    status = (await api.client.post("/v1/tools/server/status", json={})).json()
    assert "running" in status["text"]


async def test_tool_failures_are_409_with_message(api: Api) -> None:
    await refreshed(api)
    r = await api.client.post("/v1/tools/load", json={"model": "nope/nothing"})
    assert r.status_code == 409 and "nope/nothing" in r.json()["error"]["message"]
    r = await api.client.post("/v1/tools/unload", json={"model": QWEN})
    assert r.status_code == 409
    r = await api.client.post("/v1/tools/server/start", json={})
    assert r.status_code == 409 and r.json()["error"]["message"]
    r = await api.client.post("/v1/tools/list", json={"instance": "nope"})
    assert r.status_code == 404


async def test_batch_load(api: Api) -> None:
    await refreshed(api)
    r = await api.client.post("/v1/tools/load", json={"models": [QWEN, GEMMA, "nope/x"]})
    data = r.json()
    assert data["ok"] is False and len(data["data"]) == 2 and "nope/x: failed" in data["text"]
