"""The emulator's scripted tool calls (`CALLTOOL:<name> {args}`), in OpenAI's shape, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator

QWEN = "qwen/qwen3-4b-2507"
SCHEMA = {"type": "object", "properties": {"model": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "lmstudio_load_model", "description": "load", "parameters": SCHEMA}}]
PROMPT = 'please CALLTOOL:lmstudio_load_model {"model": "google/gemma-3-12b"} now'


@pytest.fixture
def client(emulator: Emulator) -> httpx.Client:
    emulator.load(QWEN)
    return httpx.Client(base_url=emulator.api_url, timeout=10)


def chat(client: httpx.Client, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": QWEN, "messages": messages, **extra})


def payloads(text: str) -> list[Any]:
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_non_streaming_tool_call(client: httpx.Client) -> None:
    r = chat(client, [{"role": "user", "content": PROMPT}], tools=TOOLS)
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["content"] is None
    (call,) = msg["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "lmstudio_load_model"
    assert json.loads(call["function"]["arguments"]) == {"model": "google/gemma-3-12b"}
    assert r.json()["usage"]["completion_tokens"] > 0


def test_streaming_tool_call_reassembles_like_an_openai_client(client: httpx.Client) -> None:
    r = chat(client, [{"role": "user", "content": PROMPT}], tools=TOOLS, stream=True,
             stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = payloads(r.text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["tool_calls"][0]["function"] == {"name": "lmstudio_load_model", "arguments": ""}
    # an OpenAI client concatenates the argument fragments by tool-call index
    args = "".join(tc["function"].get("arguments", "") for c in chunks
                   for tc in c["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"model": "google/gemma-3-12b"}
    assert len(chunks) > 3  # really streamed in pieces
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" in events[-2] and events[-2]["choices"] == []


def test_next_turn_after_the_tool_result_is_a_normal_answer(client: httpx.Client) -> None:
    first = chat(client, [{"role": "user", "content": PROMPT}], tools=TOOLS).json()["choices"][0]["message"]
    messages = [
        {"role": "user", "content": PROMPT},
        first,
        {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": "gemma loaded in 0.1 s"},
    ]
    r = chat(client, messages, tools=TOOLS)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool result: gemma loaded" in choice["message"]["content"]
    assert "tool_calls" not in choice["message"]


def test_no_tool_call_without_tools_or_for_an_unoffered_tool(client: httpx.Client) -> None:
    for extra in ({}, {"tools": [{"type": "function", "function": {"name": "other"}}]},
                  {"tools": TOOLS, "tool_choice": "none"}):
        choice = chat(client, [{"role": "user", "content": PROMPT}], **extra).json()["choices"][0]
        assert choice["finish_reason"] == "stop", extra
        assert "Hello from the LM Studio emulator" in choice["message"]["content"]


def test_tool_call_without_arguments_sends_an_empty_object(client: httpx.Client) -> None:
    r = chat(client, [{"role": "user", "content": "CALLTOOL:lmstudio_load_model"}], tools=TOOLS)
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_json_quoted_prompt_still_yields_the_arguments(client: httpx.Client) -> None:
    # `opencode run` passes some prompts JSON-quoted: "CALLTOOL:x {\"model\": \"m\"}"
    quoted = json.dumps('CALLTOOL:lmstudio_load_model {"model": "google/gemma-3-12b"}')
    r = chat(client, [{"role": "user", "content": quoted}], tools=TOOLS)
    args = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"model": "google/gemma-3-12b"}
