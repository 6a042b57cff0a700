"""Model downloads of the emulated LM Studio: jobs whose bytes grow with the monotonic clock at the configured
speed, pause/resume (a person in the app), a failure part-way, and the model joining the downloaded
catalog when its job completes."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from lmstudio_tray.emulator.state.catalog import Catalog, ModelSpec

DownloadStatus = Literal["downloading", "paused", "completed", "failed"]
# What the job's failure says (LM Studio's own wording is not documented; `lms get` prints it after "Error:").
FAILURE_MESSAGE = "Download failed: the connection to the model repository was lost."
MAX_FINISHED_JOBS = 100


def iso(wall: float) -> str:
    """JavaScript's `Date.toISOString()`: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(wall, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class DownloadJob:
    job_id: str
    spec: ModelSpec
    started_wall: float
    fail_fraction: float | None
    status: DownloadStatus = "downloading"
    downloaded: float = 0.0
    speed: float = 0.0  # bytes per second while downloading, 0 otherwise
    completed_wall: float | None = None
    error: str | None = None
    last_tick: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return self.spec.size_bytes

    def to_json(self) -> dict[str, Any]:
        """The REST v1 download status object: only the fields the docs give for this status."""
        body: dict[str, Any] = {"job_id": self.job_id, "status": self.status}
        if self.status == "downloading":
            body["bytes_per_second"] = round(self.speed)
            remaining = (self.total - self.downloaded) / self.speed if self.speed else 0.0
            body["estimated_completion"] = iso(time.time() + remaining)
        if self.status == "completed" and self.completed_wall is not None:
            body["completed_at"] = iso(self.completed_wall)
        body.update(total_size_bytes=self.total, downloaded_bytes=int(self.downloaded),
                    started_at=iso(self.started_wall))
        return body


def _match(specs: list[ModelSpec], reference: str) -> ModelSpec | None:
    """A model key (case-insensitive, `@quant` ignored) or the Hugging Face URL of the model's repository."""
    name = reference.strip().removeprefix("https://huggingface.co/").split("@", 1)[0].strip("/").lower()
    for spec in list(specs):
        repo = "/".join(spec.model_path.split("/")[:2]).lower()
        if name in (spec.key.lower(), repo):
            return spec
    return None


class Downloads:
    """All jobs, advanced by `tick()` (called before every answer that shows download or model state, and by
    the emulator's sweeper), so what a client sees depends only on the clock and the speed setting."""

    def __init__(self, catalog: Catalog, offered: list[ModelSpec]) -> None:
        self.catalog = catalog
        self.offered = offered
        self._jobs: dict[str, DownloadJob] = {}
        self._lock = threading.Lock()

    def find_offered(self, reference: str) -> ModelSpec | None:
        """The catalog model a download request names."""
        return _match(self.offered, reference)

    def find_downloaded(self, reference: str) -> ModelSpec | None:
        """The downloaded model a download request names: then there is nothing to download."""
        return self.catalog.find(reference) or _match(self.catalog.models, reference)

    def start(self, spec: ModelSpec, *, fail_fraction: float | None, speed: float) -> DownloadJob:
        """A new job, or the running one for the same model (LM Studio attaches to a download in progress)."""
        with self._lock:
            for job in self._jobs.values():
                if job.spec.key == spec.key and job.status in ("downloading", "paused"):
                    return job
            job = DownloadJob(f"job_{secrets.token_hex(5)}", spec, time.time(), fail_fraction, speed=speed)
            self._jobs[job.job_id] = job
            finished = [j for j in self._jobs.values() if j.status in ("completed", "failed")]
            for old in finished[:-MAX_FINISHED_JOBS]:
                del self._jobs[old.job_id]
            return job

    def job(self, job_id: str) -> DownloadJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[DownloadJob]:
        with self._lock:
            return list(self._jobs.values())

    def tick(self, speed: float, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        completed: list[ModelSpec] = []
        with self._lock:
            for job in self._jobs.values():
                if job.status == "downloading":
                    job.speed = speed
                    job.downloaded = min(float(job.total), job.downloaded + speed * (moment - job.last_tick))
                    self._settle(job, completed)
                job.last_tick = moment
        for spec in completed:
            self.catalog.add(spec)

    def _settle(self, job: DownloadJob, completed: list[ModelSpec]) -> None:
        if job.fail_fraction is not None and job.downloaded >= job.total * job.fail_fraction:
            job.downloaded = job.total * job.fail_fraction
            job.status, job.speed, job.error = "failed", 0.0, FAILURE_MESSAGE
        elif job.downloaded >= job.total:
            job.status, job.speed, job.completed_wall = "completed", 0.0, time.time()
            completed.append(job.spec)

    def restart_clock(self) -> None:
        """The process starts again: the time it was dead does not count as downloading."""
        now = time.monotonic()
        with self._lock:
            for job in self._jobs.values():
                job.last_tick = now

    def set_paused(self, job_id: str, paused: bool, speed: float) -> DownloadJob:
        """Pause or resume, as a person does in the app's download manager (the REST API has no route for it)."""
        self.tick(speed)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(f"no download job {job_id!r}")
            if paused and job.status == "downloading":
                job.status, job.speed = "paused", 0.0
            elif not paused and job.status == "paused":
                job.status, job.speed, job.last_tick = "downloading", speed, time.monotonic()
            return job

    def finish_all(self, speed: float) -> int:
        """Complete (or fail, at their fault) every running download now; returns how many."""
        self.tick(speed)
        completed: list[ModelSpec] = []
        with self._lock:
            running = [j for j in self._jobs.values() if j.status == "downloading"]
            for job in running:
                job.downloaded = float(job.total)
                self._settle(job, completed)
        for spec in completed:
            self.catalog.add(spec)
        return len(running)
