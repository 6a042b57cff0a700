from __future__ import annotations

from typing import Any

import httpx

from lmstudio_tray.emulator import Emulator, ModelSpec, default_catalog
from tests.emulator.helpers import client_for, http
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"


def ids(client: httpx.Client) -> list[str]:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    for item in body["data"]:
        assert set(item) == {"id", "object", "owned_by"}
    return [m["id"] for m in body["data"]]


def test_default_catalog_covers_required_kinds() -> None:
    catalog = default_catalog()
    assert 6 <= len(catalog) <= 8
    by_key = {m.key: m for m in catalog}
    assert by_key[QWEN].tool_use and by_key[QWEN].quantization == "Q4_K_M"
    assert by_key["google/gemma-3-12b"].variants and by_key["google/gemma-3-12b"].selected_variant
    assert any(m.vision for m in catalog)
    assert any(m.format == "mlx" and "/" not in m.key for m in catalog)
    assert "openai/gpt-oss-20b" in by_key
    assert any(m.type == "embedding" for m in catalog)


def test_v1_models_jit_on_lists_loaded_then_downloaded(emulator: Emulator) -> None:
    emulator.load(QWEN)
    emulator.load(QWEN)
    with client_for(emulator.api_url) as c:
        got = ids(c)
    assert got[:2] == [QWEN, f"{QWEN}:2"]
    assert set(got[2:]) == {m.key for m in default_catalog()} - {QWEN}


def test_v1_models_jit_off_lists_only_loaded(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(jit=False)
    with client_for(emu.api_url) as c:
        assert c.get("/v1/models").json() == {"data": [], "object": "list"}
        emu.load("openai/gpt-oss-20b", identifier="big")
        assert ids(c) == ["big"]
        emu.update(jit=True)
        assert len(ids(c)) == len(default_catalog()) + 1


def test_v0_models_jit_dependent(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load("google/gemma-3-12b", context_length=8192)
    data = client.get("/api/v0/models").json()["data"]
    by_id = {m["id"]: m for m in data}
    assert len(data) == len(default_catalog())
    gemma = by_id["google/gemma-3-12b"]
    assert gemma["state"] == "loaded" and gemma["loaded_context_length"] == 8192 and gemma["type"] == "vlm"
    qwen = by_id[QWEN]
    assert qwen["state"] == "not-loaded" and "loaded_context_length" not in qwen
    assert qwen["capabilities"] == ["tool_use"]
    assert "capabilities" not in gemma
    assert by_id["text-embedding-nomic-embed-text-v1.5"]["type"] == "embeddings"
    assert by_id["llama-3.2-3b-instruct"]["compatibility_type"] == "mlx"
    emulator.update(jit=False)
    data = client.get("/api/v0/models").json()["data"]
    assert [m["id"] for m in data] == ["google/gemma-3-12b"]


def test_v0_single_model_with_slash(client: httpx.Client) -> None:
    r = client.get(f"/api/v0/models/{QWEN}")
    assert r.status_code == 200
    assert r.json()["id"] == QWEN and r.json()["object"] == "model"
    missing = client.get("/api/v0/models/nope/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_v0_capabilities_absent_before_0_3_16(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.15")
    data = http.get(f"{emu.api_url}/api/v0/models").json()["data"]
    assert all("capabilities" not in m for m in data)


def _v1(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["key"]: m for m in client.get("/api/v1/models").json()["models"]}


def test_v1_rest_models_shapes(emulator: Emulator, client: httpx.Client) -> None:
    emulator.load(QWEN, context_length=16384)
    emulator.load(QWEN)
    emulator.load("text-embedding-nomic-embed-text-v1.5")
    models = _v1(client)
    assert len(models) == len(default_catalog())
    qwen = models[QWEN]
    assert qwen["type"] == "llm" and qwen["format"] == "gguf"
    assert qwen["quantization"] == {"name": "Q4_K_M", "bits_per_weight": 4}
    assert [i["id"] for i in qwen["loaded_instances"]] == [QWEN, f"{QWEN}:2"]
    assert qwen["loaded_instances"][0]["config"]["context_length"] == 16384
    assert qwen["capabilities"]["trained_for_tool_use"] is True
    assert "variants" not in qwen
    gemma = models["google/gemma-3-12b"]
    assert gemma["type"] == "llm" and gemma["capabilities"]["vision"] is True
    assert gemma["variants"] == ["google/gemma-3-12b@q4_k_m", "google/gemma-3-12b@q8_0"]
    assert gemma["selected_variant"] == "google/gemma-3-12b@q4_k_m"
    assert gemma["loaded_instances"] == []
    emb = models["text-embedding-nomic-embed-text-v1.5"]
    assert emb["type"] == "embedding"
    assert "architecture" not in emb and "capabilities" not in emb and "description" not in emb
    assert emb["loaded_instances"][0]["config"] == {"context_length": 2048}
    mlx = models["llama-3.2-3b-instruct"]
    assert mlx["format"] == "mlx"
    assert "reasoning" in models["openai/gpt-oss-20b"]["capabilities"]


def test_v1_models_lists_everything_even_with_jit_off(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(jit=False)
    with client_for(emu.api_url) as c:
        assert len(_v1(c)) == len(default_catalog())


def test_version_0_3_has_no_rest_v1(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.31")
    with client_for(emu.api_url) as c:
        r = c.get("/api/v1/models")
        assert r.status_code == 200
        assert r.json() == {"error": "Unexpected endpoint or method. (GET /api/v1/models)"}
        assert c.get("/api/v0/models").status_code == 200 and "data" in c.get("/api/v0/models").json()


def test_version_before_0_3_6_has_no_rest_v0(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.5")
    body = http.get(f"{emu.api_url}/api/v0/models").json()
    assert body == {"error": "Unexpected endpoint or method. (GET /api/v0/models)"}


def test_custom_catalog(emulator_factory: EmulatorFactory) -> None:
    spec = ModelSpec(key="acme/tiny", display_name="Tiny", publisher="acme", max_context_length=1024)
    emu = emulator_factory(catalog=[spec])
    assert ids(client_for(emu.api_url)) == ["acme/tiny"]
    assert ModelSpec.from_json(spec.to_json()) == spec
