"""Load options as LM Studio stores and reports them (REST v1 load, `lms load` flags), the memory estimate of
`lms load --estimate-only`, the guardrails that refuse a model that does not fit, and a chat-triggered load
with its context length and progress events."""

from __future__ import annotations

import json
import os
import subprocess

import httpx

from lmstudio_tray.emulator import Emulator
from lmstudio_tray.emulator.state.engine import LoadOptions
from tests.emulator.helpers import client_for
from tests.emulator_fixtures import EmulatorFactory, LmsHome

QWEN = "qwen/qwen3-4b-2507"
GPT_OSS = "openai/gpt-oss-20b"
MLX = "llama-3.2-3b-instruct"
FITS = "Estimate: This model may be loaded based on your resource guardrails settings."
FAILS = "Estimate: This model will fail to load based on your resource guardrails settings."


def lms(home: LmsHome, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(home.lms), *args], capture_output=True, text=True, timeout=30, env={**os.environ})


def test_rest_load_applies_the_documented_options(client: httpx.Client, emulator: Emulator) -> None:
    body = {"model": GPT_OSS, "context_length": 8192, "eval_batch_size": 256, "flash_attention": False,
            "num_experts": 2, "offload_kv_cache_to_gpu": False, "echo_load_config": True,
            "parallel": 8, "gpu": 0.5, "identifier": "mine"}  # not REST load fields: ignored like LM Studio does
    answer = client.post("/api/v1/models/load", json=body).json()
    assert answer["instance_id"] == GPT_OSS
    assert answer["load_config"] == {"context_length": 8192, "eval_batch_size": 256, "flash_attention": False,
                                     "num_experts": 2, "offload_kv_cache_to_gpu": False}
    listed = next(m for m in client.get("/api/v1/models").json()["models"] if m["key"] == GPT_OSS)
    assert listed["loaded_instances"] == [{"id": GPT_OSS, "config": {
        "context_length": 8192, "eval_batch_size": 256, "parallel": 4, "flash_attention": False,
        "num_experts": 2, "offload_kv_cache_to_gpu": False}}]


def test_rest_load_defaults_per_engine(client: httpx.Client) -> None:
    gguf = client.post("/api/v1/models/load", json={"model": QWEN, "echo_load_config": True}).json()
    assert gguf["load_config"] == {"context_length": 4096, "eval_batch_size": 512, "flash_attention": True,
                                   "offload_kv_cache_to_gpu": True}  # no experts: not a mixture of experts
    mlx = client.post("/api/v1/models/load", json={"model": MLX, "echo_load_config": True}).json()
    assert mlx["load_config"] == {"context_length": 4096}  # the llama.cpp knobs do not apply to MLX
    listed = next(m for m in client.get("/api/v1/models").json()["models"] if m["key"] == MLX)
    assert listed["loaded_instances"][0]["config"] == {"context_length": 4096, "parallel": 4}


def test_rest_load_rejects_options_of_the_wrong_type(client: httpx.Client) -> None:
    for name, value in (("flash_attention", "yes"), ("eval_batch_size", 0), ("context_length", "big")):
        r = client.post("/api/v1/models/load", json={"model": QWEN, name: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == name, name


def test_lms_load_flags_are_stored_and_reported(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    r = lms(lms_home, "load", QWEN, "--gpu", "0.25", "--parallel", "2", "--ttl", "600", "--identifier", "q",
            "-c", "16384")
    assert r.returncode == 0, r.stderr
    (ps,) = json.loads(lms(lms_home, "ps", "--json").stdout)
    assert (ps["identifier"], ps["contextLength"], ps["parallel"], ps["ttlMs"]) == ("q", 16384, 2, 600_000)
    (instance,) = emu.state.engine.loaded()
    assert instance.options.gpu == 0.25  # reported by no listing; the SDK's load config would show it
    with client_for(emu.api_url) as c:
        listed = next(m for m in c.get("/api/v1/models").json()["models"] if m["key"] == QWEN)
    assert listed["loaded_instances"][0]["config"]["parallel"] == 2
    assert lms(lms_home, "load", QWEN, "--gpu", "max", "-y").returncode == 0
    assert emu.state.engine.instance(QWEN).options.gpu == 1.0  # type: ignore[union-attr]
    assert lms(lms_home, "load", QWEN, "--gpu", "off", "-y").returncode == 0
    assert emu.state.engine.instance(f"{QWEN}:2").options.gpu == 0.0  # type: ignore[union-attr]


def test_lms_load_flag_errors(lms_home: LmsHome) -> None:
    for args, fragment in ((("--gpu", "2"), "Number out of range, must be between 0 and 1"),
                           (("--gpu", "lots"), "Not a number"), (("--parallel", "0"), "--parallel"),
                           (("--ttl", "0"), "--ttl")):
        r = lms(lms_home, "load", QWEN, *args)
        assert r.returncode == 2 and fragment in r.stderr, args
    r = lms(lms_home, "load", "no-such-model", "-y")
    assert r.returncode == 1 and r.stderr.startswith('Model not found\n\nNo model found that matches model key "no')


def test_estimate_only_prints_what_lms_prints_and_loads_nothing(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    r = lms(lms_home, "load", GPT_OSS, "--estimate-only")
    assert r.returncode == 0 and r.stdout == ""
    gib = emu.estimate(GPT_OSS).total_bytes / 1024**3
    assert r.stderr.splitlines() == [
        f"Model: {GPT_OSS}", f"Estimated GPU Memory:   {gib:.2f} GiB", f"Estimated Total Memory: {gib:.2f} GiB",
        "", FITS,
    ]
    r = lms(lms_home, "load", GPT_OSS, "--estimate-only", "-c", "32768", "--gpu", "0.5")
    lines = r.stderr.splitlines()
    assert lines[:3] == [f"Model: {GPT_OSS}", "Context Length: 32,768", "GPU Offload: 50%"]
    assert lines[5:] == ["Confidence: LOW", "", FITS]  # a split between GPU and CPU is a guess
    estimate = emu.estimate(GPT_OSS, context_length=32768, gpu=0.5)
    assert estimate.gpu_bytes < estimate.total_bytes and estimate.confidence == "low"
    assert emu.loaded() == []


def test_a_model_that_does_not_fit(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(memory_bytes=8 * 1024**3)
    r = lms(lms_home, "load", GPT_OSS, "--estimate-only")
    assert r.returncode == 0 and r.stderr.splitlines()[-1] == FAILS
    r = lms(lms_home, "load", GPT_OSS, "-y")
    assert r.returncode == 1 and r.stderr.startswith(
        "Error: Model loading was stopped due to insufficient system resources. Under the current settings, this "
        "model requires approximately 12.61 GB of memory"
    )
    assert emu.loaded() == []
    # a smaller context is what makes a model fit: the estimate grows with it
    emu.update(memory_bytes=emu.estimate(QWEN, context_length=8192).total_bytes)
    assert lms(lms_home, "load", QWEN, "-c", "8192", "--estimate-only").stderr.splitlines()[-1] == FITS
    assert lms(lms_home, "load", QWEN, "-c", "16384", "--estimate-only").stderr.splitlines()[-1] == FAILS
    with client_for(emu.api_url) as c:
        refused = c.post("/api/v1/models/load", json={"model": QWEN, "context_length": 16384})
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "model_load_failed"
        assert c.post("/api/v1/models/load", json={"model": QWEN, "context_length": 8192}).status_code == 200


def test_estimate_grows_with_context_vision_and_gpu_share(emulator: Emulator) -> None:
    small, big = emulator.estimate(QWEN, context_length=4096), emulator.estimate(QWEN, context_length=65536)
    assert big.total_bytes > small.total_bytes
    vision = emulator.estimate("qwen/qwen2.5-vl-7b")
    spec = next(s for s in emulator.catalog if s.key == "qwen/qwen2.5-vl-7b")
    assert vision.total_bytes > spec.size_bytes * 1.1  # the projector is counted
    assert emulator.estimate(QWEN, gpu=0.0).gpu_bytes == 0 and emulator.estimate(QWEN, gpu=0.0).confidence == "high"


def test_chat_triggered_load_uses_its_context_length_and_streams_progress(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.2)
    with client_for(emu.api_url) as c:
        body = {"model": QWEN, "input": "hi", "stream": True, "context_length": 16384}
        text = c.post("/api/v1/chat", json=body).text
    kinds = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert kinds[:2] == ["chat.start", "model_load.start"] and "model_load.end" in kinds
    assert kinds.count("model_load.progress") >= 2
    assert [i["contextLength"] for i in emu.loaded()] == [16384]


def test_emulator_load_takes_options(emulator: Emulator) -> None:
    emulator.load(QWEN, options=LoadOptions(parallel=1, flash_attention=False))
    (record,) = emulator.loaded()
    assert record["parallel"] == 1
    assert emulator.state.engine.loaded()[0].options.flash_attention is False
