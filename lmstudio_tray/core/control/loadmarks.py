"""Loads in progress that every lmstudio-tray process of this user can see.

LM Studio lists no loading state and shows a load's progress only to the client that started it, so a load one
process runs (`lmstudio-tray load` in a terminal) is invisible to another (the endpoint the OpenCode plugin asks,
the tray): a request for that model meanwhile would be refused by LM Studio, or start a second load, which LM
Studio answers with a second copy (`key:2`). While an `Actions` load runs, it keeps a small file in the state
dir's `loads/` folder; other processes read them when a model they are asked about is not loaded.

Plain files, all I/O blocking: callers on an event loop run these methods in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lmstudio_tray.core.config.schema import normalize_url
from lmstudio_tray.core.support.files import atomic_write

log = logging.getLogger(__name__)
# A mark older than this is left over (a process that hung, a clock jump): no load takes a day.
MAX_AGE_SECONDS = 24 * 3600.0
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_MTIME_SETTLED_NS = 2_000_000_000  # coarser than any file system's mtime resolution (FAT: 2 s)


@dataclass(frozen=True)
class LoadMark:
    """A load in progress as other processes see it: the server's URL, the model key, the context length, the loading
    process's pid, when it started (wall clock) and its ETA."""

    url: str  # the LM Studio server, as the loading process's config names it
    model: str  # the model key
    context_length: int | None
    pid: int
    started_at: float  # wall clock
    eta_seconds: float | None = None
    progress: float | None = None  # 0..1 as the loading process last saw it; None: not known yet
    estimated: bool = True  # False: `progress` is LM Studio's own figure


def same_server(a: str, b: str) -> bool:
    """Whether two base URLs name one LM Studio server (localhost and 127.0.0.1 are the same to a person)."""
    try:
        x, y = urlsplit(normalize_url(a)), urlsplit(normalize_url(b))
    except ValueError:
        return False
    if (x.scheme, x.port) != (y.scheme, y.port):
        return False
    return x.hostname == y.hostname or (x.hostname in _LOCAL_HOSTS and y.hostname in _LOCAL_HOSTS)


def _alive(mark: LoadMark) -> bool:
    """The process that wrote `mark` is still running (and is that process, not a later one with its pid)."""
    import psutil  # only here: most processes never read a mark

    try:
        created = psutil.Process(mark.pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    return created <= mark.started_at + 1.0


class LoadMarks:
    """The state dir's `loads/` folder: one file per load an `Actions` of this user runs. File I/O that blocks: from an
    event loop, call the methods in a worker thread (`none_elsewhere` aside)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # the folder's mtime when a scan last found no other process's mark (None: not known to be empty)
        self._empty_at: int | None = None

    def none_elsewhere(self) -> bool:
        """True when no other process can have a mark now: the folder is missing, or unchanged since a scan
        found none. One stat and no reads, cheap enough to ask on an event loop before `others`."""
        try:
            stamp = self.directory.stat().st_mtime_ns
        except OSError:
            return True
        return stamp == self._empty_at

    def add(self, mark: LoadMark) -> Path | None:
        """Write `mark`; None when the folder cannot be written (marks are advisory: the load goes on)."""
        path = self.directory / f"{mark.pid}-{uuid.uuid4().hex[:12]}.json"
        try:
            atomic_write(path, json.dumps(asdict(mark)), mode=0o600)
        except OSError as exc:
            log.warning("could not record the load of %s for other processes: %s", mark.model, exc)
            return None
        return path

    def update(self, path: Path | None, mark: LoadMark) -> None:
        """Rewrite the mark `add` wrote at `path` (its load's progress moved); None or an unwritable folder is fine."""
        if path is None:
            return
        try:
            atomic_write(path, json.dumps(asdict(mark)), mode=0o600)
        except OSError as exc:
            log.debug("could not update the load mark of %s: %s", mark.model, exc)

    def remove(self, path: Path | None) -> None:
        """Delete a mark `add` wrote; None, or a file gone already, is fine."""
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def others(self, url: str, model: str) -> list[LoadMark]:
        """Loads of `model` on the server at `url` that other live processes run now. Files left by processes
        that died (or unreadable ones) are removed on the way."""
        try:
            stamp = self.directory.stat().st_mtime_ns  # before the listing: a file added later changes it
            entries = list(self.directory.glob("*.json"))
        except OSError:
            return []
        found: list[LoadMark] = []
        foreign = False
        for path in entries:
            mark = self._read(path)
            if mark is None or mark.pid == os.getpid():
                continue
            if time.time() - mark.started_at > MAX_AGE_SECONDS or not _alive(mark):
                self.remove(path)
                continue
            foreign = True
            if mark.model == model and same_server(mark.url, url):
                found.append(mark)
        # a change within the file system's timestamp resolution may not move the mtime: trust only old ones
        settled = time.time_ns() - stamp > _MTIME_SETTLED_NS
        self._empty_at = stamp if not foreign and settled else None
        return found

    def _read(self, path: Path) -> LoadMark | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return LoadMark(
                url=str(data["url"]), model=str(data["model"]),
                context_length=int(data["context_length"]) if data.get("context_length") is not None else None,
                pid=int(data["pid"]), started_at=float(data["started_at"]),
                eta_seconds=float(data["eta_seconds"]) if data.get("eta_seconds") is not None else None,
                progress=float(data["progress"]) if data.get("progress") is not None else None,
                estimated=bool(data.get("estimated", True)),
            )
        except FileNotFoundError:
            return None  # finished while we listed the folder
        except (OSError, ValueError, KeyError, TypeError):
            self.remove(path)  # not ours, or half of an old format: nobody can use it
            return None
