"""Downloads from the core: REST v1 jobs against the emulator over real HTTP (statuses, pause, a failure
halfway, already downloaded, unknown models and jobs), and `lms get` when the REST route is missing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import psutil
import pytest

from lmstudio_tray.core.errors import LMStudioError, MissingRoute
from lmstudio_tray.core.lmstudio.client import DownloadJob, DownloadStatus, LMStudioClient
from lmstudio_tray.core.lmstudio.downloads import Downloader, UnknownDownload
from lmstudio_tray.core.lmstudio.lms import Lms
from lmstudio_tray.core.models import FailureKind
from lmstudio_tray.emulator import Emulator
from tests.emulator_fixtures import EmulatorFactory, LmsHome

GRANITE = "ibm/granite-4-micro"
GRANITE_BYTES = 2_279_145_003


async def until(check: Callable[[], Awaitable[DownloadJob]], done: Callable[[DownloadJob], bool]) -> DownloadJob:
    """Poll a job until `done` says so, with a generous deadline (never a fixed wait)."""
    deadline = time.monotonic() + 20
    while not done(job := await check()):
        assert time.monotonic() < deadline, f"still {job}"
        await asyncio.sleep(0.01)
    return job


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[LMStudioClient]:
    c = LMStudioClient(emulator.api_url, timeout=5)
    yield c
    await c.aclose()


async def test_rest_download_from_start_to_listed(emulator: Emulator, client: LMStudioClient) -> None:
    emulator.update(download_speed=2e9)
    job = await client.download(GRANITE)
    assert job.status is DownloadStatus.DOWNLOADING and job.job_id and job.total_bytes == GRANITE_BYTES
    assert job.started_at is not None and job.started_at.tzinfo is not None
    first = await client.download_status(job.job_id)
    assert first.bytes_per_second == 2e9 and first.estimated_completion is not None
    assert first.fraction is not None and 0 <= first.fraction < 1
    assert job.job_id is not None
    job_id = job.job_id
    done = await until(lambda: client.download_status(job_id), lambda j: j.status.finished)
    assert done.status is DownloadStatus.COMPLETED and done.fraction == 1.0
    assert done.downloaded_bytes == GRANITE_BYTES and done.completed_at is not None
    listing = await client.list_models()
    assert GRANITE in [m.key for m in listing.models]
    again = await client.download(GRANITE)
    assert again == DownloadJob(None, DownloadStatus.ALREADY_DOWNLOADED)


async def test_paused_and_failed_halfway(emulator: Emulator, client: LMStudioClient) -> None:
    emulator.update(download_speed=2e9, fail_downloads={GRANITE: 0.5})
    job = await client.download(GRANITE)
    assert job.job_id is not None
    job_id = job.job_id
    emulator.pause_download(job_id)
    paused = await client.download_status(job_id)
    assert paused.status is DownloadStatus.PAUSED and not paused.status.finished
    assert paused.bytes_per_second is None
    emulator.resume_download(job_id)
    failed = await until(lambda: client.download_status(job_id), lambda j: j.status.finished)
    assert failed.status is DownloadStatus.FAILED and failed.downloaded_bytes == GRANITE_BYTES // 2
    assert GRANITE not in [m.key for m in (await client.list_models()).models]


async def test_unknown_model_and_job(client: LMStudioClient) -> None:
    with pytest.raises(LMStudioError, match="not found in the LM Studio catalog") as err:
        await client.download("nobody/nothing")
    assert err.value.status == 404
    with pytest.raises(LMStudioError) as err:
        await client.download_status("job_0123456789")
    assert err.value.status == 404


async def test_old_lm_studio_has_no_rest_download(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.31")
    client = LMStudioClient(emu.api_url)
    try:
        with pytest.raises(MissingRoute, match="lms get") as err:
            await client.download(GRANITE)
        assert err.value.kind is FailureKind.SERVER_ERROR  # still an LMStudioError for existing callers
        with pytest.raises(MissingRoute):
            await client.download_status("job_0123456789")
    finally:
        await client.aclose()


async def test_downloader_uses_rest_when_lm_studio_has_it(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(download_speed=2e9)
    client = LMStudioClient(emu.api_url)
    downloader = Downloader(client, Lms(lms_home.lms))
    try:
        job = await downloader.start(GRANITE)
        assert not job.via_lms and job.job_id is not None and job.job_id.startswith("job_")
        job_id = job.job_id
        done = await until(lambda: downloader.status(job_id), lambda j: j.status.finished)
        assert done.status is DownloadStatus.COMPLETED
    finally:
        await downloader.aclose()
        await client.aclose()


async def test_downloader_falls_back_to_lms_get(emulator_factory: EmulatorFactory, lms_home: LmsHome) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, version="0.3.31", download_speed=2e9)
    client = LMStudioClient(emu.api_url)
    downloader = Downloader(client, Lms(lms_home.lms))
    try:
        job = await downloader.start(GRANITE)
        assert job.via_lms and job.status is DownloadStatus.DOWNLOADING and job.job_id is not None
        job_id = job.job_id
        done = await until(lambda: downloader.status(job_id), lambda j: j.status.finished)
        assert done.status is DownloadStatus.COMPLETED and done.downloaded_bytes == 2_280_000_000
        assert GRANITE in [m.key for m in (await client.list_models()).models]
        again = await downloader.start(GRANITE)
        assert again.job_id is not None
        assert (await downloader.wait(again.job_id)).status is DownloadStatus.ALREADY_DOWNLOADED
        emu.update(fail_downloads={"qwen/qwen3-8b": 0.5})
        failing = await downloader.start("qwen/qwen3-8b")
        assert failing.job_id is not None
        failed = await downloader.wait(failing.job_id)
        # `lms get` prints sizes with two decimals: the bytes are as exact as that
        assert failed.status is DownloadStatus.FAILED and failed.fraction == pytest.approx(0.5, abs=0.005)
        assert failed.error is not None and "the connection to the model repository was lost" in failed.error
        with pytest.raises(UnknownDownload):
            await downloader.status("lms-get-999")
    finally:
        await downloader.aclose()
        await client.aclose()


async def test_downloader_without_lms_on_old_lm_studio_says_what_to_do(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(version="0.3.31")
    client = LMStudioClient(emu.api_url)
    try:
        with pytest.raises(LMStudioError, match="`lms` command was not found") as err:
            await Downloader(client, None).start(GRANITE)
        assert "0.4.0" in str(err.value)
    finally:
        await client.aclose()


async def test_closing_stops_an_lms_get_in_progress(emulator_factory: EmulatorFactory, lms_home: LmsHome) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, version="0.3.31", download_speed=1.0)
    client = LMStudioClient(emu.api_url)
    downloader = Downloader(client, Lms(lms_home.lms))
    try:
        job = await downloader.start(GRANITE)
        assert job.job_id is not None
        job_id = job.job_id
        await until(lambda: downloader.status(job_id), lambda j: j.total_bytes is not None)  # `lms get` runs
        assert lms_get_processes()
    finally:
        await downloader.aclose()
        await client.aclose()
    assert lms_get_processes() == []  # cancelling the run killed its `lms`
    assert (await downloader.status(job_id)).status is DownloadStatus.DOWNLOADING  # stopped, never finished


def lms_get_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "get" in child.cmdline() and GRANITE in child.cmdline():
                found.append(child)
    return found
