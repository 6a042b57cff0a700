"""The store attached to a running core and endpoint, against the emulated LM Studio over real HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from lmstudio_tray.analytics import attach_analytics
from lmstudio_tray.analytics.resources import is_lmstudio_name
from lmstudio_tray.analytics.store import reading
from lmstudio_tray.api.server import EndpointServer
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.control.eta import DEFAULT_BYTES_PER_SECOND
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.wiring import attach_surfaces
from tests.analytics import streams as s
from tests.analytics.conftest import Stack, wait_for

MODEL = "qwen/qwen3-4b-2507"


def query(stack: Stack, sql: str, *args: object) -> list[sqlite3.Row]:
    with reading(stack.analytics.path) as conn:
        return list(conn.execute(sql, args))


def test_validate_verdicts_and_forwarded_turns_are_recorded(stack: Stack) -> None:
    stack.emu.load(MODEL, context_length=8192)
    base = stack.emu.api_url + "/v1"
    with stack.client() as c:
        wait_for(lambda: c.post("/v1/validate", json={"model": MODEL, "base_url": base}).json()["ok"],
                 what="the model to show as loaded")
        for model in (MODEL, "no/such-model"):
            r = c.post("/v1/validate", json={"model": model, "base_url": base, "session_id": "ses_run1"})
            assert r.status_code == 200
        r = c.post("/v1/events", json={"events": s.opencode_run(base, MODEL, time.time() - 5)})
        assert r.json() == {"accepted": 5}
    stack.flushed()
    verdicts = query(stack, "SELECT instance, model, category, ok, latency_ms FROM verdicts WHERE session_id = ?",
                     "ses_run1")
    assert [(v["instance"], v["model"], v["category"], v["ok"]) for v in verdicts] == [
        ("local", MODEL, "ready", 1), ("local", "no/such-model", "unknown_model", 0)]
    assert all(v["latency_ms"] > 0 for v in verdicts)
    turns = query(stack, "SELECT message_id, instance, loaded_context, tokens_per_s FROM turns ORDER BY message_id")
    assert [(t["message_id"], t["instance"], t["loaded_context"]) for t in turns] == [
        ("msg_build", "local", 8192), ("msg_title", "local", 8192)]
    assert query(stack, "SELECT outcome FROM sessions")[0]["outcome"] == "ok"


def test_loads_are_recorded_and_seed_the_load_eta_of_the_next_start(stack: Stack, tmp_path: Path) -> None:
    result = stack.thread.submit(stack.core.actions.load("local", MODEL)).result(60)
    assert not result.already_loaded
    stack.flushed()
    wait_for(lambda: query(stack, "SELECT count(*) FROM model_events WHERE kind = 'loaded'")[0][0],
             what="the monitor to see the load")
    stack.flushed()
    load = query(stack, "SELECT instance, model, ok, seconds, size_bytes FROM loads")[0]
    assert (load["instance"], load["model"], load["ok"]) == ("local", MODEL, 1)
    assert load["seconds"] > 0 and load["size_bytes"] > 0
    assert query(stack, "SELECT model, context_length FROM model_events WHERE kind = 'loaded'")[0]["model"] == MODEL
    stack.thread.stop()

    # a new core over the same store starts with the learned throughput instead of the default
    cfg = parse_config({"instances": [{"name": "local", "url": stack.emu.api_url}], "endpoint": {"port": 0}})
    core = Core(cfg, lms_path=None)
    attach_analytics(core, path=stack.analytics.path)
    thread = CoreThread(core)
    thread.start()
    try:
        expected = load["size_bytes"] / load["seconds"]
        assert core.estimator.throughput("local") == pytest.approx(expected, rel=1e-6)
        assert core.estimator.throughput("local") != DEFAULT_BYTES_PER_SECOND
    finally:
        thread.stop()


def state(stack: Stack) -> str | None:
    snap = stack.core.monitor.snapshot("local")
    return snap.state.value if snap is not None else None


def test_health_transitions_are_recorded(stack: Stack) -> None:
    wait_for(lambda: state(stack) in ("idle", "ready"), what="the first poll")
    stack.emu.stop_server()
    wait_for(lambda: state(stack) == "offline", what="offline")
    stack.emu.start_server()
    wait_for(lambda: state(stack) not in (None, "offline"), timeout=60, what="back")
    stack.flushed()
    states = [r["new"] for r in query(stack, "SELECT new FROM health WHERE kind = 'state' ORDER BY id")]
    assert "offline" in states and states[-1] in ("idle", "ready")
    kinds = {r["kind"] for r in query(stack, "SELECT kind FROM health")}
    assert {"offline", "online"} <= kinds


def test_resource_samples_of_local_processes_and_loaded_sizes(stack_factory: Any) -> None:
    # stands in for LM Studio's processes: a real process found by the same psutil walk
    proc = subprocess.Popen(["sleep", "300"])
    try:
        stack: Stack = stack_factory(sample_interval=0.2, process_filter=lambda p: p.pid == proc.pid)
        stack.emu.load(MODEL, context_length=4096)
        size = next(m.size_bytes for m in stack.emu.catalog if m.key == MODEL)
        wait_for(lambda: query(stack, "SELECT count(*) FROM resources WHERE loaded_models = 1")[0][0],
                 what="a sample with the model loaded")
        row = query(stack, "SELECT * FROM resources WHERE loaded_models = 1 ORDER BY id DESC LIMIT 1")[0]
        assert row["instance"] == "local" and row["processes"] == 1
        rss = psutil.Process(proc.pid).memory_info().rss
        assert 0 < row["rss_bytes"] <= rss * 2
        assert row["loaded_bytes"] == size
        present = query(stack, "SELECT model, context_length FROM model_events WHERE kind IN ('present', 'loaded')")
        assert (MODEL, 4096) in [tuple(r) for r in present]
    finally:
        proc.kill()
        proc.wait()


def test_a_locked_database_never_holds_up_a_validate(stack: Stack) -> None:
    base = stack.emu.api_url + "/v1"
    blocker = sqlite3.connect(stack.analytics.path, timeout=1, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer thread now waits on the lock
    try:
        with stack.client() as c:
            for i in range(5):
                r = c.post("/v1/validate", json={"model": MODEL, "base_url": base, "session_id": f"locked{i}"})
                assert r.status_code == 200
        # every answer came back while the writer was stuck: nothing of them is in the file yet
        assert blocker.execute("SELECT count(*) FROM verdicts WHERE session_id LIKE 'locked%'").fetchone()[0] == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: len(query(stack, "SELECT 1 FROM verdicts WHERE session_id LIKE 'locked%'")) == 5,
             what="the queued verdicts to be written once the lock went")


def test_tips_are_served_from_a_cache_for_the_transform_and_the_tray(stack: Stack) -> None:
    base = stack.emu.api_url + "/v1"
    with stack.client() as c:
        for _ in range(4):
            c.post("/v1/validate", json={"model": "qwen/qwen3-4b-2570", "base_url": base})
    stack.flushed()
    analytics = stack.server.insights  # what the endpoint (and the tray) were given
    assert analytics is stack.analytics
    asyncio.run(asyncio.to_thread(stack.analytics.refresh_tips))
    texts = analytics.tip_texts("qwen/qwen3-4b-2570")
    assert len(texts) == 1 and "Fix the model id 'qwen/qwen3-4b-2570'" in texts[0] and MODEL in texts[0]
    assert analytics.tip_texts(MODEL) == []
    with stack.client() as c:  # OpenCode sees the tip about the model it is about to use, and only that one
        bad = c.post("/v1/transform/system", json={"model": "qwen/qwen3-4b-2570", "base_url": base}).json()
        good = c.post("/v1/transform/system", json={"model": MODEL, "base_url": base}).json()
    assert any("Fix the model id 'qwen/qwen3-4b-2570'" in line for line in bad["system"])
    assert not any(line.startswith("LM Studio tip:") for line in good["system"])
    # no analytics attached: no tips, no error
    assert EndpointServer(Core(parse_config({}), lms_path=None)).insights.tip_texts() == []


def test_disabled_analytics_attach_nothing(tmp_path: Path) -> None:
    core = Core(parse_config({"analytics": {"enabled": False}}), lms_path=None)
    assert attach_analytics(core, path=tmp_path / "a.sqlite3") is None
    assert attach_surfaces(core, command="test", notify=False).analytics is None
    assert not (tmp_path / "a.sqlite3").exists()


def test_lmstudio_processes_are_recognised_by_name() -> None:
    for name in ("LM Studio", "LM Studio Helper (Renderer)", "lm-studio", "LM Studio.exe", "llmworker", "llmster"):
        assert is_lmstudio_name(name), name
    for name in ("lmstudio-tray", "python3", "lms", "bash"):
        assert not is_lmstudio_name(name), name


def test_a_corrupt_store_turns_analytics_off_and_nothing_else(stack_factory: Any, tmp_path: Path) -> None:
    db = tmp_path / "analytics.sqlite3"  # the file the stack opens
    db.write_bytes(b"garbage" * 1000)
    stack: Stack = stack_factory()
    assert stack.analytics.writer is None
    assert stack.analytics.error is not None and "move it aside" in stack.analytics.error
    with stack.client() as c:
        r = c.post("/v1/validate", json={"model": MODEL, "base_url": stack.emu.api_url + "/v1"})
        assert r.status_code == 200  # the endpoint runs on without the store
        c.post("/v1/events", json={"events": s.opencode_run(stack.emu.api_url + "/v1", MODEL, time.time())})
    assert db.read_bytes() == b"garbage" * 1000  # kept for the user to inspect
