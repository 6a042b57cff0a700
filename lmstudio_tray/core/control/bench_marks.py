"""Benches in progress that every lmstudio-tray process of this user sees, as typed events on each core's bus.

A bench publishes `BenchStarted`/`BenchProgressed`/`BenchFinished`/`BenchFailed` on the bus of the core that runs
it (`BenchTracker`). `lmstudio-tray bench` in a terminal runs in a process of its own, though, which the tray does
not hear: so the tracker also keeps a small file in the state dir's `benches/` folder (like `loadmarks.py` does for
loads), rewritten at each step and left behind for a minute when the bench ends. The tray's core service
(`Benches.start`) reads the folder once a second in a worker thread and publishes the same events for benches of
other processes; `Benches.active()` gives `Core.status()` the benches running now, wherever they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lmstudio_tray.core.events import BenchFailed, BenchFinished, BenchProgressed, BenchStarted, Event, EventBus
from lmstudio_tray.core.models import BenchPhase, BenchState, WireEnum
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.core.support.tasks import cancel_and_wait

log = logging.getLogger(__name__)
SCAN_SECONDS = 1.0  # how often a watching core reads the folder
KEEP_ENDED_SECONDS = 60.0  # an ended bench's file stays this long, so that a watcher reads how it ended
MAX_AGE_SECONDS = 7 * 24 * 3600.0  # a running mark older than this is left over (a hung process, a clock jump)


class MarkState(WireEnum):
    """Where a bench is, as its mark says."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class BenchMark:
    """A bench as its file says: where and by whom it runs, what it is at, how it ended (`state`)."""

    instance: str
    pid: int
    started_at: float  # wall clock
    models: tuple[str, ...] = ()
    suite: str = ""
    model: str = ""
    step: int = 0
    total: int = 0
    phase: BenchPhase | None = None
    state: MarkState = MarkState.RUNNING
    ended_at: float | None = None
    fastest: str = ""
    tokens_per_s: float | None = None
    reason: str = ""
    cancelled: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchMark:
        """A mark from its file's JSON; KeyError/TypeError/ValueError for anything else, a state this version does
        not know included (it cannot tell whether that bench runs). A phase it does not know reads as None."""
        tps = data.get("tokens_per_s")
        ended = data.get("ended_at")
        return cls(
            instance=str(data["instance"]), pid=int(data["pid"]), started_at=float(data["started_at"]),
            models=tuple(str(m) for m in data.get("models", ())), suite=str(data.get("suite", "")),
            model=str(data.get("model", "")), step=int(data.get("step", 0)), total=int(data.get("total", 0)),
            phase=BenchPhase.read(data.get("phase")), state=MarkState(str(data.get("state", "running"))),
            ended_at=float(ended) if ended is not None else None, fastest=str(data.get("fastest", "")),
            tokens_per_s=float(tps) if tps is not None else None, reason=str(data.get("reason", "")),
            cancelled=bool(data.get("cancelled", False)),
        )

    def to_json(self) -> dict[str, Any]:
        """The mark as its file holds it: the enums as their values, no phase as "" (as older versions wrote)."""
        return {**asdict(self), "phase": self.phase.value if self.phase else "", "state": self.state.value}

    def state_now(self) -> BenchState:
        """What `Core.status()` shows of it."""
        return BenchState(self.instance, self.model, self.step, self.total, self.phase, self.pid)

    def events(self, before: BenchMark | None) -> list[Event]:
        """The events that take a watcher from `before` (None: not seen yet) to this mark."""
        out: list[Event] = []
        if before is None:
            out.append(BenchStarted(self.instance, models=self.models, suite=self.suite, total=self.total,
                                    pid=self.pid))
        if self.state is MarkState.RUNNING and self.model and (
            before is None or (before.model, before.step, before.phase) != (self.model, self.step, self.phase)
        ):
            out.append(BenchProgressed(self.instance, model=self.model, step=self.step, total=self.total,
                                       phase=self.phase, pid=self.pid))
        elif self.state is MarkState.FINISHED:
            seconds = (self.ended_at or self.started_at) - self.started_at
            out.append(BenchFinished(self.instance, fastest=self.fastest, tokens_per_s=self.tokens_per_s,
                                     models=len(self.models), seconds=seconds, pid=self.pid))
        elif self.state is MarkState.FAILED:
            out.append(BenchFailed(self.instance, reason=self.reason, cancelled=self.cancelled, pid=self.pid))
        return out


def _alive(pid: int, started_at: float) -> bool:
    """The process that wrote a mark still runs (and is that process, not a later one with its pid)."""
    import psutil  # only here: most processes never read a mark

    try:
        return bool(psutil.Process(pid).create_time() <= started_at + 1.0)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


class BenchMarks:
    """The state dir's `benches/` folder. Blocking file I/O: from an event loop, call it in a worker thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, path: Path | None, mark: BenchMark) -> Path | None:
        """Write `mark` at `path` (None: a new file); the path, or None when the folder cannot be written (marks
        are advisory: the bench goes on)."""
        path = path or self.directory / f"{mark.pid}-{uuid.uuid4().hex[:12]}.json"
        try:
            atomic_write(path, json.dumps(mark.to_json()), mode=0o600)
        except OSError as exc:
            log.debug("could not record the bench for other processes: %s", exc)
            return None
        return path

    def read(self) -> dict[Path, BenchMark]:
        """Every mark of another process that still counts; files of processes that died while running, ended ones
        older than `KEEP_ENDED_SECONDS` and unreadable ones are removed on the way."""
        try:
            entries = list(self.directory.glob("*.json"))
        except OSError:
            return {}
        now, found = time.time(), {}
        for path in entries:
            try:
                mark = BenchMark.from_json(json.loads(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue  # ended and removed while we listed the folder
            except (OSError, ValueError, KeyError, TypeError):
                self._remove(path)  # half of an old format, or not ours: nobody can use it
                continue
            if mark.state is not MarkState.RUNNING:
                stale = now - (mark.ended_at or mark.started_at) > KEEP_ENDED_SECONDS
            else:
                stale = now - mark.started_at > MAX_AGE_SECONDS or not _alive(mark.pid, mark.started_at)
            if stale:
                self._remove(path)
            elif mark.pid != os.getpid():
                found[path] = mark
        return found

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


class BenchTracker:
    """One bench's reports: each publishes its event on the bus (the core loop) and has the bench's mark rewritten
    in a worker thread. One writer task writes the latest mark, in order, without holding up the bench (each write
    is fsynced: bench/bench_overhead.py measured 11 ms per run when the bench awaited them); the end waits for it,
    so the file says how the bench ended before its process exits."""

    def __init__(self, bus: EventBus, marks: BenchMarks, instance: str, *, on_end: Callable[[], None],
                 on_start: Callable[[], None] = lambda: None) -> None:
        self._bus = bus
        self._marks = marks
        self._mark = BenchMark(instance=instance, pid=os.getpid(), started_at=time.time())
        self._path: Path | None = None
        self._on_start = on_start
        self._on_end = on_end
        self._dirty = False
        self._writer: asyncio.Future[None] | None = None

    @property
    def state(self) -> BenchState | None:
        """The bench now, for `Core.status()`; None before it started and after it ended."""
        return self._mark.state_now() if self._mark.state is MarkState.RUNNING and self._mark.model else None

    async def started(self, models: tuple[str, ...], suite: str, total: int) -> None:
        """The bench begins: `total` steps (models × runs)."""
        self._mark = replace(self._mark, models=models, suite=suite, total=total)
        self._on_start()
        self._bus.publish(BenchStarted(self._mark.instance, models=models, suite=suite, total=total,
                                       pid=self._mark.pid))
        await self._write()

    async def progressed(self, model: str, step: int, phase: BenchPhase) -> None:
        """Now at `model`, step `step` (1-based), in `phase`."""
        self._mark = replace(self._mark, model=model, step=step, phase=phase)
        self._bus.publish(BenchProgressed(self._mark.instance, model=model, step=step, total=self._mark.total,
                                          phase=phase, pid=self._mark.pid))
        await self._write()

    async def finished(self, fastest: str, tokens_per_s: float | None) -> None:
        """The bench ended with results; `fastest` generated `tokens_per_s`."""
        self._mark = replace(self._mark, state=MarkState.FINISHED, ended_at=time.time(), fastest=fastest,
                             tokens_per_s=tokens_per_s)
        self._on_end()
        self._bus.publish(BenchFinished(self._mark.instance, fastest=fastest, tokens_per_s=tokens_per_s,
                                        models=len(self._mark.models),
                                        seconds=self._mark.ended_at - self._mark.started_at if self._mark.ended_at
                                        else 0.0, pid=self._mark.pid))
        await self._write(wait=True)

    async def failed(self, reason: str, *, cancelled: bool = False) -> None:
        """The bench stopped without results."""
        self._mark = replace(self._mark, state=MarkState.FAILED, ended_at=time.time(), reason=reason,
                             cancelled=cancelled)
        self._on_end()
        self._bus.publish(BenchFailed(self._mark.instance, reason=reason, cancelled=cancelled, pid=self._mark.pid))
        await self._write(wait=True)

    async def _write(self, *, wait: bool = False) -> None:
        """Have the mark written as it is now; `wait`: until it is on disk."""
        self._dirty = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        if wait:
            await asyncio.shield(self._writer)

    async def _drain(self) -> None:
        """Write the latest mark until no newer one is waiting (steps that came meanwhile are skipped)."""
        while self._dirty:
            self._dirty = False
            self._path = await asyncio.to_thread(self._marks.write, self._path, self._mark)


class Benches:
    """The benches of every lmstudio-tray process of this user: this process's trackers, and (while the core
    service runs) the other processes' marks, turned into events on this core's bus."""

    def __init__(self, bus: EventBus, directory: Path, *, every: float = SCAN_SECONDS) -> None:
        self._bus = bus
        self.marks = BenchMarks(directory)
        self._every = every
        self._own: list[BenchTracker] = []
        self._seen: dict[Path, BenchMark] = {}  # other processes' marks as the last scan read them
        self._task: asyncio.Task[None] | None = None

    def tracker(self, instance: str) -> BenchTracker:
        """A tracker for a bench this process runs on `instance`, shown by `active()` from its start until it ends. It
        is kept only once the bench starts: a bench refused before (bad input, the bench slot taken) leaves nothing."""
        tracker = BenchTracker(self._bus, self.marks, instance, on_start=lambda: self._own.append(tracker),
                               on_end=lambda: self._forget(tracker))
        return tracker

    def _forget(self, tracker: BenchTracker) -> None:
        with contextlib.suppress(ValueError):
            self._own.remove(tracker)

    def active(self) -> tuple[BenchState, ...]:
        """The benches running now: this process's, then other processes' as the last scan saw them (no I/O)."""
        own = [state for t in tuple(self._own) if (state := t.state) is not None]
        others = [m.state_now() for m in self._seen.values() if m.state is MarkState.RUNNING and m.model]
        return (*own, *others)

    async def start(self) -> None:
        """Watch other processes' benches (a core service: the tray and `serve`)."""
        self._task = asyncio.create_task(self._watch(time.time()), name="bench-marks")

    async def stop(self) -> None:
        """Stop watching."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _watch(self, since: float) -> None:
        while True:
            try:
                self.publish_changes(await asyncio.to_thread(self.marks.read), since)
            except Exception:  # a broken file system must not end the service
                log.debug("reading the bench marks failed", exc_info=True)
            await asyncio.sleep(self._every)

    def publish_changes(self, marks: dict[Path, BenchMark], since: float) -> None:
        """Publish what changed since the last scan; a bench that ended before `since` (the watcher's start) is
        old news and stays quiet."""
        for path, mark in marks.items():
            before = self._seen.get(path)
            ended = mark.state is not MarkState.RUNNING
            if before == mark or (before is None and ended and (mark.ended_at or 0.0) < since):
                continue
            for event in mark.events(before):
                self._bus.publish(event)
        for path, gone in self._seen.items():
            if path not in marks and gone.state is MarkState.RUNNING:  # its process died (kill -9) mid-bench
                self._bus.publish(BenchFailed(gone.instance, reason="the process running the bench ended",
                                              pid=gone.pid))
        self._seen = marks
