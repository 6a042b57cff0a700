"""Actions against the emulator: loads (single-flight, progress, failure), unload, switch, server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from lmstudio_tray.core.config.schema import Config, InstanceConfig
from lmstudio_tray.core.errors import ActionError, ActionErrorKind
from lmstudio_tray.core.events import ALL_KINDS, Event, LoadFailed, LoadProgressed
from lmstudio_tray.core.models import InstanceState, LoadProgress
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.emulator import Emulator
from tests.core.helpers import Recorder, make_core
from tests.emulator_fixtures import EmulatorFactory, LmsHome

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
EMBED = "text-embedding-nomic-embed-text-v1.5"


async def test_load_reports_start_progress_and_finish(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=1.2)
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    try:
        await core.monitor.warm_up()
        task = asyncio.ensure_future(core.actions.load("local", QWEN, context_length=8192))
        await asyncio.sleep(0.8)
        snap = core.monitor.snapshot("local")
        assert snap is not None and snap.state is InstanceState.LOADING
        assert snap.loads[0].model == QWEN and snap.loads[0].eta_seconds is not None
        result = await task
        assert (result.model, result.instance_id, result.context_length) == (QWEN, QWEN, 8192)
        assert result.seconds >= 1.0
        kinds = rec.kinds()
        assert kinds.index("load.started") < kinds.index("load.progress") < kinds.index("load.finished")
        assert core.monitor.snapshot("local").state is InstanceState.READY  # type: ignore[union-attr]
        # the learned throughput now predicts this instance's loads
        size = core.monitor.snapshot("local").model(QWEN).size_bytes  # type: ignore[union-attr]
        assert core.actions.estimate_load_seconds("local", QWEN) == pytest.approx(result.seconds, rel=0.05), size
    finally:
        await core.monitor.stop()


async def test_concurrent_loads_share_one_request(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=0.4)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        results = await asyncio.gather(*(core.actions.load("local", QWEN) for _ in range(8)))
        assert {r.instance_id for r in results} == {QWEN}
        loads = [r for r in emu.requests if r.path == "/api/v1/models/load"]
        assert len(loads) == 1
        assert [r["identifier"] for r in emu.loaded()] == [QWEN]  # no :2 from a double click
    finally:
        await core.monitor.stop()


async def _until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _loading(emu: Emulator) -> list[str]:
    return [j["identifier"] for j in emu.snapshot()["loading"]]


async def test_a_load_asking_another_context_waits_then_loads_as_asked(emulator_factory: EmulatorFactory) -> None:
    """Single-flight shares a load only with callers that asked for its context (or for none): a caller
    asking for another context waits for it, then gets its own load, never the other one's result."""
    emu = emulator_factory(load_seconds=3600)  # each load is held until the test finishes it
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        first = asyncio.ensure_future(core.actions.load("local", GEMMA, context_length=8192))
        await _until(lambda: _loading(emu) == [GEMMA], "the first load")
        same = asyncio.ensure_future(core.actions.load("local", GEMMA, context_length=8192))
        any_context = asyncio.ensure_future(core.actions.load("local", GEMMA))
        bigger = asyncio.ensure_future(core.actions.load("local", GEMMA, context_length=16384))
        assert core.actions.loading("local", GEMMA)
        emu.finish_loads()
        r1, r_same, r_any = await asyncio.gather(first, same, any_context)
        assert r1 == r_same == r_any and (r1.instance_id, r1.context_length) == (GEMMA, 8192)
        await _until(lambda: _loading(emu) == [f"{GEMMA}:2"], "the load with the other context")
        assert not bigger.done()
        emu.finish_loads()
        r2 = await bigger
        assert (r2.instance_id, r2.context_length, r2.already_loaded) == (f"{GEMMA}:2", 16384, False)
        assert sorted((m["identifier"], m["contextLength"]) for m in emu.loaded()) == [
            (GEMMA, 8192), (f"{GEMMA}:2", 16384)]
        assert len([r for r in emu.requests if r.path == "/api/v1/models/load"]) == 2
    finally:
        await core.monitor.stop()


async def test_a_load_asking_the_context_the_running_load_gets_is_already_loaded_after_it(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = emulator_factory(load_seconds=3600)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        default = asyncio.ensure_future(core.actions.load("local", GEMMA))  # LM Studio's default: 4096
        await _until(lambda: _loading(emu) == [GEMMA], "the first load")
        asked = asyncio.ensure_future(core.actions.load("local", GEMMA, context_length=4096))
        emu.finish_loads()
        r_default, r_asked = await asyncio.gather(default, asked)
        assert (r_default.context_length, r_default.already_loaded) == (4096, False)
        assert (r_asked.instance_id, r_asked.context_length, r_asked.already_loaded) == (GEMMA, 4096, True)
        assert len([r for r in emu.requests if r.path == "/api/v1/models/load"]) == 1
        assert await core.actions.wait_for_load("local", GEMMA) is None  # nothing in flight any more
    finally:
        await core.monitor.stop()


async def test_loading_a_loaded_model_is_a_no_op(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        result = await core.actions.load("local", QWEN)
        assert result.already_loaded and not [r for r in emu.requests if r.path.endswith("/load")]
    finally:
        await core.monitor.stop()


async def test_failed_load_says_why_and_publishes_it(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(fail_loads={GEMMA: "Model loading was stopped due to insufficient system resources."})
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    loads_at_failure: list[LoadProgress] = []

    def on_failed(event: Event) -> None:
        snap = core.monitor.snapshot("local")
        loads_at_failure.extend(snap.loads if snap else ())

    core.bus.subscribe(on_failed, LoadFailed)
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError, match="insufficient system resources"):
            await core.actions.load("local", GEMMA)
        failed = rec.of("load.failed")
        assert failed and "insufficient" in failed[0].reason  # type: ignore[attr-defined]
        # whoever redraws on the event (the tray) no longer sees the load
        assert [lp.model for lp in loads_at_failure] == []
        snap = core.monitor.snapshot("local")
        assert snap is not None and snap.loads == () and snap.state is InstanceState.IDLE
    finally:
        await core.monitor.stop()


async def test_unknown_model_and_offline_server_give_clear_errors(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError, match="not downloaded") as err:
            await core.actions.load("local", "nobody/nothing-7b")
        assert err.value.kind == "unknown_model"
        emu.stop_server()
        core.monitor.invalidate("local")
        with pytest.raises(ActionError, match="not running") as err:
            await core.actions.load("local", QWEN)
        assert err.value.kind == "offline"
    finally:
        await core.monitor.stop()


async def test_with_several_instances_the_hints_name_the_instance(emulator_factory: EmulatorFactory) -> None:
    up, down = emulator_factory(), emulator_factory(server_running=False)
    core = make_core(up.api_url, down.api_url)  # instances "local" and "i1"
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError) as err:
            await core.actions.load("i1", QWEN)
        # the whole command inside the code span: pasting it starts the right server
        assert "start it with `lmstudio-tray server start --instance i1` or" in str(err.value)
        with pytest.raises(ActionError) as err:
            await core.actions.load("local", "nobody/nothing-7b")
        assert "see `lmstudio-tray models list --instance local` for what is" in str(err.value)
    finally:
        await core.monitor.stop()


async def test_unload_by_key_by_id_and_all(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    emu.load(QWEN)
    emu.load(GEMMA)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        assert (await core.actions.unload("local", f"{QWEN}:2")).unloaded == (f"{QWEN}:2",)
        assert (await core.actions.unload("local", QWEN)).unloaded == (QWEN,)
        with pytest.raises(ActionError, match="not loaded"):
            await core.actions.unload("local", QWEN)
        assert (await core.actions.unload_all("local")).unloaded == (GEMMA,)
        assert emu.loaded() == []
    finally:
        await core.monitor.stop()


async def test_switch_unloads_other_chat_models_but_keeps_embeddings(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(GEMMA)
    emu.load(EMBED)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        result = await core.actions.switch("local", QWEN)
        assert result.instance_id == QWEN
        assert sorted(r["identifier"] for r in emu.loaded()) == sorted([QWEN, EMBED])
    finally:
        await core.monitor.stop()


async def test_unload_and_unload_all_leave_what_keep_names(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    emu.load(GEMMA)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        r = await core.actions.unload("local", QWEN, keep=[QWEN])
        assert (r.unloaded, r.kept) == ((), (QWEN,))
        r = await core.actions.unload_all("local", keep=[QWEN])
        assert (r.unloaded, r.kept) == ((GEMMA,), (QWEN,))
        assert [i["identifier"] for i in emu.loaded()] == [QWEN]
        # without keep (the tray, the CLI) nothing changes: everything goes
        assert (await core.actions.unload_all("local")).unloaded == (QWEN,)
    finally:
        await core.monitor.stop()


async def test_keep_names_a_model_key_or_one_loaded_copy(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    emu.load(QWEN)  # qwen/qwen3-4b-2507:2
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        # a session on the copy `:2` keeps only that copy
        r = await core.actions.unload_all("local", keep=[f"{QWEN}:2"])
        assert (r.unloaded, r.kept) == ((QWEN,), (f"{QWEN}:2",))
        emu.load(QWEN)
        await core.monitor.get("local", max_age=0)
        # a session on the key may be served by any copy: all stay
        r = await core.actions.unload_all("local", keep=[QWEN])
        assert r.unloaded == () and sorted(r.kept) == sorted([QWEN, f"{QWEN}:2"])
    finally:
        await core.monitor.stop()


async def test_switch_loads_the_new_model_and_keeps_what_keep_names(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    emu.load("qwen/qwen2.5-vl-7b")
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        result = await core.actions.switch("local", GEMMA, keep=[QWEN])
        assert result.instance_id == GEMMA
        assert (result.unloaded, result.kept) == (("qwen/qwen2.5-vl-7b",), (QWEN,))
        assert sorted(i["identifier"] for i in emu.loaded()) == sorted([GEMMA, QWEN])
    finally:
        await core.monitor.stop()


async def test_failed_switch_leaves_the_old_model(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(fail_loads={QWEN: "Failed to load model"})
    emu.load(GEMMA)
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError):
            await core.actions.switch("local", QWEN)
        assert [r["identifier"] for r in emu.loaded()] == [GEMMA]
    finally:
        await core.monitor.stop()


async def test_server_stop_and_start_through_lms(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    core = make_core(emu.api_url, lms=True)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    try:
        assert core.lms_path == lms_home.lms
        await core.monitor.warm_up()
        assert core.monitor.snapshot("local").can_control_server  # type: ignore[union-attr]
        await core.actions.server_stop("local")
        assert not emu.server_running
        assert core.monitor.snapshot("local").state is InstanceState.OFFLINE  # type: ignore[union-attr]
        await core.actions.server_start("local")
        assert emu.server_running
        assert core.monitor.snapshot("local").state is InstanceState.IDLE  # type: ignore[union-attr]
        assert "server.stopped" in rec.kinds() and "server.started" in rec.kinds()
        status = await core.actions.server_status("local")
        assert status["running"] is True
    finally:
        await core.monitor.stop()


async def test_server_control_without_lms_says_how_to_get_it(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    core = make_core(emu.api_url, lms=None)
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError, match="`lms` command was not found") as err:
            await core.actions.server_start("local")
        assert err.value.kind == "lms_missing"
    finally:
        await core.monitor.stop()


async def test_lms_load_gives_lmstudio_progress_and_can_be_cancelled(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(load_seconds=1.5)
    core = make_core(emu.api_url, lms=True)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    try:
        await core.monitor.warm_up()
        result = await core.actions.load("local", QWEN)
        assert result.instance_id == QWEN
        real = [e for e in rec.of("load.progress") if isinstance(e, LoadProgressed) and not e.estimated]
        assert real, "lms load reports LM Studio's own progress, not only our estimate"
        assert any(r["identifier"] == QWEN for r in emu.loaded())

        emu.update(load_seconds=4.0)
        rec.events.clear()
        task = asyncio.ensure_future(core.actions.load("local", GEMMA))
        for _ in range(300):  # cancel once LM Studio (via lms) reports progress: the load is under way
            await asyncio.sleep(0.05)
            snap = core.monitor.snapshot("local")
            if snap is not None and any(not load.estimated for load in snap.loads):
                break
        assert core.actions.can_cancel("local", GEMMA)
        assert await core.actions.cancel_load("local", GEMMA)
        with pytest.raises(ActionError) as err:
            await task
        assert err.value.kind == "cancelled"
        await asyncio.sleep(0.3)
        assert not any(r["modelKey"] == GEMMA for r in emu.loaded())
    finally:
        await core.monitor.stop()


async def test_a_remote_server_is_started_and_stopped_only_on_its_machine(lms_home: LmsHome) -> None:
    """`lms server start|stop` have no --host option: a remote instance (even with `lms_host` set) gets a clear
    refusal naming what to do on that machine, `lms` is not run, and it is not offered as controllable."""
    emu = lms_home.emulator
    config = Config(instances=[InstanceConfig(name="box", url="http://192.0.2.7:1234", lms_host="192.0.2.7")])
    core = Core(config, lms_path=lms_home.lms)
    try:
        for action in (core.actions.server_start, core.actions.server_stop):
            with pytest.raises(ActionError, match="only on the machine it runs on") as err:
                await action("box")
            assert err.value.kind is ActionErrorKind.NOT_SUPPORTED
            assert "`lms server start` on that machine" in str(err.value)
        assert emu.server_running
        assert core.monitor.instance("box").can_control_server is False
    finally:
        await core.monitor.stop()
