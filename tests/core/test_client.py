"""The LM Studio client against the emulator over real HTTP: every API generation and failure kind."""

from __future__ import annotations

import pytest

from lmstudio_tray.core.errors import LMStudioError
from lmstudio_tray.core.lmstudio.client import LMStudioClient, LoadResponse, split_instance_id
from lmstudio_tray.core.lmstudio.load_options import LoadOptions, UnsupportedLoadOptions
from lmstudio_tray.core.models import ApiFlavor, FailureKind
from lmstudio_tray.emulator import Emulator, Fault
from tests.emulator_fixtures import EmulatorFactory

TOKEN = "sk-lm-abcdEFGH:abcdefghijABCDEFGHij"


async def listing_of(emu: Emulator, **kw: object) -> tuple[LMStudioClient, object]:
    client = LMStudioClient(emu.api_url, **kw)  # type: ignore[arg-type]
    try:
        return client, await client.list_models()
    finally:
        await client.aclose()


async def test_v1_listing_has_loaded_instances_and_specs(emulator: Emulator) -> None:
    emulator.load("qwen/qwen3-4b-2507", context_length=8192)
    emulator.load("qwen/qwen3-4b-2507")  # a second copy: qwen/qwen3-4b-2507:2
    client, listing = await listing_of(emulator)
    assert listing.api is ApiFlavor.REST_V1  # type: ignore[attr-defined]
    models = {m.key: m for m in listing.models}  # type: ignore[attr-defined]
    qwen = models["qwen/qwen3-4b-2507"]
    assert [i.id for i in qwen.instances] == ["qwen/qwen3-4b-2507", "qwen/qwen3-4b-2507:2"]
    assert qwen.instances[0].context_length == 8192
    assert qwen.size_bytes and qwen.max_context_length and "tool_use" in qwen.capabilities
    assert not models["openai/gpt-oss-20b"].loaded
    assert models["text-embedding-nomic-embed-text-v1.5"].type == "embedding"
    assert client.calls == 1


async def test_old_lmstudio_falls_back_to_v0_by_body_not_status(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.20")
    emu.load("google/gemma-3-12b")
    client, listing = await listing_of(emu)
    assert listing.api is ApiFlavor.REST_V0  # type: ignore[attr-defined]
    gemma = next(m for m in listing.models if m.key == "google/gemma-3-12b")  # type: ignore[attr-defined]
    assert gemma.loaded and gemma.instances[0].context_length
    assert listing.jit is True  # type: ignore[attr-defined]  # unloaded models listed: JIT on
    assert client.calls == 2  # /api/v1/models answered 200 + "Unexpected endpoint", then v0


async def test_v0_groups_colon_instances_under_their_key(emulator_factory: EmulatorFactory) -> None:
    # How v0 lists a second instance is not documented; if it lists `key:2` as its own entry, it is
    # still one model with two instances.
    emu = emulator_factory(version="0.3.20")
    entry = {
        "id": "google/gemma-3-12b",
        "object": "model",
        "type": "vlm",
        "state": "loaded",
        "max_context_length": 131072,
        "loaded_context_length": 4096,
    }
    body = {"object": "list", "data": [entry, {**entry, "id": "google/gemma-3-12b:2"}]}
    emu.add_fault(Fault(path="/api/v0/models", kind="status", status=200, body=body))
    _, listing = await listing_of(emu)
    gemma = [m for m in listing.models if m.key == "google/gemma-3-12b"]  # type: ignore[attr-defined]
    assert len(gemma) == 1
    assert [i.id for i in gemma[0].instances] == ["google/gemma-3-12b", "google/gemma-3-12b:2"]
    assert "vision" in gemma[0].capabilities


async def test_openai_listing_is_the_last_resort(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.20", jit=False)
    emu.load("llama-3.2-3b-instruct")
    emu.add_fault(
        Fault(path="/api/v0/models", kind="error_body", body="Unexpected endpoint or method. (GET /api/v0/models)")
    )
    _, listing = await listing_of(emu)
    assert listing.api is ApiFlavor.OPENAI  # type: ignore[attr-defined]
    assert [m.key for m in listing.models] == ["llama-3.2-3b-instruct"]  # type: ignore[attr-defined]


async def test_missing_token_is_auth_failed_and_token_is_sent(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(auth_token=TOKEN)
    with pytest.raises(LMStudioError) as err:
        await listing_of(emu)
    assert err.value.kind is FailureKind.AUTH_FAILED
    assert "API token is required" in err.value.message
    _, listing = await listing_of(emu, token=TOKEN)
    assert listing.models  # type: ignore[attr-defined]
    assert emu.requests[-1].headers.get("authorization") == f"Bearer {TOKEN}"


async def test_a_token_with_a_line_break_is_refused_before_sending(emulator: Emulator) -> None:
    sent = len(emulator.requests)
    with pytest.raises(LMStudioError) as err:
        await listing_of(emulator, token="sk-lm-abc\r\nX-Injected: 1")
    assert err.value.kind is FailureKind.AUTH_FAILED
    assert "line break" in err.value.message and "sk-lm-abc" not in err.value.message
    assert len(emulator.requests) == sent  # nothing went out


async def test_stopped_server_is_offline(emulator: Emulator) -> None:
    emulator.stop_server()
    with pytest.raises(LMStudioError) as err:
        await listing_of(emulator)
    assert err.value.kind is FailureKind.OFFLINE


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(path="/api/v1/models", kind="status", status=500, times=None), FailureKind.SERVER_ERROR),
        (Fault(path="/api/v1/models", kind="invalid_json"), FailureKind.BAD_RESPONSE),
        # the body stops short of its Content-Length: the connection broke, not the JSON
        (Fault(path="/api/v1/models", kind="truncate"), FailureKind.SERVER_ERROR),
        (Fault(path="/api/v1/models", kind="drop"), FailureKind.SERVER_ERROR),
        (Fault(path="/api/v1/models", kind="latency", delay=1.0), FailureKind.OFFLINE),
        (Fault(path="/api/v1/models", kind="hang"), FailureKind.OFFLINE),
    ],
    ids=["500", "invalid-json", "truncated", "dropped", "slow", "hung"],
)
async def test_every_fault_maps_to_one_failure_kind(emulator: Emulator, fault: Fault, kind: FailureKind) -> None:
    emulator.add_fault(fault)
    # v0 and /v1/models fail the same way, so the fallback cannot hide the fault
    for path in ("/api/v0/models", "/v1/models"):
        emulator.add_fault(Fault(path=path, kind=fault.kind, status=fault.status, delay=fault.delay))
    with pytest.raises(LMStudioError) as err:
        await listing_of(emulator, timeout=0.3)
    assert err.value.kind is kind
    emulator.clear_faults()


async def test_200_with_error_body_is_a_server_error(emulator: Emulator) -> None:
    for path in ("/api/v1/models", "/api/v0/models", "/v1/models"):
        emulator.add_fault(Fault(path=path, kind="error_body", body="Something broke inside"))
    with pytest.raises(LMStudioError) as err:
        await listing_of(emulator)
    assert err.value.kind is FailureKind.SERVER_ERROR
    assert "Something broke inside" in err.value.message


async def test_wrongly_typed_listing_is_bad_response(emulator: Emulator) -> None:
    for path in ("/api/v1/models", "/api/v0/models", "/v1/models"):
        emulator.add_fault(Fault(path=path, kind="status", status=200, body={"models": "nope", "data": 3}))
    with pytest.raises(LMStudioError) as err:
        await listing_of(emulator)
    assert err.value.kind is FailureKind.BAD_RESPONSE


async def test_load_and_unload_over_rest_v1(emulator: Emulator) -> None:
    client = LMStudioClient(emulator.api_url, timeout=5)
    try:
        first = await client.load("qwen/qwen3-4b-2507", context_length=4096)
        second = await client.load("qwen/qwen3-4b-2507")
        assert (first.instance_id, first.context_length) == ("qwen/qwen3-4b-2507", 4096)
        assert second.instance_id == "qwen/qwen3-4b-2507:2"  # REST loads are not idempotent
        await client.unload("qwen/qwen3-4b-2507:2")
        assert [r["identifier"] for r in emulator.loaded()] == ["qwen/qwen3-4b-2507"]
        with pytest.raises(LMStudioError):
            await client.load("no/such-model")
    finally:
        await client.aclose()


async def test_load_on_old_lmstudio_says_what_to_do(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.20")
    client = LMStudioClient(emu.api_url)
    try:
        with pytest.raises(LMStudioError, match=r"0\.4\.0"):
            await client.load("google/gemma-3-12b")
    finally:
        await client.aclose()


async def test_greeting(emulator: Emulator) -> None:
    client = LMStudioClient(emulator.api_url)
    try:
        assert await client.greeting()
        emulator.stop_server()
        assert not await client.greeting()
    finally:
        await client.aclose()


async def test_chat_load_events_report_lmstudio_progress(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.3)
    client = LMStudioClient(emu.api_url)
    try:
        progress = [p async for p in client.chat_load_events("qwen/qwen3-4b-2507")]
    finally:
        await client.aclose()
    assert progress and progress[-1] == 1.0
    assert progress == sorted(progress)
    assert any(r["modelKey"] == "qwen/qwen3-4b-2507" for r in emu.loaded())


async def test_load_with_rest_options_reports_what_lm_studio_applied(emulator: Emulator) -> None:
    client = LMStudioClient(emulator.api_url, timeout=5)
    try:
        options = LoadOptions(context_length=8192, eval_batch_size=256, flash_attention=False, num_experts=2,
                              offload_kv_cache_to_gpu=False, ttl=900)
        loaded = await client.load("openai/gpt-oss-20b", options=options)
        assert loaded == LoadResponse(
            "openai/gpt-oss-20b", loaded.seconds, 8192, type="llm", eval_batch_size=256, flash_attention=False,
            num_experts=2, offload_kv_cache_to_gpu=False,
        )
        (record,) = emulator.loaded()
        assert record["ttlMs"] == 900_000 and record["contextLength"] == 8192
        embedding = await client.load("text-embedding-nomic-embed-text-v1.5")
        assert embedding.type == "embedding" and embedding.flash_attention is None
        with pytest.raises(UnsupportedLoadOptions) as err:  # no REST field for these: `lms load` has them
            await client.load("openai/gpt-oss-20b", options=LoadOptions(gpu=0.5, parallel=2, identifier="x"))
        assert err.value.options == ("gpu", "parallel", "identifier") and "`lms load`" in str(err.value)
        assert len(emulator.loaded()) == 2
    finally:
        await client.aclose()


async def test_a_rest_load_that_does_not_fit(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(memory_bytes=4 * 1024**3)
    client = LMStudioClient(emu.api_url, timeout=5)
    try:
        with pytest.raises(LMStudioError, match="insufficient system resources") as err:
            await client.load("openai/gpt-oss-20b")
        assert err.value.status == 400
    finally:
        await client.aclose()


async def test_chat_load_events_load_with_the_context_asked_for(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.2)
    client = LMStudioClient(emu.api_url)
    try:
        progress = [p async for p in client.chat_load_events("qwen/qwen3-4b-2507", context_length=32768)]
        assert progress and progress[-1] == 1.0
        assert [r["contextLength"] for r in emu.loaded()] == [32768]
        emu.update(memory_bytes=1024**3)  # the next load is refused: an `error` event, a typed error
        with pytest.raises(LMStudioError, match="insufficient system resources") as err:
            [p async for p in client.chat_load_events("google/gemma-3-12b")]
        assert err.value.kind is FailureKind.SERVER_ERROR
    finally:
        await client.aclose()


def test_split_instance_id() -> None:
    assert split_instance_id("a/b:2") == ("a/b", 2)
    assert split_instance_id("a/b") == ("a/b", 1)
    assert split_instance_id("weird:tag") == ("weird:tag", 1)
