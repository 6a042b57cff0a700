"""OpenAI-compatible `/v1/*` routes, plus the REST v0 inference routes that extend them with stats."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from lmstudio_tray.emulator.routes import content, shapes
from lmstudio_tray.emulator.routes.httpserver import SSE_TYPE, Request, Response, json_response
from lmstudio_tray.emulator.state import errors
from lmstudio_tray.emulator.state.engine import Instance
from lmstudio_tray.emulator.state.shared import EmulatorState
from lmstudio_tray.emulator.state.speed import speed_of


def body_of(request: Request) -> dict[str, Any]:
    if request.json_error or (request.body and not isinstance(request.json, dict)):
        raise errors.ApiError(400, errors.openai_error("Invalid JSON in request body.", param=None))
    return request.json if isinstance(request.json, dict) else {}


def models(state: EmulatorState, request: Request) -> Response:
    state.engine.expire()
    ids = [i.identifier for i in state.engine.loaded()]
    if state.jit_active:
        ids += [key for key in state.catalog.model_keys() if key not in ids]
    return json_response({"data": [shapes.openai_model(i) for i in ids], "object": "list"})


def _ttl(body: dict[str, Any]) -> float | None:
    ttl = body.get("ttl")
    return float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0 else None


def _serving_instance(state: EmulatorState, body: dict[str, Any], kind: str) -> Instance:
    model = body.get("model")
    target = state.resolve(
        model if isinstance(model, str) else None,
        kind="embedding" if kind == "embedding" else "llm",
        jit=state.jit_active,
        ttl=_ttl(body),
    )
    return state.ready_or_error(target)


def v0_extras(state: EmulatorState, instance: Instance, completion_tokens: int, finish: str) -> dict[str, Any]:
    spec = instance.spec
    # LM Studio's own figures: fixed ones unless the emulator runs each model at its own speed.
    tokens_per_second, first_token = 51.43, 0.111
    if state.settings.speed_scale is not None:
        speed = speed_of(spec)
        tokens_per_second = round(speed.generated_tokens_per_s, 2)
        first_token = round(speed.first_token_seconds(0), 3)
    runtime = (
        {"name": "mlx-llm-mac-arm64-apple-metal-advsimd", "version": "0.26.1", "supported_formats": ["safetensors"]}
        if spec.format == "mlx"
        else {"name": "llama.cpp-linux-x86_64-avx2", "version": "1.50.2", "supported_formats": ["gguf"]}
    )
    return {
        "stats": {
            "tokens_per_second": tokens_per_second,
            "time_to_first_token": first_token,
            "generation_time": round(completion_tokens / tokens_per_second, 3),
            "stop_reason": "eosFound" if finish == "stop" else "maxPredictedTokensReached",
        },
        "model_info": {
            "arch": spec.architecture, "quant": spec.quantization, "format": spec.format,
            "context_length": instance.context_length,
        },
        "runtime": runtime,
    }


def chat_completions(state: EmulatorState, request: Request, *, rest_v0: bool = False) -> Response:
    body = body_of(request)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.ApiError(400, errors.openai_error("'messages' field is required", param="messages"))
    instance = _serving_instance(state, body, "llm")
    call = content.scripted_tool_call(body)
    if call is not None:
        return _tool_call_reply(state, instance, body, call, rest_v0=rest_v0)
    pieces, finish = content.reply_tokens(instance.identifier, content.reply_prompt(messages), body.get("max_tokens"))
    usage = {
        "prompt_tokens": content.prompt_tokens(messages),
        "completion_tokens": len(pieces),
        "total_tokens": content.prompt_tokens(messages) + len(pieces),
    }
    base = {
        "id": content.random_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": instance.identifier,
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        first_wait = state.first_token_wait(instance.spec, usage["prompt_tokens"])
        chunks = _chat_stream(state, instance, base, pieces, finish, usage if include_usage else None, first_wait)
        return Response(content_type=SSE_TYPE, stream=chunks)
    state.engine.begin_use(instance)
    try:
        result: dict[str, Any] = {
            **base,
            "choices": [{
                "index": 0, "logprobs": None, "finish_reason": finish,
                "message": {"role": "assistant", "content": "".join(pieces)},
            }],
            "usage": usage,
        }
        if rest_v0:
            result.update(v0_extras(state, instance, len(pieces), finish))
        else:
            result.update(stats={}, system_fingerprint=instance.identifier)
        return json_response(result)
    finally:
        state.engine.end_use(instance)


def _tool_call_reply(
    state: EmulatorState, instance: Instance, body: dict[str, Any], call: content.ToolCall, *, rest_v0: bool
) -> Response:
    """The model answers with one tool call: `finish_reason: "tool_calls"`, `content: null`, arguments as a
    JSON string; streamed as a name chunk, argument fragments, then the finish chunk."""
    messages = body["messages"]
    completion = content.count_tokens(call.arguments) + 3
    usage = {"prompt_tokens": content.prompt_tokens(messages), "completion_tokens": completion,
             "total_tokens": content.prompt_tokens(messages) + completion}
    base = {"id": content.random_id("chatcmpl-"), "created": int(time.time()), "model": instance.identifier}
    function = {"name": call.name, "arguments": call.arguments}
    if not body.get("stream"):
        state.engine.begin_use(instance)
        try:
            result: dict[str, Any] = {
                **base, "object": "chat.completion",
                "choices": [{
                    "index": 0, "logprobs": None, "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None,
                                "tool_calls": [{"id": call.id, "type": "function", "function": function}]},
                }],
                "usage": usage,
            }
            if rest_v0:
                result.update(v0_extras(state, instance, completion, "tool_calls"))
            else:
                result.update(stats={}, system_fingerprint=instance.identifier)
            return json_response(result)
        finally:
            state.engine.end_use(instance)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return Response(content_type=SSE_TYPE,
                    stream=_tool_call_stream(state, instance, base, call, usage if include_usage else None))


def _tool_call_stream(
    state: EmulatorState, instance: Instance, base: dict[str, Any], call: content.ToolCall,
    usage: dict[str, int] | None,
) -> Iterator[bytes]:
    state.engine.begin_use(instance)
    try:
        head = {**base, "object": "chat.completion.chunk", "system_fingerprint": instance.identifier}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return content.sse_data(
                {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            )

        yield chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]})
        args = call.arguments
        step = max(1, len(args) // 3)
        for start in range(0, len(args), step):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[start:start + step]}}]})
            if state.settings.token_delay:
                time.sleep(state.settings.token_delay)
        yield chunk({}, "tool_calls")
        if usage is not None:
            yield content.sse_data({**head, "choices": [], "usage": usage})
        yield content.sse_data(b"[DONE]")
    finally:
        state.engine.end_use(instance)


def _chat_stream(
    state: EmulatorState,
    instance: Instance,
    base: dict[str, Any],
    pieces: list[str],
    finish: str,
    usage: dict[str, int] | None,
    first_wait: float = 0.0,
) -> Iterator[bytes]:
    state.engine.begin_use(instance)
    try:
        head = {**base, "object": "chat.completion.chunk", "system_fingerprint": instance.identifier}
        token_wait = state.token_wait(instance.spec)
        if first_wait:
            time.sleep(first_wait)  # reading the prompt: the time to first token
        for index, piece in enumerate(pieces):
            delta: dict[str, Any] = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            yield content.sse_data(
                {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
            )
            if token_wait:
                time.sleep(token_wait)
        yield content.sse_data(
            {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}
        )
        if usage is not None:
            yield content.sse_data({**head, "choices": [], "usage": usage})
        yield content.sse_data(b"[DONE]")
    finally:
        state.engine.end_use(instance)


def completions(state: EmulatorState, request: Request, *, rest_v0: bool = False) -> Response:
    body = body_of(request)
    prompt = body.get("prompt")
    text_prompt = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
    instance = _serving_instance(state, body, "llm")
    pieces, finish = content.reply_tokens(instance.identifier, text_prompt, body.get("max_tokens"))
    state.engine.begin_use(instance)
    try:
        result: dict[str, Any] = {
            "id": content.random_id("cmpl-"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": instance.identifier,
            "choices": [{"index": 0, "text": "".join(pieces), "logprobs": None, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": content.count_tokens(text_prompt),
                "completion_tokens": len(pieces),
                "total_tokens": content.count_tokens(text_prompt) + len(pieces),
            },
        }
        if rest_v0:
            result.update(v0_extras(state, instance, len(pieces), finish))
        else:
            result.update(stats={}, system_fingerprint=instance.identifier)
        return json_response(result)
    finally:
        state.engine.end_use(instance)


def embeddings(state: EmulatorState, request: Request, *, rest_v0: bool = False) -> Response:
    body = body_of(request)
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw] if isinstance(raw, list) else []
    if not inputs:
        raise errors.ApiError(400, errors.openai_error("'input' field is required", param="input"))
    instance = _serving_instance(state, body, "embedding")
    tokens = sum(content.count_tokens(text) for text in inputs)
    model_name = instance.identifier
    if rest_v0 and instance.spec.quantization:
        model_name = f"{instance.identifier}@{instance.spec.quantization.lower()}"
    state.engine.begin_use(instance)
    try:
        return json_response({
            "object": "list",
            "data": [
                {"object": "embedding", "embedding": content.embedding_vector(text), "index": i}
                for i, text in enumerate(inputs)
            ],
            "model": model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
    finally:
        state.engine.end_use(instance)
