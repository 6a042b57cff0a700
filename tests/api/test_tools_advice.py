"""The advice tools against a real endpoint over the emulator, with the analytics store the composition root gives
it: benchmark, recommend, compare, stats, search with filters; and `instance` picking another LM Studio."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.analytics.store import reading
from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.control.bench import bench_lock_file, bench_slot
from lmstudio_tray.core.events import BenchFailed, BenchFinished, BenchProgressed, BenchStarted, Event
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.wiring import StoreMeasurements
from tests.api.conftest import Api, client_for
from tests.core.test_cli import run, write_config
from tests.core.test_search import GPT_OSS, QWEN, _record_turns

GEMMA = "google/gemma-3-12b"
EMBED = "text-embedding-nomic-embed-text-v1.5"


@pytest.fixture
def advice_factory(emulator_factory: Any) -> Iterator[Callable[..., Api]]:
    """An endpoint with the platform's analytics store (the test's own HOME) as its `Measurements`; `second`: a
    second instance, on its own emulator."""
    threads: list[CoreThread] = []

    def make(*, second: bool = False, emu: Emulator | None = None, **config: Any) -> Api:
        emu = emu or emulator_factory()
        instances = [{"name": "local", "url": emu.api_url}]
        if second:
            other = emulator_factory()
            other.load(GEMMA, context_length=4096)
            instances.append({"name": "second", "url": other.api_url})
        core = Core(parse_config({"instances": instances, "endpoint": {"port": 0}, **config}), lms_path=None)
        server = attach_endpoint(core, measurements=StoreMeasurements())
        thread = CoreThread(core)
        thread.start()
        threads.append(thread)
        return Api(client_for(server), core, emu, server, thread)

    yield make
    for thread in threads:
        thread.stop()


@pytest.fixture
def advice(advice_factory: Callable[..., Api]) -> Api:
    return advice_factory()


async def post(api: Api, tool: str, body: dict[str, Any]) -> httpx.Response:
    return await api.client.post(f"/v1/tools/{tool}", json=body, timeout=120)


def loaded(emu: Emulator) -> list[tuple[str, int]]:
    return sorted((i["modelKey"], i["contextLength"]) for i in emu.loaded())


def bench_rows() -> list[dict[str, Any]]:
    with reading() as conn:
        return [dict(r) for r in conn.execute("SELECT model, instance, suite, runs, gen_tps FROM bench_runs")]


# ---- benchmark ---------------------------------------------------------------------------------------------


async def test_benchmark_defaults_to_the_sessions_model_and_keeps_the_result(advice: Api) -> None:
    advice.emu.load(QWEN, context_length=8192)
    before = loaded(advice.emu)
    r = await post(advice, "benchmark", {"session_id": "ses_1", "session_model": QWEN, "runs": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] and out["instance"] == "local"
    assert out["text"].startswith(f"Benchmarked {QWEN} on local (quick suite v1, 2 runs")
    assert "kept in the analytics store" in out["text"]
    assert [m["model"] for m in out["data"]["results"]] == [QWEN]
    assert loaded(advice.emu) == before
    assert [(b["model"], b["instance"], b["suite"], b["runs"]) for b in bench_rows()] == [(QWEN, "local", "quick", 2)]


async def test_an_agents_bench_reports_its_steps_like_the_terminals(advice: Api) -> None:
    """The tool's bench goes to the core's bench tracker: the tray's bench line and the finished notification
    follow an agent's bench too (they subscribe to these events)."""
    seen: list[Event] = []
    advice.core.bus.subscribe(seen.append, BenchStarted, BenchProgressed, BenchFinished, BenchFailed)
    r = await post(advice, "benchmark", {"model": QWEN, "runs": 2})
    assert r.status_code == 200, r.text
    started, *steps, finished = seen
    assert started == BenchStarted("local", models=(QWEN,), suite="quick", total=2, pid=os.getpid())
    assert [(e.model, e.phase, e.step) for e in steps if isinstance(e, BenchProgressed)] == [
        (QWEN, "loading", 1), (QWEN, "run", 1), (QWEN, "run", 2), (QWEN, "restoring", 2)]
    assert isinstance(finished, BenchFinished) and finished.fastest == QWEN and finished.models == 1
    assert advice.core.benches.active() == ()  # over: no longer listed as running


async def test_benchmark_loads_a_model_for_the_run_through_the_actions_and_puts_the_instance_back(advice: Api) -> None:
    advice.emu.load(QWEN, context_length=8192)
    before = loaded(advice.emu)
    r = await post(advice, "benchmark", {"model": GEMMA, "runs": 1})
    assert r.status_code == 200, r.text
    assert "loaded for the bench in" in r.json()["text"]
    assert "What was loaded before has been put back." in r.json()["text"]
    assert loaded(advice.emu) == before
    # the load went through the core's actions: its load events reached the analytics' bus like any load
    assert [b["model"] for b in bench_rows()] == [GEMMA]


async def test_benchmark_of_an_unknown_model_names_it_and_the_closest_ones(advice: Api) -> None:
    r = await post(advice, "benchmark", {"model": "qwen/qwen3-8b"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["kind"] == "unknown_model"
    assert "'qwen/qwen3-8b' is not downloaded on local" in err["message"] and QWEN in err["message"]
    assert bench_rows_or_none() is None


def bench_rows_or_none() -> list[dict[str, Any]] | None:
    from lmstudio_tray.analytics.store import StoreError

    try:
        return bench_rows()
    except StoreError:
        return None


async def test_benchmark_without_a_model_or_a_session_says_what_to_give(advice: Api) -> None:
    r = await post(advice, "benchmark", {})
    assert r.status_code == 422 and "model: name the model to benchmark" in r.json()["error"]["message"]


async def test_benchmark_is_refused_while_another_bench_runs(advice: Api) -> None:
    """`lmstudio-tray bench` (another process) or another tool call holds the machine's bench slot."""
    advice.emu.load(QWEN, context_length=8192)
    async with bench_slot(bench_lock_file()):
        r = await post(advice, "benchmark", {"model": QWEN, "runs": 1})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["kind"] == "bench_running"
    assert "another benchmark is running on this machine" in err["message"]
    assert "wait until it is done" in err["message"]
    assert bench_rows_or_none() is None
    assert advice.core.benches._own == []  # the refused bench's tracker is not kept
    # once it is free, the tool runs
    assert (await post(advice, "benchmark", {"model": QWEN, "runs": 1})).status_code == 200


async def test_two_benchmarks_at_once_one_runs_one_is_refused(advice_factory: Callable[..., Api]) -> None:
    api = advice_factory()
    api.emu.load(QWEN, context_length=8192)
    api.emu.update(load_seconds=3600)  # GEMMA's load holds the first bench until the test finishes it
    first = asyncio.ensure_future(post(api, "benchmark", {"model": GEMMA, "runs": 1}))
    while not api.emu.snapshot()["loading"]:
        await asyncio.sleep(0.05)
    second = await post(api, "benchmark", {"model": QWEN, "runs": 1})
    assert second.status_code == 409 and second.json()["error"]["kind"] == "bench_running"
    api.emu.update(load_seconds=0.2)  # the restore's loads, if any, run at once
    api.emu.finish_loads()
    assert (await first).status_code == 200
    assert loaded(api.emu) == [(QWEN, 8192)]


async def test_benchmark_on_an_unknown_instance_is_404(advice: Api) -> None:
    r = await post(advice, "benchmark", {"model": QWEN, "instance": "nowhere"})
    assert r.status_code == 404 and r.json()["error"]["kind"] == "unknown_instance"
    assert "monitored: local" in r.json()["error"]["message"]


# ---- recommend, compare, stats -----------------------------------------------------------------------------


async def test_recommend_ranks_by_the_measured_figures(advice: Api) -> None:
    r = await post(advice, "recommend", {"task": "chat"})
    assert r.status_code == 200, r.text
    assert "ranked by specs only" in r.json()["text"] and r.json()["data"]["measured"] is False
    _record_turns(QWEN, 10, seconds=2.0, out_tokens=100)
    r = await post(advice, "recommend", {"task": "chat", "limit": 5})
    out = r.json()
    assert out["data"]["measured"] is True and "ranked by specs only" not in out["text"]
    (qwen,) = [x for x in out["data"]["recommendations"] if x["key"] == QWEN]
    assert "100% success over 10 uses" in qwen["reasons"] and "50 tok/s measured" in qwen["reasons"]
    assert f"{QWEN} [local]: " in out["text"]


async def test_recommend_with_nothing_that_fits_says_so(advice: Api) -> None:
    r = await post(advice, "recommend", {"task": "read screenshots with vision", "instance": "local"})
    out = r.json()
    # the emulator's catalog has a vision model: it is the answer
    assert out["ok"] and "qwen/qwen2.5-vl-7b" in out["text"]


async def test_compare_shows_specs_usage_and_the_latest_bench(advice: Api) -> None:
    advice.emu.load(QWEN, context_length=8192)
    _record_turns(QWEN, 10, seconds=2.0, out_tokens=100)
    assert (await post(advice, "benchmark", {"model": QWEN, "runs": 1})).status_code == 200
    r = await post(advice, "compare", {"models": ["qwen3-4b", GPT_OSS], "since": "7d"})
    assert r.status_code == 200, r.text
    out = r.json()
    qwen, gpt = out["data"]["models"]
    assert qwen["spec"]["key"] == QWEN and qwen["measured"]["tokens_per_s"] == 50.0
    assert qwen["bench"]["quick"]["suite"] == "quick" and qwen["bench"]["quick"]["gen_tps"] > 0
    assert qwen["bench"]["quick"]["instance"] == "local"
    assert gpt["measured"] is None and gpt["bench"] == {}
    assert "10 turns, 100% success, 50.0 tok/s" in out["text"]
    assert "quick bench: " in out["text"] and "tok/s generated" in out["text"] and "never benchmarked" in out["text"]


async def test_compare_shows_the_bench_figures_models_compare_shows(
    advice: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tool and `lmstudio-tray models compare` read the same latest figures per suite (`Performance.bench`)."""
    assert (await post(advice, "benchmark", {"model": QWEN, "runs": 1})).status_code == 200
    r = await post(advice, "compare", {"models": [QWEN, GPT_OSS]})
    tool_bench = [m["bench"] for m in r.json()["data"]["models"]]
    cfg = write_config(tmp_path, advice.emu.api_url)
    # the command runs its own event loop: in a worker thread, like a second process
    code, out, err = await asyncio.to_thread(run, capsys, "--config", str(cfg), "models", "compare", QWEN, GPT_OSS,
                                             "--json")
    assert code == 0, err
    assert [m["bench"] for m in json.loads(out)["models"]] == tool_bench
    assert tool_bench[0]["quick"]["gen_tps"] > 0 and tool_bench[1] == {}


async def test_compare_an_unknown_model_names_the_closest(advice: Api) -> None:
    r = await post(advice, "compare", {"models": [QWEN, "qwen/qwen3-8b"]})
    assert r.status_code == 409
    assert "no downloaded model is 'qwen/qwen3-8b'" in r.json()["error"]["message"]
    assert f"did you mean {QWEN}" in r.json()["error"]["message"]
    twice = await post(advice, "compare", {"models": [QWEN, "qwen3-4b-2507"]})
    assert twice.status_code == 409 and "a second time" in twice.json()["error"]["message"]


async def test_stats_summarises_the_window_and_the_bench_rows(advice: Api) -> None:
    empty = (await post(advice, "stats", {})).json()
    assert empty["ok"] is False and "No usage figures: no analytics recorded yet" in empty["text"]
    advice.emu.load(QWEN, context_length=8192)
    _record_turns(QWEN, 4, seconds=2.0, out_tokens=100)
    assert (await post(advice, "benchmark", {"model": QWEN, "runs": 1})).status_code == 200
    out = (await post(advice, "stats", {"since": "24h"})).json()
    assert out["ok"] and out["text"].startswith("Since 24h: 4 turns")
    assert f"- {QWEN}: 4 turns, 100% success, 50.0 tok/s, 2.0 s per turn (p50)" in out["text"]
    assert f"- bench {QWEN}: " in out["text"]
    assert [b["model"] for b in out["data"]["bench"]] == [QWEN]


# ---- search ------------------------------------------------------------------------------------------------


async def test_search_filters_like_models_search(advice: Api) -> None:
    async def keys(**body: Any) -> list[str]:
        r = await post(advice, "search", body)
        assert r.status_code == 200, r.text
        return [h["key"] for h in r.json()["data"]]

    assert await keys(type="embedding") == [EMBED]
    assert set(await keys(vision=True)) == {GEMMA, "qwen/qwen2.5-vl-7b"}
    small = await keys(max_size="3GB")
    assert set(small) == {QWEN, "llama-3.2-3b-instruct", EMBED}
    assert GPT_OSS in await keys(min_size="10GB", tool_use=True)
    assert all(k != EMBED for k in await keys(min_context="32k"))
    bad = await post(advice, "search", {"min_size": "lots"})
    assert bad.status_code == 422 and "write it like 8GB" in bad.json()["error"]["message"]


async def test_search_ranks_by_use(advice: Api) -> None:
    before = [h["key"] for h in (await post(advice, "search", {"query": "qwen"})).json()["data"]]
    assert len(before) >= 2, before
    _record_turns(before[1], 12, seconds=2.0, out_tokens=100)
    out = (await post(advice, "search", {"query": "qwen"})).json()
    after = [h["key"] for h in out["data"]]
    assert after[0] == before[1]  # the used one moved up past an equal name match
    assert f"- {before[1]}: " in out["text"] and "used 12 times" in out["text"]


# ---- instance ----------------------------------------------------------------------------------------------


async def test_a_tool_acts_on_the_instance_it_names(advice_factory: Callable[..., Api]) -> None:
    api = advice_factory(second=True)
    r = await post(api, "list", {"instance": "second"})
    assert r.status_code == 200 and r.json()["instance"] == "second"
    assert f"- {GEMMA} [llm] loaded" in r.json()["text"]
    default = await post(api, "list", {})
    assert default.json()["instance"] == "local" and f"- {GEMMA} [llm] loaded" not in default.json()["text"]
    bench = await post(api, "benchmark", {"model": GEMMA, "instance": "second", "runs": 1})
    assert bench.status_code == 200 and bench.json()["text"].startswith(f"Benchmarked {GEMMA} on second")
    stats = (await post(api, "stats", {"instance": "second"})).json()
    assert [b["instance"] for b in stats["data"]["bench"]] == ["second"]
    assert (await post(api, "stats", {"instance": "nowhere"})).status_code == 404


async def test_benchmark_on_a_shared_instance_leaves_a_model_someone_started_using(
    advice_factory: Callable[..., Api], emulator_factory: Any, tmp_path: Path,
) -> None:
    """The bench loads and unloads through the core's actions, as an agent: putting the instance back is an unload
    the shared-instance guard may refuse. A model someone used through this machine meanwhile stays loaded, and
    the answer says why."""
    profile = tmp_path / "team.toml"
    emu = emulator_factory()
    profile.write_text(f'[team]\nname = "ml"\nbusy_minutes = 5\n[[instances]]\nname = "local"\n'
                       f'url = "{emu.api_url}"\n')
    api = advice_factory(emu=emu, team_profile=str(profile))
    api.emu.load(QWEN, context_length=8192)
    api.emu.update(load_seconds=3600)
    bench = asyncio.ensure_future(post(api, "benchmark", {"model": GEMMA, "runs": 1}))
    while not api.emu.snapshot()["loading"]:
        await asyncio.sleep(0.05)
    api.core.model_uses.record("local", GEMMA, time.time())  # a session's request went to it meanwhile
    api.core.model_uses.flush()
    api.emu.update(load_seconds=0.2)
    api.emu.finish_loads()
    r = await bench
    assert r.status_code == 200, r.text
    text = r.json()["text"]
    assert f"Left {GEMMA}" in text and "shared by team 'ml'" in text
    assert "What was loaded before has been put back." not in text
    assert sorted(k for k, _ in loaded(api.emu)) == [GEMMA, QWEN]


async def test_a_benchmark_whose_restore_fails_does_not_say_it_put_the_instance_back(advice: Api) -> None:
    from lmstudio_tray.emulator import Fault

    advice.emu.add_fault(Fault(path="/v1/chat/completions", method="POST", status=500))
    advice.emu.add_fault(Fault(path="/api/v1/models/unload", method="POST", status=500))
    r = await post(advice, "benchmark", {"model": GEMMA, "runs": 1})
    assert r.status_code == 409, r.text
    text = r.text
    assert "has been put back" not in text and "putting back what was loaded failed" in text
    assert "lmstudio_list_models" in text
    assert GEMMA in [k for k, _ in loaded(advice.emu)]
