"""The download action: start a model download on an instance, follow it and tell everyone on the bus.

One implementation for the CLI (`lmstudio-tray get`), the tray and the OpenCode tool. A download goes through
`Downloader` (REST v1 on LM Studio 0.4.0+, `lms get` where that route is missing); the core polls the job and
publishes `DownloadStarted`, `DownloadProgressed`, then `DownloadCompleted` (after the instance's model list was
refreshed, so the new model is in status, menus and search right away), `DownloadFailed` or
`DownloadAlreadyDownloaded`. Asking again for a model whose download this process follows attaches to it.

A REST job runs inside LM Studio: stopping to follow it (`aclose`, Ctrl-C in the CLI) leaves it running there. An
`lms get` run is a child process of this one and stops with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lmstudio_tray.core.config.schema import OpenCodeToolsConfig
from lmstudio_tray.core.control.monitor import InstanceMonitor, Monitor
from lmstudio_tray.core.errors import ActionError, ActionErrorKind, LmsFailure, LMStudioError, MissingRoute
from lmstudio_tray.core.events import (
    DownloadAlreadyDownloaded,
    DownloadCompleted,
    DownloadFailed,
    DownloadProgressed,
    DownloadStarted,
    EventBus,
)
from lmstudio_tray.core.lmstudio.client import DownloadJob, DownloadStatus
from lmstudio_tray.core.lmstudio.downloads import Downloader
from lmstudio_tray.core.lmstudio.lms import Lms
from lmstudio_tray.core.models import DownloadFailure, DownloadState, FailureKind, InstanceState

log = logging.getLogger(__name__)
LmsFactory = Callable[[InstanceMonitor], "Lms | None"]
POLL_SECONDS = 0.5
# LM Studio not answering this many polls in a row ends the follow: the download is then reported as failed.
UNREACHABLE_POLLS = 6
ENDED_KEPT = 50  # finished downloads remembered for a late `wait`


@dataclass(frozen=True)
class DownloadResult:
    """How a download ended (or where it stands, for `start`): `status` as LM Studio says it, `cause` when it
    failed, `attached` when an earlier request had started it."""

    instance: str
    model: str
    job_id: str | None
    status: DownloadStatus
    total_bytes: int | None = None
    downloaded_bytes: int | None = None
    bytes_per_second: float | None = None
    seconds: float | None = None
    via_lms: bool = False
    attached: bool = False
    cause: DownloadFailure | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as JSON data (`get --json`, the endpoint's answers)."""
        return {
            "instance": self.instance,
            "model": self.model,
            "job_id": self.job_id,
            "status": self.status.value,
            "total_bytes": self.total_bytes,
            "downloaded_bytes": self.downloaded_bytes,
            "bytes_per_second": self.bytes_per_second,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "via_lms": self.via_lms,
            "attached": self.attached,
            "cause": self.cause.value if self.cause else None,
            "reason": self.reason,
        }


@dataclass
class _Follow:
    """One download this process follows; `state` is replaced (never changed in place) on each poll."""

    state: DownloadState
    started: float
    task: asyncio.Task[DownloadResult] | None = None


class Downloads:
    """Starts downloads and follows them until they end; coroutines on the core's loop."""

    def __init__(self, monitor: Monitor, bus: EventBus, *, lms_factory: LmsFactory | None = None,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.monitor = monitor
        self.bus = bus
        self._lms_factory = lms_factory or (lambda _mon: None)
        self.poll_seconds = poll_seconds
        self._downloaders: dict[str, Downloader] = {}
        self._follows: dict[tuple[str, str], _Follow] = {}
        # how the latest downloads ended, so that a `wait` or a status call after the end still gets the result
        self._ended: dict[tuple[str, str], DownloadResult] = {}

    def active(self) -> tuple[DownloadState, ...]:
        """The downloads followed now (no I/O: the tray reads it while it builds its menu)."""
        return tuple(f.state for f in list(self._follows.values()))

    async def start(self, instance: str, model: str, *, quantization: str | None = None) -> DownloadResult:
        """Start downloading `model` on `instance` (or attach to the download of it this process follows) and follow it
        in the background; `wait` gives the end. ActionError (kind UNKNOWN_MODEL, OFFLINE, LMS_MISSING, ...) when LM
        Studio refuses or cannot be asked."""
        mon = await self._usable(instance)
        downloader = self._downloader(mon)
        try:
            job = await downloader.start(model, quantization=quantization)
        except MissingRoute as exc:
            raise ActionError(f"Cannot download {model} on {instance}: {exc.message}.",
                              kind=ActionErrorKind.LMS_MISSING) from None
        except LMStudioError as exc:
            raise _start_error(instance, model, exc) from None
        if job.status is DownloadStatus.ALREADY_DOWNLOADED or job.job_id is None:
            self.bus.publish(DownloadAlreadyDownloaded(instance, model=model))
            return DownloadResult(instance, model, None, DownloadStatus.ALREADY_DOWNLOADED)
        follow = self._follows.get((instance, job.job_id))
        attached = follow is not None
        if follow is None:
            follow = self._begin(mon, downloader, model, job)
        self.bus.publish(DownloadStarted(instance, model=follow.state.model, job_id=job.job_id,
                                         total_bytes=job.total_bytes, via_lms=job.via_lms, attached=attached))
        return _result(follow.state, job, attached=attached)

    def _begin(self, mon: InstanceMonitor, downloader: Downloader, model: str, job: DownloadJob) -> _Follow:
        assert job.job_id is not None
        state = DownloadState(mon.name, model, job.job_id, job.downloaded_bytes, job.total_bytes,
                              job.bytes_per_second, via_lms=job.via_lms)
        follow = _Follow(state, time.monotonic())
        key = (mon.name, job.job_id)
        self._follows[key] = follow
        follow.task = asyncio.ensure_future(self._follow(mon, downloader, follow))
        follow.task.add_done_callback(lambda _task: self._follows.pop(key, None))  # also when cancelled
        return follow

    def _conclude(self, state: DownloadState, result: DownloadResult) -> DownloadResult:
        """The download ended: out of `active()` and into the results `wait` gives, before the event tells anyone."""
        key = (state.instance, state.job_id)
        self._ended[key] = result
        while len(self._ended) > ENDED_KEPT:
            del self._ended[next(iter(self._ended))]
        self._follows.pop(key, None)
        return result

    async def wait(self, instance: str, job_id: str) -> DownloadResult:
        """The end of a download this process follows or followed lately (shielded: a caller giving up does not stop
        the follow). KeyError when it knows no such job."""
        ended = self._ended.get((instance, job_id))
        if ended is not None:
            return ended
        follow = self._follows.get((instance, job_id))
        if follow is None or follow.task is None:
            raise KeyError(f"no download {job_id!r} is followed on {instance}")
        return await asyncio.shield(follow.task)

    def following(self, instance: str, job_id: str) -> DownloadState | None:
        """Where a followed download stands (no I/O), None when this process does not follow it."""
        follow = self._follows.get((instance, job_id))
        return follow.state if follow is not None else None

    async def _follow(self, mon: InstanceMonitor, downloader: Downloader, follow: _Follow) -> DownloadResult:
        job_id = follow.state.job_id
        misses = 0
        while True:
            try:
                job = await downloader.status(job_id)
                misses = 0
            except LMStudioError as exc:
                misses += 1
                if exc.kind is not FailureKind.OFFLINE:
                    return self._failed(follow, DownloadFailure.FAILED,
                                        f"LM Studio could not say how the download stands: {exc.message}")
                if misses >= UNREACHABLE_POLLS:
                    return self._failed(follow, DownloadFailure.UNREACHABLE,
                                        f"LM Studio stopped answering while downloading: {exc.message}")
                await asyncio.sleep(self.poll_seconds)
                continue
            if job.status.finished:
                return await self._finished(mon, downloader, follow, job)
            self._progressed(follow, job)
            await asyncio.sleep(self.poll_seconds)

    def _progressed(self, follow: _Follow, job: DownloadJob) -> None:
        state = replace(follow.state, downloaded_bytes=job.downloaded_bytes, total_bytes=job.total_bytes,
                        bytes_per_second=job.bytes_per_second, paused=job.status is DownloadStatus.PAUSED)
        if state == follow.state:
            return
        follow.state = state
        self.bus.publish(DownloadProgressed(
            state.instance, model=state.model, job_id=state.job_id, downloaded_bytes=state.downloaded_bytes,
            total_bytes=state.total_bytes, bytes_per_second=state.bytes_per_second, paused=state.paused,
        ))

    async def _finished(self, mon: InstanceMonitor, downloader: Downloader, follow: _Follow,
                        job: DownloadJob) -> DownloadResult:
        state = follow.state
        if job.status is DownloadStatus.FAILED:
            lms_kind = downloader.failure(state.job_id)
            cause = DownloadFailure.UNKNOWN_MODEL if lms_kind is LmsFailure.MODEL_NOT_FOUND else DownloadFailure.FAILED
            follow.state = replace(state, downloaded_bytes=job.downloaded_bytes, total_bytes=job.total_bytes)
            return self._failed(follow, cause, job.error or "LM Studio reported the download as failed")
        # the new model must be in the status before anyone hears it is there, and the download out of it
        with contextlib.suppress(Exception):
            await mon.refresh()
        if job.status is DownloadStatus.ALREADY_DOWNLOADED:
            result = self._conclude(state, _result(state, job))
            self.bus.publish(DownloadAlreadyDownloaded(state.instance, model=state.model))
            return result
        seconds = time.monotonic() - follow.started
        result = self._conclude(state, replace(_result(state, job), seconds=seconds))
        self.bus.publish(DownloadCompleted(state.instance, model=state.model, job_id=state.job_id,
                                           total_bytes=job.total_bytes, seconds=seconds))
        return result

    def _failed(self, follow: _Follow, cause: DownloadFailure, reason: str) -> DownloadResult:
        state = follow.state
        result = self._conclude(state, DownloadResult(
            state.instance, state.model, state.job_id, DownloadStatus.FAILED, state.total_bytes,
            state.downloaded_bytes, via_lms=state.via_lms, cause=cause, reason=reason,
        ))
        self.bus.publish(DownloadFailed(state.instance, model=state.model, job_id=state.job_id, reason=reason,
                                        cause=cause, downloaded_bytes=state.downloaded_bytes,
                                        total_bytes=state.total_bytes))
        return result

    async def _usable(self, instance: str) -> InstanceMonitor:
        try:
            mon = self.monitor.instance(instance)
        except KeyError as exc:
            raise ActionError(str(exc.args[0]), kind=ActionErrorKind.UNKNOWN_INSTANCE) from None
        snap = await self.monitor.get(instance, max_age=2.0)
        if snap.state is InstanceState.OFFLINE:
            raise ActionError(
                f"LM Studio at {snap.url} is not running, so it cannot download: start it with "
                "`lmstudio-tray server start` or open LM Studio, then try again.",
                kind=ActionErrorKind.OFFLINE,
            )
        if snap.state is InstanceState.AUTH_FAILED:
            raise ActionError(
                f"LM Studio at {snap.url} needs an API token: store it with `lmstudio-tray token set {instance}`.",
                kind=ActionErrorKind.AUTH_FAILED,
            )
        return mon

    def _downloader(self, mon: InstanceMonitor) -> Downloader:
        downloader = self._downloaders.get(mon.name)
        if downloader is None:
            downloader = Downloader(mon.client, self._lms_factory(mon))
            self._downloaders[mon.name] = downloader
        downloader.client = mon.client  # a config change may have given the instance a new client (token)
        return downloader

    async def aclose(self) -> None:
        """Stop following: REST downloads go on inside LM Studio, `lms get` runs are stopped with their process."""
        tasks = [f.task for f in list(self._follows.values()) if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for downloader in list(self._downloaders.values()):
            await downloader.aclose()


def agent_may_download(tools: OpenCodeToolsConfig, model: str) -> bool:
    """Whether the config lets an agent (the OpenCode tool) start downloading `model`: `downloads = "allowlist"` and
    a `download_allow` pattern matching the name, with or without its `@quantization`."""
    if tools.downloads != "allowlist":
        return False
    names = {model.strip().lower(), model.strip().split("@", 1)[0].lower()}
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in tools.download_allow for name in names)


def agent_refusal(tools: OpenCodeToolsConfig, model: str) -> str:
    """Why an agent may not download `model`, and what the person has to set to allow it."""
    allow = json.dumps([*tools.download_allow, model])
    add = f"`lmstudio-tray config set opencode.tools.download_allow '{allow}'`"
    yourself = f"or download it yourself with `lmstudio-tray get {model}`."
    if tools.downloads != "allowlist":
        return (f"Downloading models from OpenCode is off: a download is gigabytes, so a person decides. To let agents "
                f"download {model}, the person sets `lmstudio-tray config set opencode.tools.downloads allowlist` "
                f"and {add}; {yourself}")
    listed = ", ".join(tools.download_allow) or "nothing yet"
    return (f"{model} is not among the models OpenCode may download (opencode.tools.download_allow: {listed}). A "
            f"person can add it with {add}, {yourself}")


def _start_error(instance: str, model: str, exc: LMStudioError) -> ActionError:
    if exc.status == 404:
        return ActionError(
            f"LM Studio on {instance} does not know the model {model!r}: {exc.message} Give a catalog name such as "
            "`ibm/granite-4-micro` (as listed on lmstudio.ai/models) or a Hugging Face URL.",
            kind=ActionErrorKind.UNKNOWN_MODEL,
        )
    kind = ActionErrorKind.OFFLINE if exc.kind is FailureKind.OFFLINE else ActionErrorKind.FAILED
    return ActionError(f"Downloading {model} on {instance} failed: {exc.message}", kind=kind)


def _result(state: DownloadState, job: DownloadJob, *, attached: bool = False) -> DownloadResult:
    return DownloadResult(
        state.instance, state.model, state.job_id, job.status, job.total_bytes, job.downloaded_bytes,
        job.bytes_per_second, via_lms=state.via_lms, attached=attached,
    )
