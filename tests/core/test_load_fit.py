"""Load options, the "will it fit?" check and real load progress, against the emulator (and its fake `lms`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.core.config.schema import Config, FitCheck, InstanceConfig, LoadConfig
from lmstudio_tray.core.control.actions import LoadPath
from lmstudio_tray.core.control.loadmarks import LoadMark
from lmstudio_tray.core.errors import ActionError, ActionErrorKind
from lmstudio_tray.core.events import ALL_KINDS, LoadProgressed, LoadWaiting, LoadWarned
from lmstudio_tray.core.lmstudio.load_options import LoadOptions
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.emulator import Emulator
from tests.core.helpers import Recorder, make_core
from tests.core.remote import remote_url
from tests.emulator_fixtures import EmulatorFactory, LmsHome

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
GiB = 1024**3


def core_with(url: str, *, lms: bool, fit_check: FitCheck = FitCheck.WARN) -> Core:
    cfg = Config(instances=[InstanceConfig(name="local", url=url)], loads=LoadConfig(fit_check=fit_check))
    return Core(cfg, lms_path=True if lms else None)  # type: ignore[arg-type]


async def until(check: object, what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def load_requests(emu: Emulator) -> list[str]:
    return [r.path for r in emu.requests if r.method == "POST" and r.path in ("/api/v1/models/load", "/api/v1/chat")]


async def test_lms_load_applies_every_option(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    core = make_core(emu.api_url, lms=True)
    try:
        await core.monitor.warm_up()
        opts = LoadOptions(context_length=8192, gpu=0.5, ttl=600, parallel=2, identifier="mine")
        result = await core.actions.load("local", QWEN, options=opts)
        assert (result.instance_id, result.context_length, result.via) == ("mine", 8192, LoadPath.LMS)
        [inst] = emu.state.engine.loaded()
        assert (inst.identifier, inst.context_length, inst.ttl) == ("mine", 8192, 600)
        assert (inst.options.gpu, inst.options.parallel) == (0.5, 2)
        # asking for that identifier again answers with the copy that has it
        again = await core.actions.load("local", QWEN, options=LoadOptions(identifier="mine"))
        assert again.already_loaded and again.instance_id == "mine"
    finally:
        await core.monitor.stop()


async def test_options_the_load_path_cannot_apply_are_refused_before_anything_runs(emulator: Emulator) -> None:
    core = make_core(emulator.api_url)  # no `lms`: loads go over REST
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError) as err:
            await core.actions.load("local", QWEN, options=LoadOptions(gpu=0.5, parallel=2))
        assert err.value.kind is ActionErrorKind.NOT_SUPPORTED
        assert "cannot set GPU offload, parallel requests" in str(err.value) and "`npx lmstudio install-cli`" in str(
            err.value)
        assert load_requests(emulator) == [] and emulator.loaded() == []
        # what REST can apply (a TTL) goes through it
        result = await core.actions.load("local", QWEN, options=LoadOptions(ttl=300))
        assert result.via is LoadPath.REST and emulator.state.engine.loaded()[0].ttl == 300
    finally:
        await core.monitor.stop()


async def test_a_load_that_will_not_fit_warns_then_loads_or_is_refused(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(memory_bytes=3 * GiB)  # Qwen 4B fits with 4k of context, not with 32k
    core = core_with(emu.api_url, lms=True)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    try:
        await core.monitor.warm_up()
        fits = await core.actions.load("local", QWEN, context_length=4096)
        assert fits.warnings == () and rec.of("load.warned") == []

        with pytest.raises(ActionError) as err:  # warn: said before the load starts, then LM Studio refuses it
            await core.actions.load("local", QWEN, context_length=32768)
        [warned] = rec.of("load.warned")
        assert isinstance(warned, LoadWarned) and warned.fits is False and "will not fit" in warned.message
        kinds = rec.kinds()
        assert kinds.index("load.warned") < kinds.index("load.started", kinds.index("load.warned"))
        assert "insufficient system resources" in str(err.value)

        core.config = core.config.model_copy(update={"loads": LoadConfig(fit_check=FitCheck.REFUSE)})
        rec.events.clear()
        with pytest.raises(ActionError) as err:
            await core.actions.load("local", QWEN, context_length=32768)
        assert err.value.kind is ActionErrorKind.WONT_FIT
        assert "will not fit" in str(err.value) and "about 3.1 GiB" in str(err.value)
        assert "load.started" not in rec.kinds()  # nothing was loaded
        assert [i.context_length for i in emu.state.engine.loaded()] == [4096]
    finally:
        await core.monitor.stop()


async def test_fit_check_off_asks_no_estimate(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(memory_bytes=3 * GiB)
    core = core_with(emu.api_url, lms=True, fit_check=FitCheck.OFF)
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError) as err:  # LM Studio's own guardrail still refuses it, minutes later
            await core.actions.load("local", QWEN, context_length=32768)
        assert err.value.kind is ActionErrorKind.FAILED
    finally:
        await core.monitor.stop()


async def test_estimate_through_lms_and_none_without_it(lms_home: LmsHome, emulator_factory: EmulatorFactory) -> None:
    emu = lms_home.emulator
    emu.update(memory_bytes=3 * GiB)
    core = make_core(emu.api_url, lms=True)
    other = emulator_factory()
    try:
        await core.monitor.warm_up()
        est = await core.actions.estimate("local", QWEN, options=LoadOptions(context_length=32768))
        assert est.fits is False and est.context_length == 32768
        assert (await core.actions.estimate("local", QWEN, options=LoadOptions(context_length=4096))).fits
        with remote_url(other.api_url) as url:
            far = make_core(url)
            try:
                await far.monitor.warm_up()
                with pytest.raises(ActionError) as err:
                    await far.actions.estimate("local", QWEN)
                assert err.value.kind is ActionErrorKind.NOT_SUPPORTED and "another machine" in str(err.value)
            finally:
                await far.monitor.stop()
    finally:
        await core.monitor.stop()


async def test_a_remote_load_shows_lmstudio_s_own_progress(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=600)  # held until the test has seen progress
    rec = Recorder()
    with remote_url(emu.api_url) as url:
        core = make_core(url)
        core.bus.subscribe(rec, *ALL_KINDS)
        try:
            await core.monitor.warm_up()
            task = asyncio.ensure_future(core.actions.load("local", QWEN, context_length=8192))
            await until(lambda: any(isinstance(e, LoadProgressed) and not e.estimated and (e.progress or 0) > 0
                                    for e in rec.events), "LM Studio's own progress")
            snap = core.monitor.snapshot("local")
            assert snap is not None and snap.loads and not snap.loads[0].estimated
            emu.finish_loads()
            result = await task
            assert (result.instance_id, result.context_length, result.via) == (QWEN, 8192, LoadPath.EVENTS)
            assert any("No memory estimate" in w and "another machine" in w for w in result.warnings)
            assert load_requests(emu) == ["/api/v1/chat"]
        finally:
            await core.monitor.stop()


async def test_a_remote_load_cancelled_in_lmstudio_is_a_cancelled_action(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(load_seconds=600)
    rec = Recorder()
    with remote_url(emu.api_url) as url:
        core = make_core(url)
        core.bus.subscribe(rec, *ALL_KINDS)
        try:
            await core.monitor.warm_up()
            task = asyncio.ensure_future(core.actions.load("local", QWEN))
            await until(lambda: bool(emu.state.engine.pending_jobs()), "the load in LM Studio")
            [job] = emu.state.engine.pending_jobs()
            # a person cancels it in LM Studio's window (what the control port's cancel stands for)
            r = await asyncio.to_thread(httpx.post, f"{emu.control_url}/_emulator/load/{job.job_id}/cancel")
            assert r.status_code == 200
            with pytest.raises(ActionError) as err:
                await task
            assert err.value.kind is ActionErrorKind.CANCELLED
            assert rec.of("load.failed") and emu.loaded() == []
        finally:
            await core.monitor.stop()


async def test_an_lms_load_cancelled_in_lmstudio_is_a_cancelled_action(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(load_seconds=600)
    core = make_core(emu.api_url, lms=True)
    try:
        await core.monitor.warm_up()
        task = asyncio.ensure_future(core.actions.load("local", QWEN))
        await until(lambda: bool(emu.state.engine.pending_jobs()), "the load in LM Studio")
        [job] = emu.state.engine.pending_jobs()
        r = await asyncio.to_thread(httpx.post, f"{emu.control_url}/_emulator/load/{job.job_id}/cancel")
        assert r.status_code == 200
        with pytest.raises(ActionError) as err:
            await task
        assert err.value.kind is ActionErrorKind.CANCELLED
    finally:
        await core.monitor.stop()


async def test_the_loading_process_writes_its_progress_for_the_others(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(load_seconds=600)
    core = make_core(emu.api_url, lms=True)
    folder = core.actions.marks.directory
    try:
        await core.monitor.warm_up()
        task = asyncio.ensure_future(core.actions.load("local", QWEN))

        def real_progress() -> bool:
            for path in folder.glob("*.json") if folder.exists() else ():
                data = json.loads(path.read_text())
                if data.get("progress") and data.get("estimated") is False:
                    return True
            return False

        await until(real_progress, "a mark with LM Studio's progress")
        emu.finish_loads()
        await task
        assert list(folder.glob("*.json")) == []  # no mark outlives its load
    finally:
        await core.monitor.stop()


async def test_a_load_waits_for_another_process_and_follows_its_progress(emulator: Emulator, tmp_path: Path) -> None:
    core = make_core(emulator.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # the other lmstudio-tray
    try:
        await core.monitor.warm_up()
        mark = LoadMark(emulator.api_url, QWEN, None, other.pid, time.time(), 30.0, progress=0.25, estimated=False)
        path = core.actions.marks.add(mark)
        assert path is not None
        task = asyncio.ensure_future(core.actions.load("local", QWEN))
        await until(lambda: any(isinstance(e, LoadProgressed) and e.progress == 0.25 for e in rec.events),
                    "the other process's progress")
        [waiting] = [e for e in rec.events if isinstance(e, LoadWaiting)]
        assert waiting.pid == other.pid and waiting.model == QWEN
        core.actions.marks.update(path, LoadMark(emulator.api_url, QWEN, None, other.pid, mark.started_at, 30.0,
                                                 progress=0.75, estimated=False))
        await until(lambda: any(isinstance(e, LoadProgressed) and e.progress == 0.75 and not e.estimated
                                for e in rec.events), "its next progress")
        emulator.load(QWEN)  # the other process's load lands
        core.actions.marks.remove(path)
        result = await task
        assert result.already_loaded and "load.started" not in rec.kinds()
    finally:
        other.kill()
        other.wait()
        await core.monitor.stop()
