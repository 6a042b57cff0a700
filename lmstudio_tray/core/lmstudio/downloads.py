"""Model downloads through LM Studio: REST v1 jobs on 0.4.0+, `lms get` where that route is missing.

Both look the same to the caller: `start` gives a `DownloadJob`, `status` its latest state. A REST job lives
in LM Studio (its status survives this process); an `lms get` job lives in the `lms` process this object
started and ends with it (`aclose` stops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, replace

from lmstudio_tray.core.errors import LmsError, LmsFailure, MissingRoute
from lmstudio_tray.core.lmstudio.client import DownloadJob, DownloadStatus, LMStudioClient
from lmstudio_tray.core.lmstudio.lms import DownloadProgress, Lms

LMS_PREFIX = "lms-get-"


class UnknownDownload(KeyError):
    """No download with that job id (neither LM Studio's nor one this Downloader runs through `lms get`)."""


@dataclass
class _LmsJob:
    job: DownloadJob
    task: asyncio.Task[None] | None = None
    failure: LmsFailure | None = None  # how `lms get` failed, when it did


class Downloader:
    """Starts and follows model downloads: REST v1 jobs, or an `lms get` run where the REST route is missing."""
    def __init__(self, client: LMStudioClient, lms: Lms | None) -> None:
        self.client = client
        self.lms = lms
        self._local: dict[str, _LmsJob] = {}
        self._ids = itertools.count(1)

    async def start(self, model: str, *, quantization: str | None = None) -> DownloadJob:
        """Start downloading `model`. Raises LMStudioError (LM Studio refused or cannot be reached), MissingRoute when
        there is neither the REST route nor `lms`."""
        try:
            return await self.client.download(model, quantization=quantization)
        except MissingRoute:
            if self.lms is None:
                raise MissingRoute(
                    "this LM Studio has no REST download API (added in 0.4.0) and the `lms` command was not "
                    "found to download with `lms get`; update LM Studio, or install `lms` (`npx lmstudio "
                    "install-cli`)",
                ) from None
        target = f"{model}@{quantization}" if quantization else model
        job_id = f"{LMS_PREFIX}{next(self._ids)}"
        local = _LmsJob(DownloadJob(job_id, DownloadStatus.DOWNLOADING, via_lms=True))
        self._local[job_id] = local
        local.task = asyncio.create_task(self._run_get(local, self.lms, target))
        return local.job

    async def status(self, job_id: str) -> DownloadJob:
        """Where job `job_id` stands: a REST job is asked for, an `lms get` run reports what it last printed."""
        local = self._local.get(job_id)
        if local is not None:
            return local.job
        if job_id.startswith(LMS_PREFIX):
            raise UnknownDownload(job_id)
        return await self.client.download_status(job_id)

    def failure(self, job_id: str) -> LmsFailure | None:
        """How the `lms get` run `job_id` failed (e.g. MODEL_NOT_FOUND); None for a REST job or one that went well."""
        local = self._local.get(job_id)
        return local.failure if local is not None else None

    async def wait(self, job_id: str) -> DownloadJob:
        """Until an `lms get` job ends (a REST job is polled by the caller, at its own pace)."""
        local = self._local.get(job_id)
        if local is None:
            raise UnknownDownload(job_id)
        if local.task is not None:
            await asyncio.shield(local.task)
        return local.job

    async def _run_get(self, local: _LmsJob, lms: Lms, model: str) -> None:
        def on_progress(progress: DownloadProgress) -> None:
            local.job = replace(
                local.job, total_bytes=progress.total_bytes, downloaded_bytes=progress.downloaded_bytes,
                bytes_per_second=progress.bytes_per_second,
            )

        try:
            result = await lms.get(model, on_progress=on_progress)
        except LmsError as exc:
            local.failure = exc.kind
            local.job = replace(local.job, status=DownloadStatus.FAILED, bytes_per_second=None, error=str(exc))
            return
        if result.already_downloaded:
            local.job = replace(local.job, status=DownloadStatus.ALREADY_DOWNLOADED, bytes_per_second=None)
        else:
            local.job = replace(
                local.job, status=DownloadStatus.COMPLETED, downloaded_bytes=local.job.total_bytes,
                bytes_per_second=None,
            )

    async def aclose(self) -> None:
        """Stop the `lms get` runs (cancelling one kills its `lms` process)."""
        tasks = [local.task for local in self._local.values() if local.task is not None and not local.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
