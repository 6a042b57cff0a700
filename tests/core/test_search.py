"""Model search, recommendation and comparison against the emulator's catalog, listed over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.core.control.search import (
    Filters,
    Performance,
    alternatives,
    find,
    match_score,
    parse_context,
    parse_size,
    recommend,
    search,
)
from lmstudio_tray.core.errors import SearchError
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.models import ModelInfo
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.emulator.state.catalog import default_catalog

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
QWEN_VL = "qwen/qwen2.5-vl-7b"
LLAMA = "llama-3.2-3b-instruct"
GPT_OSS = "openai/gpt-oss-20b"
DEVSTRAL = "mistralai/devstral-small-2507"
NOMIC = "text-embedding-nomic-embed-text-v1.5"


async def listed(emu: Emulator, name: str = "local") -> list[tuple[str, ModelInfo]]:
    client = LMStudioClient(emu.api_url)
    try:
        listing = await client.list_models()
    finally:
        await client.aclose()
    return [(name, m) for m in listing.models]


def keys(hits: list[Any]) -> list[str]:
    return [h.model.key for h in hits]


async def test_fuzzy_name_match_finds_typos_and_partial_names(emulator: Emulator) -> None:
    models = await listed(emulator)
    assert keys(search(models, "gemma"))[0] == GEMMA
    assert keys(search(models, "gema"))[0] == GEMMA  # typo
    assert keys(search(models, "devstral"))[0] == DEVSTRAL
    assert keys(search(models, "Qwen3 4B"))[0] == QWEN  # words in any form, case-insensitive
    assert keys(search(models, "nomic"))[0] == NOMIC
    assert search(models, "zzzz-nothing") == []
    # An exact key beats a longer key containing it; a longer query beats a shorter one.
    exact = search(models, QWEN)
    assert exact[0].model.key == QWEN and exact[0].match == 1.0
    assert set(keys(search(models, "qwen"))) == {QWEN, QWEN_VL}


async def test_filters_by_type_architecture_quantization_size_context_and_capabilities(emulator: Emulator) -> None:
    models = await listed(emulator)
    assert keys(search(models, filters=Filters(type="embedding"))) == [NOMIC]
    llms = set(keys(search(models, filters=Filters(type="llm"))))
    assert NOMIC not in llms and {GEMMA, QWEN_VL} <= llms  # vision models are LLMs too
    assert set(keys(search(models, filters=Filters(vision=True)))) == {GEMMA, QWEN_VL}
    assert set(keys(search(models, filters=Filters(tool_use=True)))) == {QWEN, QWEN_VL, LLAMA, GPT_OSS, DEVSTRAL}
    assert set(keys(search(models, filters=Filters(vision=True, tool_use=True)))) == {QWEN_VL}
    assert set(keys(search(models, filters=Filters(architecture="QWEN")))) == {QWEN, QWEN_VL}
    assert keys(search(models, filters=Filters(quantization="mxfp4"))) == [GPT_OSS]
    assert keys(search(models, filters=Filters(quantization="4bit"))) == [LLAMA]
    q4 = set(keys(search(models, filters=Filters(quantization="q4km"))))
    assert GPT_OSS not in q4 and LLAMA not in q4 and QWEN in q4
    small = set(keys(search(models, filters=Filters(max_size=parse_size("3GB")))))
    assert small == {QWEN, LLAMA, NOMIC}
    assert set(keys(search(models, filters=Filters(min_size=parse_size("12GB"))))) == {GPT_OSS, DEVSTRAL}
    assert keys(search(models, filters=Filters(min_context=parse_context("200k")))) == [QWEN]
    assert keys(search(models, "qwen", Filters(vision=True))) == [QWEN_VL]


async def test_loaded_filter_and_the_loaded_nudge(emulator: Emulator) -> None:
    emulator.load(QWEN_VL)
    models = await listed(emulator)
    assert keys(search(models, filters=Filters(loaded=True))) == [QWEN_VL]
    hits = search(models, "qwen")
    assert {h.model.key for h in hits} == {QWEN, QWEN_VL}
    assert "loaded" in next(h for h in hits if h.model.key == QWEN_VL).reasons


async def test_usage_ranks_equal_matches_but_never_beats_a_clearly_better_name(emulator: Emulator) -> None:
    models = await listed(emulator)
    plain = keys(search(models, filters=Filters(tool_use=True)))
    assert plain == sorted(plain)  # no query, no usage: alphabetical
    used = search(models, filters=Filters(tool_use=True), usage={DEVSTRAL: 40, GPT_OSS: 3})
    assert keys(used)[:2] == [DEVSTRAL, GPT_OSS] and used[0].uses == 40
    # A model used a lot does not outrank the exact name asked for.
    assert keys(search(models, "qwen3-4b", usage={QWEN_VL: 500}))[0] == QWEN


async def test_models_on_two_instances_are_found_on_each(emulator_factory: Any) -> None:
    a = emulator_factory()
    b = emulator_factory(catalog=[s for s in default_catalog() if s.key in (QWEN, NOMIC)])
    models = await listed(a, "desk") + await listed(b, "laptop")
    hits = search(models, "qwen3")
    assert sorted((h.instance, h.model.key) for h in hits if h.model.key == QWEN) == [("desk", QWEN), ("laptop", QWEN)]
    assert [i for i, _ in find(models, QWEN)] == ["desk", "laptop"]


async def test_recommend_by_task_words(emulator: Emulator) -> None:
    models = await listed(emulator)
    needs, recs = recommend("read screenshots of error dialogs", models)
    assert needs.vision and set(keys(recs)) == {GEMMA, QWEN_VL}
    needs, recs = recommend("coding agent with tools", models)
    assert needs.tool_use and all("tool_use" in r.model.capabilities for r in recs) and len(recs) == 3
    needs, recs = recommend("RAG retrieval", models)
    assert needs.type == "embedding" and keys(recs) == [NOMIC]
    _, recs = recommend("fast autocomplete on a laptop", models)
    assert recs[0].model.key == LLAMA  # the smallest chat model
    _, recs = recommend("summarise a long document", models, limit=1)
    assert recs[0].model.key == QWEN  # the 256k context wins


async def test_recommend_prefers_what_worked_for_the_user(emulator: Emulator) -> None:
    models = await listed(emulator)
    perf = {
        GPT_OSS: Performance(uses=50, success_rate=0.98, tokens_per_second=60.0),
        DEVSTRAL: Performance(uses=50, success_rate=0.40, tokens_per_second=15.0),
    }
    _, recs = recommend("coding agent", models, performance=perf)
    assert keys(recs)[0] == GPT_OSS
    assert any("98% success over 50 uses" in reason for reason in recs[0].reasons)
    _, without = recommend("coding agent", models)
    assert keys(without)[0] == DEVSTRAL  # by specs alone the biggest coder leads; its poor record demotes it
    assert DEVSTRAL not in keys(recs)[:1]


async def test_alternatives_for_an_unavailable_model(emulator: Emulator) -> None:
    models = await listed(emulator)
    # A key that is not downloaded: the name guides.
    assert keys(alternatives("qwen/qwen3-8b", models))[0] == QWEN
    # A downloaded one (say it keeps failing): same kind, shared capabilities, similar size.
    alts = alternatives(GEMMA, models)
    assert alts[0].model.key == QWEN_VL and any("vision" in r for r in alts[0].reasons)
    assert NOMIC not in keys(alternatives(QWEN, models, limit=10))


def test_bad_filter_values_say_how_to_write_them() -> None:
    with pytest.raises(SearchError, match="8GB"):
        parse_size("eight gigs")
    with pytest.raises(SearchError, match="32k"):
        parse_context("lots")
    with pytest.raises(SearchError, match="llm, embedding"):
        Filters(type="vlm-ish")
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_context("32k") == 32768


def test_match_score_orders_exact_substring_words_fuzzy() -> None:
    m = ModelInfo(key=QWEN, display_name="Qwen3 4B Instruct 2507", architecture="qwen3")
    assert match_score(QWEN, m) == 1.0
    assert 0.85 < match_score("qwen3-4b", m) < 1.0
    assert match_score("instruct qwen3", m) == 0.8
    assert 0.45 < match_score("qwne3", m) <= 0.75


# ---- the CLI ---------------------------------------------------------------------------------------------

ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=90, env={**os.environ, **ENV})


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n', encoding="utf-8")
    return path


def test_cli_search_with_filters_and_json(config: Path) -> None:
    done = cli(config, "models", "search", "--vision", "--tools")
    assert done.returncode == 0, done.stderr
    assert QWEN_VL in done.stdout and GEMMA not in done.stdout
    data = json.loads(cli(config, "models", "search", "qwen", "--json", "--min-ctx", "200k").stdout)
    assert [r["key"] for r in data["results"]] == [QWEN]
    none = cli(config, "models", "search", "nothing-like-this")
    assert none.returncode == 1 and "No downloaded model matches 'nothing-like-this'" in none.stderr
    bad = cli(config, "models", "search", "--max-size", "huge")
    assert bad.returncode == 2 and "write it like 8GB" in bad.stderr


def test_cli_recommend(config: Path) -> None:
    done = cli(config, "models", "recommend", "describe", "these", "screenshots")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[1]
    assert first.startswith("1. ") and (GEMMA in first or QWEN_VL in first)
    assert "ranked by specs only" in done.stdout  # no analytics recorded in this fresh HOME


def test_cli_compare_specs_without_analytics(config: Path) -> None:
    done = cli(config, "models", "compare", "qwen3-4b", GPT_OSS)
    assert done.returncode == 0, done.stderr
    header, *rest = done.stdout.splitlines()
    lines = {line.split("  ")[0]: line for line in rest}
    assert header.split() == [QWEN, GPT_OSS]
    assert "262144" in lines["max context"] and "131072" in lines["max context"]
    assert "Q4_K_M" in lines["quantization"] and "MXFP4" in lines["quantization"]
    assert "No measured figures: no analytics recorded yet" in done.stdout
    missing = cli(config, "models", "compare", QWEN, "qwen/qwen3-8b")
    assert missing.returncode == 2 and "did you mean qwen/qwen3-4b-2507" in missing.stderr
    assert cli(config, "models", "compare", QWEN).returncode == 2


def _record_turns(model: str, n: int, *, seconds: float, out_tokens: int, failures: int = 0) -> None:
    from lmstudio_tray.analytics.records import forwarded_rows
    from lmstudio_tray.analytics.store import Store

    store = Store()
    now = time.time() - 3600
    rows = []
    for i in range(n):
        start = now + i * 10
        info: dict[str, Any] = {"id": f"{model}-{i}", "role": "assistant", "modelID": model,
                                "time": {"created": start * 1000, "completed": (start + seconds) * 1000},
                                "tokens": {"input": 500, "output": out_tokens, "reasoning": 0, "cache": {"read": 0}}}
        if i < failures:
            info["error"] = {"name": "APIError", "data": {"message": "model crashed"}}
        rows += forwarded_rows(start, {"type": "message.updated", "session_id": f"s-{model}-{i}",
                                       "instance": "local", "model": model, "properties": {"info": info}})
    store.write(rows)
    store.close()


def test_cli_compare_shows_measured_figures_from_the_analytics_store(config: Path) -> None:
    pytest.importorskip("lmstudio_tray.analytics", reason="the analytics module is not in this checkout")
    _record_turns(QWEN, 10, seconds=2.0, out_tokens=100)  # 50 tok/s, 2 s
    _record_turns(GPT_OSS, 4, seconds=8.0, out_tokens=200, failures=1)  # 25 tok/s, 8 s, 1 of 4 failed
    done = cli(config, "models", "compare", QWEN, GPT_OSS, "--since", "7d")
    assert done.returncode == 0, done.stderr
    cells = {line.split("  ")[0]: [c.strip() for c in line.split("  ")[1:] if c.strip()]
             for line in done.stdout.splitlines()[1:]}
    assert cells["turns"] == ["10", "4"]
    assert cells["tokens/s (p50)"] == ["50.0", "25.0"]
    assert cells["latency p50"] == ["2.00 s", "8.00 s"]
    assert cells["success rate"] == ["100%", "75%"]  # sessions: 1 of GPT-OSS's 4 ended in an error
    assert "No measured figures" not in done.stdout
    data = json.loads(cli(config, "models", "compare", QWEN, GPT_OSS, "--json").stdout)
    assert data["measured_available"] is True
    assert data["models"][0]["measured"]["tokens_per_s"] == 50.0
