from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.emulator.helpers import client_for
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def chat(client: httpx.Client, model: str | None = QWEN, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"messages": MESSAGES, **extra}
    if model is not None:
        body["model"] = model
    return client.post("/v1/chat/completions", json=body)


def sse_payloads(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def test_chat_non_streaming_shape(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    r = chat(client)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == QWEN and body["system_fingerprint"] == QWEN
    assert body["stats"] == {}
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant" and "Say hello" in choice["message"]["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert chat(client).json()["choices"][0]["message"]["content"] == choice["message"]["content"]


def test_chat_streaming_sse(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    r = chat(client, stream=True, stream_options={"include_usage": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == QWEN for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert "Say hello" in text
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finals[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0 and chunks[-1]["choices"] == []


def test_stream_without_include_usage_has_no_usage(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    chunks = [json.loads(p) for p in sse_payloads(chat(client, stream=True).text)[:-1]]
    assert all("usage" not in c for c in chunks)


def test_max_tokens_truncates_with_length(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    body = chat(client, max_tokens=2).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_jit_load_blocks_for_load_time_and_evicts_previous(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.2)
    with client_for(emu.api_url) as c:
        started = time.monotonic()
        assert chat(c, QWEN).json()["model"] == QWEN
        assert time.monotonic() - started >= 0.2
        manual = emu.load("llama-3.2-3b-instruct")
        started = time.monotonic()
        assert chat(c, GEMMA).json()["model"] == GEMMA
        assert time.monotonic() - started >= 0.2
        # Auto-evict removed the previous JIT model but not the manually loaded one.
        assert sorted(m["identifier"] for m in emu.loaded()) == sorted([GEMMA, manual])
        # a request for the loaded model is served by that instance: no second load, no `:2`
        before = {i.identifier: i.loaded_at for i in emu.state.engine.loaded()}
        chat(c, GEMMA)
        assert {i.identifier: i.loaded_at for i in emu.state.engine.loaded()} == before


def test_jit_without_auto_evict_keeps_both(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(auto_evict=False)
    with client_for(emu.api_url) as c:
        chat(c, QWEN)
        chat(c, GEMMA)
    assert {m["identifier"] for m in emu.loaded()} == {QWEN, GEMMA}


def test_concurrent_jit_requests_share_one_load(emulator_factory: EmulatorFactory) -> None:
    import concurrent.futures

    emu = emulator_factory(load_seconds=0.2)

    def one(_: int) -> str:
        with client_for(emu.api_url) as c:
            return str(chat(c, QWEN).json()["model"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(one, range(4))) == {QWEN}
    assert [m["identifier"] for m in emu.loaded()] == [QWEN]


def test_jit_requests_arriving_together_never_start_two_loads(
    emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window between "no JIT load of it runs" and starting one is widened to 50 ms, as a busy machine's thread
    # switch would: requests that arrive together must still share one load.
    import concurrent.futures

    emu = emulator_factory(load_seconds=0.2)
    engine = emu.state.engine
    looked_up = engine.pending_jit_job

    def slow_lookup(key: str) -> Any:
        found = looked_up(key)
        time.sleep(0.05)
        return found

    monkeypatch.setattr(engine, "pending_jit_job", slow_lookup)
    together = threading.Barrier(4)

    def one(_: int) -> str:
        with client_for(emu.api_url) as c:
            together.wait()
            return str(chat(c, QWEN).json()["model"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(one, range(4))) == {QWEN}
    assert [m["identifier"] for m in emu.loaded()] == [QWEN]


def test_load_in_progress_is_invisible(emulator_factory: EmulatorFactory) -> None:

    emu = emulator_factory(load_seconds=0.25)
    t = threading.Thread(target=lambda: chat(client_for(emu.api_url), QWEN))
    t.start()
    time.sleep(0.1)
    with client_for(emu.api_url) as c:
        v0 = {m["id"]: m["state"] for m in c.get("/api/v0/models").json()["data"]}
        assert v0[QWEN] == "not-loaded"
        v1 = {m["key"]: m["loaded_instances"] for m in c.get("/api/v1/models").json()["models"]}
        assert v1[QWEN] == []
    assert emu.loaded() == []
    t.join()
    assert [m["identifier"] for m in emu.loaded()] == [QWEN]


def test_jit_ttl_from_request_and_default(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(default_ttl=0.2, load_seconds=0.0)
    with client_for(emu.api_url) as c:
        chat(c, QWEN, ttl=30)
        assert emu.loaded()[0]["ttlMs"] == 30_000
        emu.unload_all()
        chat(c, QWEN)
        assert emu.loaded()[0]["ttlMs"] == 200
        manual = emu.load(GEMMA)
        time.sleep(0.3)
        chat(c, manual)  # served by the manual instance; the idle JIT one has expired
        assert [m["identifier"] for m in emu.loaded()] == [manual]


def test_ttl_expires_without_requests(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.0)
    with client_for(emu.api_url) as c:
        chat(c, QWEN, ttl=0.2)
    deadline = time.monotonic() + 2
    while emu.state.engine.loaded() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.state.engine.loaded() == []


def test_single_loaded_model_serves_any_name_quirk_619(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(jit=False)
    ident = emu.load(GEMMA)
    with client_for(emu.api_url) as c:
        body = chat(c, "gpt-4o").json()
        assert body["model"] == ident
        assert chat(c, None).json()["model"] == ident
        emu.load(QWEN)
        r = chat(c, "gpt-4o")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "model_not_found"
        assert r.json()["error"]["message"].startswith('Invalid model identifier "gpt-4o".')


@pytest.mark.parametrize(
    ("version", "status", "string_body"), [("0.3.9", 404, True), ("0.3.31", 400, True), ("0.4.8", 400, False)]
)
def test_no_models_loaded_error_by_version(
    emulator_factory: EmulatorFactory, version: str, status: int, string_body: bool
) -> None:
    emu = emulator_factory(version=version, jit=False)
    r = chat(client_for(emu.api_url), QWEN)
    assert r.status_code == status
    message = "No models loaded. Please load a model in the developer page or use the 'lms load' command."
    if string_body:
        assert r.json() == {"error": message}
    else:
        assert r.json() == {
            "error": {"message": message, "type": "invalid_request_error", "param": "model", "code": None}
        }


def test_unknown_model_error_legacy_404(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.14")
    r = chat(client_for(emu.api_url), "default")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "model" and err["code"] == "model_not_found"
    assert err["message"].startswith('Model "default" not found. Please specify a valid model.\n\nYour models:\n\n')
    assert QWEN in err["message"]


def test_unknown_model_error_modern_400(client: httpx.Client) -> None:
    r = chat(client, "o4-mini")
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(
        'Invalid model identifier "o4-mini". Please specify a valid downloaded model (e.g., '
    )


def test_jit_load_failure(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(fail_loads={"openai/gpt-oss-20b": "Error loading model."})
    r = chat(client_for(emu.api_url), "openai/gpt-oss-20b")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == 'Failed to load model "openai/gpt-oss-20b". Error: Error loading model.'
    assert emu.loaded() == []


def test_v0_chat_completions_has_stats(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    body = client.post("/api/v0/chat/completions", json={"model": QWEN, "messages": MESSAGES}).json()
    assert set(body["stats"]) >= {"tokens_per_second", "time_to_first_token", "generation_time", "stop_reason"}
    assert body["model_info"] == {"arch": "qwen3", "quant": "Q4_K_M", "format": "gguf", "context_length": 4096}
    assert body["runtime"]["supported_formats"] == ["gguf"]


def test_completions_and_embeddings(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN)
    r = client.post("/v1/completions", json={"model": QWEN, "prompt": "Once upon"})
    assert r.json()["object"] == "text_completion" and r.json()["choices"][0]["text"]
    r = client.post("/api/v0/completions", json={"model": QWEN, "prompt": "Once upon"})
    assert "stats" in r.json() and "model_info" in r.json()
    emb = "text-embedding-nomic-embed-text-v1.5"
    r = client.post("/v1/embeddings", json={"model": emb, "input": ["a", "b"]})
    body = r.json()
    assert body["object"] == "list" and len(body["data"]) == 2 and body["model"] == emb
    assert len(body["data"][0]["embedding"]) == 768
    r = client.post("/api/v0/embeddings", json={"model": emb, "input": "a"})
    assert r.json()["model"] == f"{emb}@q4_k_m"


def test_token_delay_slows_streaming(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(token_delay=0.02)
    emu.load(QWEN)
    started = time.monotonic()
    chat(client_for(emu.api_url), QWEN, stream=True)
    assert time.monotonic() - started >= 0.15


# ---- a request while an explicit load of the same model runs ------------------------------------------

LLAMA = "llama-3.2-3b-instruct"


def _load_in_background(emu: Emulator, key: str, **body: Any) -> threading.Thread:
    """POST /api/v1/models/load (it answers when the load has finished) from a thread; returns once the
    emulator lists the load as in progress."""
    thread = threading.Thread(target=lambda: httpx.Client(base_url=emu.api_url, timeout=600).post(
        "/api/v1/models/load", json={"model": key, **body}))
    thread.start()
    deadline = time.monotonic() + 30
    while not [j for j in emu.snapshot()["loading"] if j["model"] == key] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [j for j in emu.snapshot()["loading"] if j["model"] == key]
    return thread


def test_finish_loads_completes_a_held_load(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=3600)
    thread = _load_in_background(emu, QWEN, context_length=8192)
    assert emu.loaded() == []
    assert emu.finish_loads() == 1
    thread.join(30)
    assert [(m["identifier"], m["contextLength"]) for m in emu.loaded()] == [(QWEN, 8192)]
    assert emu.finish_loads() == 0


@pytest.mark.parametrize(("others", "error"), [
    ((QWEN, LLAMA), f'Invalid model identifier "{GEMMA}".'),
    ((), "No models loaded."),
])
def test_jit_off_a_model_being_loaded_is_refused_until_its_load_ends(
    emulator_factory: EmulatorFactory, others: tuple[str, ...], error: str
) -> None:
    emu = emulator_factory(jit=False, load_seconds=3600)
    for key in others:
        emu.load(key)
    thread = _load_in_background(emu, GEMMA, context_length=16384)
    with client_for(emu.api_url) as c:
        r = chat(c, GEMMA)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(error), r.text
        emu.finish_loads()
        thread.join(30)
        r = chat(c, GEMMA)
        assert r.status_code == 200 and r.json()["model"] == GEMMA


def test_jit_on_a_request_during_an_explicit_load_starts_a_second_instance(
    emulator_factory: EmulatorFactory,
) -> None:
    """Nothing says LM Studio's JIT joins a load another client asked for: the conservative reading."""
    emu = emulator_factory(jit=True, load_seconds=3600)
    explicit = _load_in_background(emu, GEMMA, context_length=16384)
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(chat(httpx.Client(base_url=emu.api_url, timeout=600), GEMMA)))
    request.start()
    deadline = time.monotonic() + 30
    while len(emu.snapshot()["loading"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(j["identifier"] for j in emu.snapshot()["loading"]) == [GEMMA, f"{GEMMA}:2"]
    emu.finish_loads()
    explicit.join(30)
    request.join(30)
    assert answers and answers[0].status_code == 200 and answers[0].json()["model"] == f"{GEMMA}:2"
    assert sorted((m["identifier"], m["contextLength"]) for m in emu.loaded()) == [
        (GEMMA, 16384), (f"{GEMMA}:2", 4096)]
