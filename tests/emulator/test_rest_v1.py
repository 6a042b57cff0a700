from __future__ import annotations

import json
import time

import httpx

from lmstudio_tray.emulator import Emulator, ModelSpec
from tests.emulator.helpers import client_for
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"


def sse_events(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_load_blocks_and_stacks_instances(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.25)
    with client_for(emu.api_url) as c:
        started = time.monotonic()
        r = c.post("/api/v1/models/load", json={"model": QWEN, "context_length": 16384, "echo_load_config": True})
        assert time.monotonic() - started >= 0.25
        emu.update(load_seconds=0.0)
        body = r.json()
        assert r.status_code == 200
        assert body["type"] == "llm" and body["instance_id"] == QWEN and body["status"] == "loaded"
        assert body["load_time_seconds"] >= 0.25
        assert body["load_config"]["context_length"] == 16384
        second = c.post("/api/v1/models/load", json={"model": QWEN}).json()
        assert second["instance_id"] == f"{QWEN}:2" and "load_config" not in second
        third = c.post("/api/v1/models/load", json={"model": QWEN}).json()
        assert third["instance_id"] == f"{QWEN}:3"
    assert [m["identifier"] for m in emu.loaded()] == [QWEN, f"{QWEN}:2", f"{QWEN}:3"]


def test_per_model_load_seconds(emulator_factory: EmulatorFactory) -> None:
    slow = ModelSpec(key="acme/slow", display_name="Slow", publisher="acme", load_seconds=0.2)
    fast = ModelSpec(key="acme/fast", display_name="Fast", publisher="acme", load_seconds=0.0)
    emu = emulator_factory(catalog=[slow, fast], load_seconds=5.0)
    # each model's own load time, not the emulator-wide 5 s
    assert (emu.state.load_seconds(fast), emu.state.load_seconds(slow)) == (0.0, 0.2)
    with client_for(emu.api_url) as c:
        assert c.post("/api/v1/models/load", json={"model": "acme/fast"}).json()["instance_id"] == "acme/fast"
        started = time.monotonic()
        c.post("/api/v1/models/load", json={"model": "acme/slow"})
        assert time.monotonic() - started >= 0.2


def test_embedding_load_config(client: httpx.Client) -> None:
    body = client.post(
        "/api/v1/models/load", json={"model": "text-embedding-nomic-embed-text-v1.5", "echo_load_config": True}
    ).json()
    assert body["type"] == "embedding" and body["load_config"] == {"context_length": 2048}


def test_load_errors(emulator_factory: EmulatorFactory) -> None:
    guard = ModelSpec(key="big/model", display_name="Big", publisher="big", size_bytes=90_000_000_000,
                      fail_load=ModelSpec(key="x", display_name="x", publisher="x").guardrail_message())
    emu = emulator_factory(catalog=[guard, ModelSpec(key="ok/model", display_name="Ok", publisher="ok")])
    with client_for(emu.api_url) as c:
        r = c.post("/api/v1/models/load", json={"model": "nope/none"})
        assert r.status_code == 404
        assert r.json()["error"]["type"] == "model_not_found"
        r = c.post("/api/v1/models/load", json={})
        assert r.status_code == 400
        assert r.json() == {"error": {"type": "invalid_request", "message": '"model" is required',
                                      "code": "missing_required_parameter", "param": "model"}}
        r = c.post("/api/v1/models/load", json={"model": "big/model"})
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "model_load_failed"
        assert r.json()["error"]["message"].startswith("Model loading was stopped due to insufficient system")
        emu.update(fail_loads={"ok/model": "Error loading model."})
        assert c.post("/api/v1/models/load", json={"model": "ok/model"}).status_code == 400
        emu.update(fail_loads={})
        assert c.post("/api/v1/models/load", json={"model": "ok/model"}).status_code == 200
        r = c.post("/api/v1/models/load", json={"model": "ok/model", "context_length": 10**9})
        assert r.status_code == 400


def test_unload(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    ident = emulator.load(QWEN)
    r = client.post("/api/v1/models/unload", json={"instance_id": ident})
    assert r.json() == {"instance_id": f"{QWEN}:2"}
    r = client.post("/api/v1/models/unload", json={"instance_id": ident})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    assert client.post("/api/v1/models/unload", json={}).status_code == 400
    assert [m["identifier"] for m in emulator.loaded()] == [QWEN]


def test_chat_non_streaming(emulator: Emulator, client: httpx.Client) -> None:
    body = client.post("/api/v1/chat", json={"model": QWEN, "input": "Hello there"}).json()
    assert body["model_instance_id"] == QWEN
    assert body["output"][0]["type"] == "message" and "Hello there" in body["output"][0]["content"]
    assert "model_load_time_seconds" in body["stats"]
    assert body["response_id"].startswith("resp_")
    again = client.post("/api/v1/chat", json={"model": QWEN, "input": "x", "store": False}).json()
    assert "model_load_time_seconds" not in again["stats"] and "response_id" not in again


def test_chat_streaming_with_model_load_events(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.2, jit=False)
    with client_for(emu.api_url) as c:
        r = c.post("/api/v1/chat", json={"model": QWEN, "input": "Hi", "stream": True})
        events = sse_events(r.text)
        names = [e for e, _ in events]
        assert names[0] == "chat.start" and names[1] == "model_load.start" and names[-1] == "chat.end"
        progress = [float(str(d["progress"])) for e, d in events if e == "model_load.progress"]
        assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 1.0
        assert "model_load.end" in names and "message.delta" in names
        assert names.index("model_load.end") < names.index("message.start")
        result = events[-1][1]["result"]
        assert isinstance(result, dict) and result["model_instance_id"] == QWEN
        events = sse_events(c.post("/api/v1/chat", json={"model": QWEN, "input": "Hi", "stream": True}).text)
        assert not any(e.startswith("model_load") for e, _ in events)


def test_chat_errors(client: httpx.Client, emulator: Emulator) -> None:
    assert client.post("/api/v1/chat", json={"input": "x"}).status_code == 400
    r = client.post("/api/v1/chat", json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    emulator.update(fail_loads={QWEN: "boom"})
    r = client.post("/api/v1/chat", json={"model": QWEN, "input": "x", "stream": True})
    assert sse_events(r.text)[-1][0] == "error"
