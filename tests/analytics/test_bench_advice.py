"""Advice from the bench in the analytics: the tips ranked by bench figures ("X generates 2.1× faster than Y here",
"Fastest here for coding: X"), cached with the tips for the tray and the system transform, which names the loaded
alternatives of a model that is not loaded and the measured speeds, through the real endpoint."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from pathlib import Path

from lmstudio_tray.analytics.bench import bench_rows, latest_bench
from lmstudio_tray.analytics.store import Store, reading
from lmstudio_tray.analytics.suggestions import for_model, suggest
from lmstudio_tray.cli import build_parser
from lmstudio_tray.core.control.bench import SUITE_VERSION, BenchReport, ModelBench, Spread, Suite
from lmstudio_tray.core.hooks.transforms import ADVICE_MAX_CHARS, system_context
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, LoadedInstance, ModelInfo, ModelType
from tests.analytics.conftest import Stack

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
LLAMA = "llama-3.2-3b-instruct"
NOMIC = "text-embedding-nomic-embed-text-v1.5"
PLUGIN = Path(__file__).resolve().parents[2] / "lmstudio_tray" / "opencode" / "lmstudio-tray.ts"


def result(model: str, tps: float, passed: int = 0, checks: int = 0) -> ModelBench:
    return ModelBench(model=model, quantization="Q4_K_M", context_length=4096, memory_bytes=None,
                      loaded_for_bench=True, load_seconds=2.0, first_token_seconds=Spread(0.3, 0.2, 0.4),
                      prompt_tokens_per_s=Spread(400.0, 380.0, 420.0),
                      generated_tokens_per_s=Spread(tps, tps * 0.9, tps * 1.1), checks_passed=passed, checks=checks,
                      runs=3)


def record(path: Path, suite: Suite, *results: ModelBench, ts: float | None = None, instance: str = "local") -> None:
    store = Store(path)
    report = BenchReport(suite, SUITE_VERSION, "0.4.0", tuple(results))
    store.write(bench_rows(report, instance=instance, ts=ts or time.time()))
    store.close()


def assert_commands_parse(text: str) -> None:
    for command in (c for c in text.split("`")[1::2] if c.startswith("lmstudio-tray ")):
        build_parser().parse_args(shlex.split(command)[1:])


def test_tips_from_the_bench(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    record(db, Suite.QUICK, result(QWEN, 48.0), result(GEMMA, 23.0), result(LLAMA, 40.0))
    record(db, Suite.QUICK, result(QWEN, 10.0), ts=time.time() - 86400)  # an older run: the latest counts
    record(db, Suite.CODING, result(QWEN, 90.0, 0, 3), result(GEMMA, 41.0, 3, 3))
    with reading(db) as conn:
        tips = suggest(conn, time.time())
    kinds = [t.kind for t in tips]
    assert kinds[0] == "fastest_coding"  # first: the tray's Tips show it at the top
    coding = tips[0]
    assert coding.model == GEMMA  # the faster one's code did not parse
    assert coding.message.startswith(f"Fastest here for coding: {GEMMA} (41 tok/s, 3/3 checks)")
    faster = [t for t in tips if t.kind == "bench_faster"]
    assert [t.model for t in faster] == [GEMMA]  # llama is within 1.3× of qwen: no tip
    assert faster[0].message.startswith(f"{QWEN} generates 2.1× faster than {GEMMA} here (quick bench: 48 vs 23")
    assert faster[0].numbers["alternative"] == QWEN and faster[0].numbers["ratio"] == round(48 / 23, 2)
    for tip in tips:
        assert_commands_parse(tip.message)
    assert f"`lmstudio-tray switch {QWEN} --instance local`" in faster[0].message
    assert for_model(tips, GEMMA) == []  # the transform has its own measured advice


def test_no_bench_of_the_current_suite_version_no_tips(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    record(db, Suite.QUICK, result(QWEN, 48.0), result(GEMMA, 23.0))
    with Store(db).conn as conn:
        conn.execute("UPDATE bench_runs SET suite_version = ?", (SUITE_VERSION + 1,))
    with reading(db) as conn:
        assert not [t for t in suggest(conn, time.time()) if t.kind in ("bench_faster", "fastest_coding")]


def snapshot(*loaded: str, embedding: str | None = None) -> InstanceSnapshot:
    models = [ModelInfo(key=k, instances=(LoadedInstance(k, 8192),)) for k in loaded]
    if embedding:
        models.append(ModelInfo(key=embedding, type=ModelType.EMBEDDING, instances=(LoadedInstance(embedding, 2048),)))
    models.append(ModelInfo(key=GEMMA))
    return InstanceSnapshot(name="local", url="http://127.0.0.1:1234", state=InstanceState.READY, models=tuple(models))


def test_the_transform_stays_within_its_budget_with_many_loaded_models() -> None:
    many = [f"publisher-with-a-long-name/model-number-{n}-with-a-long-name-too" for n in range(10)]
    text = system_context(snapshot(*many), GEMMA)
    advice = text.split("lmstudio_load_model if they are available.\n", 1)[1]
    assert "and 7 more" in advice and len(advice) <= ADVICE_MAX_CHARS
    text = system_context(snapshot(QWEN, embedding=NOMIC), GEMMA)
    assert f"Loaded there instead: {QWEN}." in text and NOMIC not in text  # chat models only
    assert "Loaded there instead" not in system_context(snapshot(QWEN, GEMMA), GEMMA)  # it is loaded


def test_the_system_transform_names_loaded_alternatives_and_measured_advice(stack: Stack) -> None:
    record(stack.analytics.path, Suite.QUICK, result(QWEN, 48.0), result(GEMMA, 12.0), result(LLAMA, 40.0))
    stack.emu.load(QWEN, context_length=8192)
    stack.emu.load(LLAMA, context_length=8192)
    stack.emu.load(NOMIC)
    base = stack.emu.api_url + "/v1"
    stack.thread.submit(stack.core.monitor.get("local", max_age=0)).result(30)
    asyncio.run(asyncio.to_thread(stack.analytics.refresh_tips))  # the writer's chore does this every few minutes
    assert {b.suite for b in stack.analytics.bench_figures()[QWEN]} == {"quick"}
    with stack.client() as c:
        text = "\n".join(c.post("/v1/transform/system", json={"model": GEMMA, "base_url": base}).json()["system"])
        loaded = "\n".join(c.post("/v1/transform/system", json={"model": QWEN, "base_url": base}).json()["system"])
    assert f"Loaded there instead: {QWEN}, {LLAMA}." in text and NOMIC not in text  # chat models only
    assert f"Measured here (quick bench): {QWEN} (loaded) generates 48 tok/s, 4.0× faster than {GEMMA} (12 tok/s)." \
        in text
    assert "Loaded there instead" not in loaded and "Measured" not in loaded  # it is the fastest loaded one
    tools = set(re.findall(r"\b(lmstudio_[a-z_]+): defineTool", PLUGIN.read_text()))
    named = set(re.findall(r"\blmstudio_[a-z_]+\b", text))
    assert named and named <= tools, named - tools


def test_the_latest_figures_are_kept_per_instance(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    record(db, Suite.QUICK, result(QWEN, 48.0), instance="second")
    record(db, Suite.QUICK, result(QWEN, 12.0), ts=time.time() - 60)  # older, but the only one of "local"
    with reading(db) as conn:
        latest = latest_bench(conn)
    assert sorted((b.instance, b.gen_tps) for b in latest) == [("local", 12.0), ("second", 48.0)]


def test_the_system_transform_compares_figures_of_the_sessions_instance_only(stack: Stack) -> None:
    """A model measured fast on another machine is not "measured here" faster than the session's model."""
    record(stack.analytics.path, Suite.QUICK, result(QWEN, 48.0), instance="second")
    record(stack.analytics.path, Suite.QUICK, result(GEMMA, 12.0))
    stack.emu.load(QWEN, context_length=8192)
    stack.emu.load(GEMMA, context_length=8192)
    base = stack.emu.api_url + "/v1"
    stack.thread.submit(stack.core.monitor.get("local", max_age=0)).result(30)
    asyncio.run(asyncio.to_thread(stack.analytics.refresh_tips))
    with stack.client() as c:
        text = "\n".join(c.post("/v1/transform/system", json={"model": GEMMA, "base_url": base}).json()["system"])
    assert "Measured here" not in text
    record(stack.analytics.path, Suite.QUICK, result(QWEN, 48.0))  # now measured on the session's instance too
    asyncio.run(asyncio.to_thread(stack.analytics.refresh_tips))
    with stack.client() as c:
        text = "\n".join(c.post("/v1/transform/system", json={"model": GEMMA, "base_url": base}).json()["system"])
    assert f"Measured here (quick bench): {QWEN} (loaded) generates 48 tok/s" in text
