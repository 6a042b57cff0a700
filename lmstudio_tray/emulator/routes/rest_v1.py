"""Native REST v1 (`/api/v1/*`, LM Studio 0.4.0+): listing, blocking load/unload, and SSE chat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from lmstudio_tray.emulator.routes import content, shapes
from lmstudio_tray.emulator.routes.httpserver import SSE_TYPE, DropStream, Request, Response, json_response
from lmstudio_tray.emulator.state import errors
from lmstudio_tray.emulator.state.engine import Instance, LoadError, LoadOptions
from lmstudio_tray.emulator.state.shared import ConnectionLost, EmulatorState, Target


def _body(request: Request) -> dict[str, Any]:
    if request.json_error or (request.body and not isinstance(request.json, dict)):
        raise errors.v1_error(400, "invalid_request", "Request body must be valid JSON.")
    return request.json if isinstance(request.json, dict) else {}


def models(state: EmulatorState, request: Request) -> Response:
    # Lists every downloaded model whatever the JIT setting (observed live; see docs/emulator.md).
    state.engine.expire()
    loaded = state.engine.loaded()
    data = [shapes.v1_model(spec, [i for i in loaded if i.spec.key == spec.key]) for spec in state.catalog.models]
    return json_response({"models": data})


def _positive_number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _option(body: dict[str, Any], name: str, kind: type) -> Any:
    """A documented load field, checked for its type; absent = None."""
    value = body.get(name)
    if value is None:
        return None
    valid = isinstance(value, bool) if kind is bool else (
        isinstance(value, int) and not isinstance(value, bool) and value > 0
    )
    if not valid:
        expected = "a boolean" if kind is bool else "a positive integer"
        raise errors.v1_error(400, "invalid_request", f'"{name}" must be {expected}', param=name)
    return value


def load_options(body: dict[str, Any]) -> tuple[int | None, LoadOptions]:
    """The fields DOCS `2_rest/load.md` lists. GPU offload, parallel slots and identifiers are not among them
    (they are `lms load` flags), so like any unknown field they are ignored."""
    options = LoadOptions(
        eval_batch_size=_option(body, "eval_batch_size", int),
        flash_attention=_option(body, "flash_attention", bool),
        num_experts=_option(body, "num_experts", int),
        offload_kv_cache_to_gpu=_option(body, "offload_kv_cache_to_gpu", bool),
    )
    return _option(body, "context_length", int), options


def load(state: EmulatorState, request: Request) -> Response:
    body = _body(request)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise errors.v1_missing_model()
    spec = state.catalog.find(name)
    if spec is None:
        raise errors.v1_model_not_found(name)
    context_length, options = load_options(body)
    try:
        job = state.start_load(
            spec,
            context_length=context_length,
            # Undocumented, but sent by third-party clients; applied like `lms load --ttl`.
            ttl=_positive_number(body.get("ttl")),
            variant=name if "@" in name else None,
            options=options,
        )
        instance = state.ready(Target(job=job, owns_job=True))
    except LoadError as exc:
        raise errors.v1_load_failed(str(exc)) from exc
    result: dict[str, Any] = {
        "type": "embedding" if spec.is_embedding else "llm",
        "instance_id": instance.identifier,
        "load_time_seconds": round(instance.load_time, 3),
        "status": "loaded",
    }
    if body.get("echo_load_config"):
        result["load_config"] = shapes.v1_load_config(instance)
    return json_response(result)


def unload(state: EmulatorState, request: Request) -> Response:
    body = _body(request)
    identifier = body.get("instance_id")
    if not isinstance(identifier, str) or not identifier:
        raise errors.v1_error(
            400, "invalid_request", '"instance_id" is required', code="missing_required_parameter",
            param="instance_id",
        )
    if state.engine.unload(identifier) is None:
        raise errors.v1_instance_not_found(identifier)
    return json_response({"instance_id": identifier})


def _input_text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        return " ".join(str(p.get("content", "")) for p in raw if isinstance(p, dict))
    return ""


def chat(state: EmulatorState, request: Request) -> Response:
    body = _body(request)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise errors.v1_missing_model()
    if state.engine.find_loaded(name) is None and state.catalog.find(name) is None:
        raise errors.v1_model_not_found(name)
    # The docs say the model "will be automatically loaded if it is not already", whatever the JIT setting;
    # a load this request starts uses its `context_length`.
    ctx = body.get("context_length")
    context_length = ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None
    target = state.resolve(name, kind="llm", jit=True, context_length=context_length)
    prompt = _input_text(body.get("input"))
    if body.get("stream"):
        return Response(content_type=SSE_TYPE, stream=_chat_stream(state, target, prompt, body))
    started = time.monotonic()
    try:
        instance = state.ready(target)
    except LoadError as exc:
        raise errors.v1_load_failed(str(exc)) from exc
    load_time = time.monotonic() - started if target.owns_job else None
    return json_response(_chat_result(state, instance, prompt, body, load_time))


def _chat_result(
    state: EmulatorState, instance: Instance, prompt: str, body: dict[str, Any], load_time: float | None
) -> dict[str, Any]:
    pieces, _ = content.reply_tokens(instance.identifier, prompt, body.get("max_output_tokens"))
    stats: dict[str, Any] = {
        "input_tokens": content.count_tokens(prompt) + 4,
        "total_output_tokens": len(pieces),
        "reasoning_output_tokens": 0,
        "tokens_per_second": 51.43,
        "time_to_first_token_seconds": 0.111,
    }
    if load_time is not None:
        stats["model_load_time_seconds"] = round(load_time, 3)
    result: dict[str, Any] = {
        "model_instance_id": instance.identifier,
        "output": [{"type": "message", "content": "".join(pieces)}],
        "stats": stats,
    }
    if body.get("store", True):
        result["response_id"] = content.random_id("resp_", 16)
    return result


def _chat_stream(state: EmulatorState, target: Target, prompt: str, body: dict[str, Any]) -> Iterator[bytes]:
    ident = target.identifier
    yield content.sse_event("chat.start", {"type": "chat.start", "model_instance_id": ident})
    load_time: float | None = None
    if target.needs_load:
        started = time.monotonic()
        if target.owns_job:
            yield content.sse_event("model_load.start", {"type": "model_load.start", "model_instance_id": ident})
        try:
            for progress in state.progress(target):
                if target.owns_job:
                    yield content.sse_event(
                        "model_load.progress",
                        {"type": "model_load.progress", "model_instance_id": ident, "progress": round(progress, 4)},
                    )
        except LoadError as exc:
            error = {"type": "model_load_failed", "message": str(exc)}
            yield content.sse_event("error", {"type": "error", "error": error})
            return
        except ConnectionLost as exc:
            raise DropStream() from exc
        load_time = time.monotonic() - started
        if target.owns_job:
            yield content.sse_event(
                "model_load.end",
                {"type": "model_load.end", "model_instance_id": ident, "load_time_seconds": round(load_time, 3)},
            )
    instance = target.instance
    assert instance is not None
    state.engine.begin_use(instance)
    try:
        yield content.sse_event("prompt_processing.start", {"type": "prompt_processing.start"})
        first_wait = state.first_token_wait(instance.spec, content.count_tokens(prompt))
        if first_wait:
            time.sleep(first_wait)
        yield content.sse_event("prompt_processing.end", {"type": "prompt_processing.end"})
        result = _chat_result(state, instance, prompt, body, load_time if target.owns_job else None)
        pieces, _ = content.reply_tokens(instance.identifier, prompt, body.get("max_output_tokens"))
        yield content.sse_event("message.start", {"type": "message.start"})
        token_wait = state.token_wait(instance.spec)
        for piece in pieces:
            yield content.sse_event("message.delta", {"type": "message.delta", "content": piece})
            if token_wait:
                time.sleep(token_wait)
        yield content.sse_event("message.end", {"type": "message.end"})
        yield content.sse_event("chat.end", {"type": "chat.end", "result": result})
    finally:
        state.engine.end_use(instance)


# --- downloads (DOCS `2_rest/download.md`, `download-status.md`) ------------------------------------------
DOWNLOAD_STATUS_PREFIX = "/api/v1/models/download/status/"


def download(state: EmulatorState, request: Request) -> Response:
    body = _body(request)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise errors.v1_missing_model()
    state.tick_downloads()
    if state.downloads.find_downloaded(name) is not None:
        return json_response({"status": "already_downloaded"})
    offered = state.downloads.find_offered(name)
    if offered is None:
        raise errors.v1_error(
            404, "model_not_found", f'Model "{name}" was not found in the LM Studio catalog.',
            code="model_not_found", param="model",
        )
    job = state.start_download(offered)
    answer = job.to_json()
    return json_response({k: answer[k] for k in ("job_id", "status", "total_size_bytes", "started_at")})


def download_status(state: EmulatorState, request: Request) -> Response:
    job_id = request.path[len(DOWNLOAD_STATUS_PREFIX):]
    state.tick_downloads()
    job = state.downloads.job(job_id)
    if job is None:
        raise errors.v1_error(404, "job_not_found", f'No download job with id "{job_id}".', param="job_id")
    return json_response(job.to_json())
