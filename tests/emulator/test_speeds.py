"""Per-model speeds (`speed_scale`): each model reads, writes and loads at a speed its size and quantisation
decide, so a benchmark against the emulator has a known right answer. Waits are checked from below only."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from lmstudio_tray.emulator.state.catalog import ModelSpec, default_catalog
from lmstudio_tray.emulator.state.speed import speed_of
from tests.emulator.helpers import client_for
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"  # 2.5 GB, Q4_K_M
GEMMA = "google/gemma-3-12b"  # 8.1 GB, Q4_K_M
MESSAGES = [{"role": "user", "content": "Say hello and count to ten"}]
SCALE = 0.2


def spec(key: str) -> ModelSpec:
    return next(s for s in default_catalog() if s.key == key)


def test_a_smaller_model_is_faster_and_the_same_spec_gets_the_same_figures() -> None:
    small, large = speed_of(spec(QWEN)), speed_of(spec(GEMMA))
    assert small.generated_tokens_per_s > large.generated_tokens_per_s
    assert small.prompt_tokens_per_s > large.prompt_tokens_per_s
    assert small.load_seconds < large.load_seconds
    assert small.first_token_seconds(500) < large.first_token_seconds(500)
    assert speed_of(spec(QWEN)) == small


def test_wider_weights_read_prompts_slower_at_the_same_size() -> None:
    q4 = spec(QWEN)
    q8 = replace(q4, quantization="Q8_0", bits=8)
    assert speed_of(q8).generated_tokens_per_s == speed_of(q4).generated_tokens_per_s
    assert speed_of(q8).prompt_tokens_per_s < speed_of(q4).prompt_tokens_per_s


def stream_seconds(client: httpx.Client, model: str) -> tuple[float, int]:
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json={
        "model": model, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True},
    }) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    elapsed = time.monotonic() - started
    chunks = [line for line in text.splitlines() if line.startswith("data: {") and '"content"' in line]
    return elapsed, len(chunks)


def test_a_streamed_reply_takes_at_least_the_models_time(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(speed_scale=SCALE)
    emu.load(GEMMA)
    with client_for(emu.api_url) as client:
        elapsed, tokens = stream_seconds(client, GEMMA)
    speed = speed_of(spec(GEMMA))
    assert tokens > 0
    # the prompt's tokens are counted by the emulator; the first-token base alone is a safe floor
    floor = (speed.first_token_seconds(0) + tokens / speed.generated_tokens_per_s) * SCALE
    assert elapsed >= floor


def test_v0_stats_report_each_models_own_speed(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(speed_scale=0.01)
    emu.load(QWEN)
    emu.load(GEMMA)
    with client_for(emu.api_url) as client:
        stats = {
            key: client.post("/api/v0/chat/completions", json={"model": key, "messages": MESSAGES}).json()["stats"]
            for key in (QWEN, GEMMA)
        }
    assert stats[QWEN]["tokens_per_second"] > stats[GEMMA]["tokens_per_second"]
    assert stats[QWEN]["tokens_per_second"] == round(speed_of(spec(QWEN)).generated_tokens_per_s, 2)


def test_a_load_takes_at_least_the_models_load_time(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(speed_scale=SCALE)
    with client_for(emu.api_url) as client:
        r = client.post("/api/v1/models/load", json={"model": QWEN}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["load_time_seconds"] >= speed_of(spec(QWEN)).load_seconds * SCALE


def test_without_a_scale_the_fixed_timings_stay(emulator: Emulator) -> None:
    emulator.load(GEMMA)
    with client_for(emulator.api_url) as client:
        body = client.post("/api/v0/chat/completions", json={"model": GEMMA, "messages": MESSAGES}).json()
    assert body["stats"]["tokens_per_second"] == 51.43


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_a_scale_that_is_not_positive_is_refused(emulator: Emulator, bad: float) -> None:
    with pytest.raises(ValueError, match="speed_scale must be > 0"):
        emulator.update(speed_scale=bad)
    assert emulator.settings.speed_scale is None
