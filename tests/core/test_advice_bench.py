"""Advice from the bench: `recommend` ranks models never used through OpenCode by their measured speed and coding
checks (a used model keeps its usage figures), `measured()` reads the latest comparable bench rows, and
`models recommend/compare` show them, after a real bench against the emulator's per-model speeds."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from lmstudio_tray.core.control.bench import SUITE_VERSION
from lmstudio_tray.core.control.search import Performance, coding_pick_line, fastest_for_coding, recommend
from lmstudio_tray.core.models import BenchFigures
from lmstudio_tray.core.threads import WrongThread
from lmstudio_tray.diagnostics.usage import measured
from lmstudio_tray.emulator import Emulator
from tests.core.test_cli import run, write_config
from tests.core.test_search import DEVSTRAL, GPT_OSS, QWEN, keys, listed
from tests.emulator_fixtures import EmulatorFactory

SMALL = "qwen/qwen3-4b-2507"
LLAMA = "llama-3.2-3b-instruct"
LARGE = "google/gemma-3-12b"
NOW = time.time()


def coding(model: str, tps: float, passed: int, checks: int = 1, instance: str | None = None) -> BenchFigures:
    return BenchFigures(model=model, suite="coding", suite_version=SUITE_VERSION, measured_at=NOW, gen_tps=tps,
                        checks_passed=passed, checks=checks, instance=instance)


async def test_bench_figures_rank_models_never_used(emulator: Emulator) -> None:
    models = await listed(emulator)
    _, by_specs = recommend("coding agent", models)
    assert keys(by_specs)[0] == DEVSTRAL  # by specs alone the biggest coder leads
    perf = {DEVSTRAL: Performance(bench=(coding(DEVSTRAL, 12.0, 0),)),
            GPT_OSS: Performance(bench=(coding(GPT_OSS, 48.0, 1),))}
    _, recs = recommend("coding agent", models, performance=perf, limit=10)
    assert keys(recs)[0] == GPT_OSS  # faster here, and its code parsed
    assert "48 tok/s in the coding bench here" in recs[0].reasons and "1/1 coding checks passed" in recs[0].reasons
    slow = next(r for r in recs if r.model.key == DEVSTRAL)
    assert "0/1 coding checks passed" in slow.reasons


async def test_a_model_used_through_opencode_keeps_its_usage_figures(emulator: Emulator) -> None:
    models = await listed(emulator)
    perf = {DEVSTRAL: Performance(uses=40, success_rate=0.95, tokens_per_second=20.0,
                                  bench=(coding(DEVSTRAL, 5.0, 0),)),
            GPT_OSS: Performance(bench=(coding(GPT_OSS, 48.0, 1),))}
    _, recs = recommend("coding agent", models, performance=perf, limit=10)
    used = next(r for r in recs if r.model.key == DEVSTRAL)
    assert "95% success over 40 uses" in used.reasons
    assert not any("bench" in reason or "checks" in reason for reason in used.reasons)
    assert keys(recs)[0] == DEVSTRAL  # its record over real use outweighs another model's bench


def test_the_coding_pick_prefers_passed_checks_over_raw_speed() -> None:
    quick = BenchFigures("c", "quick", SUITE_VERSION, NOW, gen_tps=200.0)
    pick = fastest_for_coding([coding("a", 90.0, 0), coding("b", 41.0, 1), quick])
    assert pick is not None and pick.model == "b"
    assert fastest_for_coding([coding("b", 41.0, 1), quick]) is None  # one model is the fastest of nothing


def _bench(capsys: pytest.CaptureFixture[str], cfg: Path, *args: str) -> None:
    code, _, err = run(capsys, "--config", str(cfg), "bench", *args, "--runs", "1")
    assert code == 0, err


@pytest.fixture
def emu(emulator_factory: EmulatorFactory) -> Emulator:
    return emulator_factory(speed_scale=0.02)


def test_measured_reads_the_latest_row_of_the_current_suite_version(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, emu.api_url)
    _bench(capsys, cfg, SMALL, LARGE)
    _bench(capsys, cfg, SMALL, "--suite", "coding")
    from lmstudio_tray.analytics.store import default_path

    with sqlite3.connect(default_path()) as conn:  # an older suite version's row, newer than the others
        conn.execute("INSERT INTO bench_runs(ts, suite, suite_version, model, gen_tps) VALUES (?, 'quick', ?, ?, 1.0)",
                     (time.time() + 60, SUITE_VERSION - 1, SMALL))
    figures = measured()
    assert figures.unavailable is None and figures.models == {}
    assert {b.suite for b in figures.bench[SMALL]} == {"quick", "coding"} and len(figures.bench[LARGE]) == 1
    small, large = (figures.performance()[k].bench_of("quick") for k in (SMALL, LARGE))
    assert small is not None and large is not None and small.suite_version == SUITE_VERSION
    assert (small.gen_tps or 0) > (large.gen_tps or 0) > 1.0  # the emulator's smaller model is the faster
    assert figures.performance()[SMALL].uses == 0

    async def on_a_loop() -> None:
        measured()

    with pytest.raises(WrongThread, match="reading the analytics store"):
        asyncio.run(on_a_loop())


def test_cli_recommend_and_compare_show_the_bench(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, emu.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "models", "recommend", "chat", "--limit", "10")
    assert code == 0 and "tok/s in the quick bench here" not in out and "ranked by specs only" in out
    _bench(capsys, cfg, LLAMA)  # the store exists now, without figures of the two compared below
    code, out, _ = run(capsys, "--config", str(cfg), "models", "compare", QWEN, LARGE)
    assert f"No bench figures for these models: `lmstudio-tray bench {QWEN} {LARGE}`" in out
    _bench(capsys, cfg, SMALL, LARGE)
    code, out, err = run(capsys, "--config", str(cfg), "models", "recommend", "chat", "--limit", "10")
    assert code == 0, err
    lines = {line.split(" [")[0].split(". ", 1)[1]: line for line in out.splitlines()[1:] if ". " in line}
    assert "tok/s in the quick bench here" in lines[SMALL] and "tok/s in the quick bench here" in lines[LARGE]
    assert "ranked by specs only" not in out and "no bench figures" not in out
    code, out, _ = run(capsys, "--config", str(cfg), "models", "recommend", "chat", "--limit", "10", "--json")
    recs = {r["key"]: r for r in json.loads(out)["recommendations"]}
    assert recs[SMALL]["bench"]["quick"]["gen_tps"] > recs[LARGE]["bench"]["quick"]["gen_tps"]
    assert any("tok/s in the quick bench here" in reason for reason in recs[SMALL]["reasons"])
    code, out, err = run(capsys, "--config", str(cfg), "models", "compare", QWEN, LARGE)
    assert code == 0, err
    cells = {line.split("  ")[0]: [c.strip() for c in line.split("  ")[1:] if c.strip()]
             for line in out.splitlines()[1:]}
    assert f"— quick bench (v{SUITE_VERSION})" in cells
    fast, slow = (float(c.split(" (")[0]) for c in cells["gen tok/s (spread)"])
    assert fast > slow and all("(" in c and "–" in c for c in cells["gen tok/s (spread)"])  # median (spread)
    assert all(c.endswith(" s") for c in cells["first token"]) and len(cells["load time"]) == 2
    assert cells["checks"] == ["—", "—"]  # the quick suite checks no answer
    code, out, _ = run(capsys, "--config", str(cfg), "models", "compare", QWEN, LARGE, "--json")
    data = json.loads(out)
    assert "No bench figures" not in out
    quick = [m["bench"]["quick"] for m in data["models"]]
    assert quick[0]["gen_tps"] > quick[1]["gen_tps"] and quick[0]["suite_version"] == SUITE_VERSION
    assert set(quick[0]) >= {"gen_tps_low", "gen_tps_high", "first_token_s", "load_s", "checks", "measured_at"}


async def test_recommend_ranks_each_candidate_by_the_figures_of_its_own_instance(
    emulator_factory: EmulatorFactory,
) -> None:
    """Two LM Studio servers: a model benched fast on the other server is not ranked by that speed here."""
    here, there = emulator_factory(), emulator_factory()
    models = await listed(here, "local")
    assert models and (await listed(there, "second"))  # the same catalog on both machines
    perf = {DEVSTRAL: Performance(bench=(coding(DEVSTRAL, 12.0, 0, instance="local"),)),
            GPT_OSS: Performance(bench=(coding(GPT_OSS, 48.0, 1, instance="second"),))}
    _, recs = recommend("coding agent", models, performance=perf, limit=10)
    gpt = next(r for r in recs if r.model.key == GPT_OSS)
    assert not any("bench" in reason or "checks" in reason for reason in gpt.reasons)
    devstral = next(r for r in recs if r.model.key == DEVSTRAL)
    assert "12 tok/s in the coding bench here" in devstral.reasons
    _, there_recs = recommend("coding agent", await listed(there, "second"), performance=perf, limit=10)
    assert "48 tok/s in the coding bench here" in next(r for r in there_recs if r.model.key == GPT_OSS).reasons


def test_the_coding_pick_compares_models_of_one_instance() -> None:
    a, b = coding("a", 90.0, 1, instance="second"), coding("b", 41.0, 1, instance="local")
    assert fastest_for_coding([a, b], ["local", "second"]) is None  # one model per machine: nothing to compare
    c = coding("c", 20.0, 1, instance="local")
    pick = fastest_for_coding([a, b, c], ["local", "second"])
    assert pick is not None and pick.model == "b"
    assert coding_pick_line(pick, instance=True) == "Fastest here for coding on local: b (41 tok/s, 1/1 checks)"
    assert coding_pick_line(pick) == "Fastest here for coding: b (41 tok/s, 1/1 checks)"


def test_recommend_and_compare_show_the_figures_of_the_instance_a_model_is_on(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two LM Studio servers benched one after the other: each keeps its own latest figures, and a model's row shows
    those of the instance it is on, not the newer ones of the other machine."""
    here, there = emulator_factory(speed_scale=0.02), emulator_factory(speed_scale=0.2)  # a slower machine
    cfg = write_config(tmp_path, here.api_url, there.api_url)  # instances "local" and "i1"
    tps = {}
    for instance in ("local", "i1"):
        code, out, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1", "--json",
                             "--instance", instance)
        assert code == 0, err
        tps[instance] = json.loads(out)["results"][0]["generated_tokens_per_s"]["median"]
    assert tps["local"] > tps["i1"]
    figures = measured()
    assert sorted(b.instance or "" for b in figures.bench[SMALL]) == ["i1", "local"]
    code, out, _ = run(capsys, "--config", str(cfg), "models", "recommend", "chat", "--limit", "10", "--json")
    rec = next(r for r in json.loads(out)["recommendations"] if r["key"] == SMALL)
    assert rec["instance"] == "local" and rec["bench"]["quick"]["gen_tps"] == pytest.approx(tps["local"], rel=1e-3)
