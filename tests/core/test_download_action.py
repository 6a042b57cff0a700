"""The download action against the emulator over real HTTP: events from start to the model being listed, attaching
to a running download, a failure halfway, already downloaded, unknown models, no REST route with and without `lms`,
LM Studio offline before and during a download."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lmstudio_tray.cli import build_parser
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import OpenCodeToolsConfig
from lmstudio_tray.core.config.store import parse_value, set_value
from lmstudio_tray.core.control.downloads import agent_may_download, agent_refusal
from lmstudio_tray.core.control.search import search
from lmstudio_tray.core.errors import ActionError, ActionErrorKind
from lmstudio_tray.core.events import (
    DOWNLOAD_KINDS,
    DownloadCompleted,
    DownloadFailed,
    DownloadProgressed,
    Event,
)
from lmstudio_tray.core.lmstudio.client import DownloadStatus
from lmstudio_tray.core.models import DownloadFailure
from lmstudio_tray.core.runtime import Core
from tests.core.helpers import Recorder, make_core
from tests.emulator_fixtures import EmulatorFactory, LmsHome

GRANITE = "ibm/granite-4-micro"
GRANITE_BYTES = 2_279_145_003
DOWNLOADED = "qwen/qwen3-4b-2507"  # in the emulator's default catalog


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait for a condition with a generous deadline (never a fixed wait)."""
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def listed(core: Core, key: str) -> bool:
    snap = core.monitor.snapshot("local")
    return snap is not None and snap.model(key) is not None


async def test_download_reports_progress_then_lists_the_model(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0)  # stands still until the test finishes it
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *DOWNLOAD_KINDS)
    seen_at_completion: list[bool] = []
    core.bus.subscribe(lambda _e: seen_at_completion.append(listed(core, GRANITE)), DownloadCompleted)
    try:
        await core.monitor.warm_up()
        assert not listed(core, GRANITE)
        started = await core.downloads.start("local", GRANITE)
        assert started.status is DownloadStatus.DOWNLOADING and started.job_id and started.total_bytes == GRANITE_BYTES
        await until(lambda: bool(rec.of("download.progress")), "progress")
        progress = rec.of("download.progress")[0]
        assert isinstance(progress, DownloadProgressed) and progress.bytes_per_second == 1.0
        assert [d.job_id for d in core.status().downloads] == [started.job_id]
        assert core.status().to_json()["downloads"][0]["model"] == GRANITE
        emu.finish_downloads()
        result = await core.downloads.wait("local", started.job_id)
        assert result.status is DownloadStatus.COMPLETED and result.downloaded_bytes == GRANITE_BYTES
        assert rec.kinds() == ["download.started", "download.progress", "download.completed"]
        assert seen_at_completion == [True]  # status, menus and search have it when the event says so
        snap = core.monitor.snapshot("local")
        assert snap is not None
        assert GRANITE in [hit.model.key for hit in search([("local", m) for m in snap.models], "granite")]
        assert core.status().downloads == ()
    finally:
        await core.stop()


async def test_asking_again_attaches_to_the_running_download(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0)
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *DOWNLOAD_KINDS)
    try:
        await core.monitor.warm_up()
        first = await core.downloads.start("local", GRANITE)
        again = await core.downloads.start("local", GRANITE)
        assert again.job_id == first.job_id and again.attached and not first.attached
        assert len(core.downloads.active()) == 1
        assert [e.attached for e in rec.events if e.kind == "download.started"] == [False, True]  # type: ignore[attr-defined]
    finally:
        await core.stop()
    assert len(emu.downloads()) == 1  # one job in LM Studio, and stopping to follow it leaves it there
    assert emu.downloads()[0]["status"] == "downloading"


async def test_a_download_that_fails_halfway(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0, fail_downloads={GRANITE: 0.5})
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *DOWNLOAD_KINDS)
    try:
        await core.monitor.warm_up()
        started = await core.downloads.start("local", GRANITE)
        assert started.job_id is not None
        emu.finish_downloads()
        result = await core.downloads.wait("local", started.job_id)
        assert result.status is DownloadStatus.FAILED and result.cause is DownloadFailure.FAILED
        failed = rec.of("download.failed")
        assert len(failed) == 1 and isinstance(failed[0], DownloadFailed)
        assert failed[0].cause is DownloadFailure.FAILED and failed[0].downloaded_bytes == GRANITE_BYTES // 2
        assert "download.completed" not in rec.kinds() and not listed(core, GRANITE)
    finally:
        await core.stop()


async def test_already_downloaded_and_unknown_model(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *DOWNLOAD_KINDS)
    try:
        await core.monitor.warm_up()
        result = await core.downloads.start("local", DOWNLOADED)
        assert result.status is DownloadStatus.ALREADY_DOWNLOADED and result.job_id is None
        assert rec.kinds() == ["download.already_downloaded"]
        with pytest.raises(ActionError, match="does not know the model 'nobody/nothing'") as err:
            await core.downloads.start("local", "nobody/nothing")
        assert err.value.kind is ActionErrorKind.UNKNOWN_MODEL
    finally:
        await core.stop()


async def test_offline_before_and_during_a_download(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0)
    core = make_core(emu.api_url)
    rec = Recorder()
    core.bus.subscribe(rec, *DOWNLOAD_KINDS)
    try:
        await core.monitor.warm_up()
        started = await core.downloads.start("local", GRANITE)
        assert started.job_id is not None
        emu.stop_server()
        result = await core.downloads.wait("local", started.job_id)
        assert result.status is DownloadStatus.FAILED and result.cause is DownloadFailure.UNREACHABLE
        assert "stopped answering" in (result.reason or "")
        await core.monitor.get("local", max_age=0)
        with pytest.raises(ActionError, match="not running") as err:
            await core.downloads.start("local", GRANITE)
        assert err.value.kind is ActionErrorKind.OFFLINE
    finally:
        await core.stop()


async def test_old_lm_studio_without_lms_says_what_to_do(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.31")
    core = make_core(emu.api_url)
    try:
        await core.monitor.warm_up()
        with pytest.raises(ActionError, match="npx lmstudio install-cli") as err:
            await core.downloads.start("local", GRANITE)
        assert err.value.kind is ActionErrorKind.LMS_MISSING
    finally:
        await core.stop()


async def test_old_lm_studio_downloads_through_lms_get(
    emulator_factory: EmulatorFactory, lms_home: LmsHome
) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, version="0.3.31", download_speed=5e9)
    core = make_core(emu.api_url, lms=True)
    rec = Recorder()
    core.bus.subscribe(rec, *DOWNLOAD_KINDS)
    try:
        await core.monitor.warm_up()
        started = await core.downloads.start("local", GRANITE)
        assert started.via_lms and started.job_id is not None
        result = await core.downloads.wait("local", started.job_id)
        assert result.status is DownloadStatus.COMPLETED and listed(core, GRANITE)
        missing = await core.downloads.start("local", "nobody/nothing")
        assert missing.job_id is not None
        failed = await core.downloads.wait("local", missing.job_id)
        assert failed.status is DownloadStatus.FAILED and failed.cause is DownloadFailure.UNKNOWN_MODEL
        kinds = rec.kinds()
        assert kinds[0] == "download.started" and "download.completed" in kinds and kinds[-1] == "download.failed"
    finally:
        await core.stop()


async def test_waiting_after_the_end_still_gets_the_result(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0)
    core = make_core(emu.api_url)
    ended = asyncio.Event()
    core.bus.subscribe(lambda _e: ended.set(), DownloadCompleted)
    try:
        await core.monitor.warm_up()
        started = await core.downloads.start("local", GRANITE)
        assert started.job_id is not None
        emu.finish_downloads()
        await ended.wait()
        await until(lambda: not core.downloads.active(), "the follow to end")
        result = await core.downloads.wait("local", started.job_id)
        assert result.status is DownloadStatus.COMPLETED
    finally:
        await core.stop()


def test_agents_download_only_what_the_config_allows() -> None:
    off = OpenCodeToolsConfig()
    assert not agent_may_download(off, GRANITE)
    refusal = agent_refusal(off, GRANITE)
    assert "`lmstudio-tray config set opencode.tools.downloads allowlist`" in refusal
    assert f"""`lmstudio-tray config set opencode.tools.download_allow '["{GRANITE}"]'`""" in refusal
    allow = OpenCodeToolsConfig(downloads="allowlist", download_allow=["qwen/*", "IBM/granite-4-micro"])
    assert agent_may_download(allow, "qwen/qwen3-8b") and agent_may_download(allow, "qwen/qwen3-8b@q4_k_m")
    assert agent_may_download(allow, "ibm/Granite-4-Micro")
    assert not agent_may_download(allow, "google/gemma-3-12b")
    refusal = agent_refusal(allow, "google/gemma-3-12b")
    assert "opencode.tools.download_allow: qwen/*, IBM/granite-4-micro" in refusal
    assert """'["qwen/*", "IBM/granite-4-micro", "google/gemma-3-12b"]'""" in refusal


def test_the_commands_a_refusal_names_parse_and_set_valid_values(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    for command in re.findall(r"`lmstudio-tray ([^`]+)`", agent_refusal(OpenCodeToolsConfig(), GRANITE)):
        args = shlex.split(command)
        build_parser().parse_args(["--config", str(path), *args])
        if args[:2] == ["config", "set"]:
            set_value(path, args[2], parse_value(args[3]))
    tools = load_config(path).opencode.tools
    assert agent_may_download(tools, GRANITE)  # doing what the refusal says allows the download


async def test_on_the_final_event_the_status_no_longer_lists_the_download(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0, fail_downloads={"qwen/qwen3-8b": 0.5})
    core = make_core(emu.api_url)
    seen: list[tuple[str, bool]] = []

    def on_end(event: Event) -> None:
        job_id = getattr(event, "job_id", "")
        waiting = asyncio.ensure_future(core.downloads.wait("local", job_id))  # a waiter the event starts
        seen.append((event.kind, job_id in [d.job_id for d in core.status().downloads]))
        waiters.append(waiting)

    waiters: list[asyncio.Future[object]] = []
    core.bus.subscribe(on_end, DownloadCompleted, DownloadFailed)
    try:
        await core.monitor.warm_up()
        a = await core.downloads.start("local", GRANITE)
        b = await core.downloads.start("local", "qwen/qwen3-8b")
        assert a.job_id is not None and b.job_id is not None
        emu.finish_downloads()
        await core.downloads.wait("local", a.job_id)
        await core.downloads.wait("local", b.job_id)
        results = await asyncio.gather(*waiters)  # none of them a KeyError
        assert sorted(seen) == [("download.completed", False), ("download.failed", False)]
        assert len(results) == 2
    finally:
        await core.stop()
