"""Resource samples: RSS and CPU of a local LM Studio's processes (psutil), loaded model sizes (any instance)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import psutil

from lmstudio_tray.analytics.records import ResourceSample
from lmstudio_tray.core.models import InstanceSnapshot

# LM Studio's app, its helpers and workers on the three platforms, and the headless daemon (llmster);
# not this program, whose name contains "lmstudio" too
LMSTUDIO_PROCESS = re.compile(r"lm[ _-]?studio|llmworker|llmster", re.IGNORECASE)
_NOT_LMSTUDIO = re.compile(r"tray", re.IGNORECASE)

ProcessFilter = Callable[[psutil.Process], bool]


def is_lmstudio_name(name: str) -> bool:
    return bool(LMSTUDIO_PROCESS.search(name)) and not _NOT_LMSTUDIO.search(name)


def is_lmstudio(proc: psutil.Process) -> bool:
    try:
        return is_lmstudio_name(proc.name())
    except (psutil.Error, OSError):
        return False


class ResourceSampler:
    """Keeps the Process objects between samples: psutil's CPU percent is measured since the previous call."""

    def __init__(self, process_filter: ProcessFilter = is_lmstudio) -> None:
        self.process_filter = process_filter
        self._procs: dict[int, psutil.Process] = {}

    def _processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            if self.process_filter(proc):
                found[proc.pid] = self._procs.get(proc.pid, proc)
        self._procs = found
        return list(found.values())

    def local_usage(self) -> tuple[int | None, float | None, int]:
        """(RSS bytes, CPU percent, process count) of the matching processes; None when none run."""
        rss, cpu, count = 0, 0.0, 0
        for proc in self._processes():
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    cpu += proc.cpu_percent(None)
                count += 1
            except (psutil.Error, OSError):  # it exited meanwhile
                continue
        return (rss, cpu, count) if count else (None, None, 0)

    def sample(self, snapshots: Iterable[InstanceSnapshot]) -> list[ResourceSample]:
        snaps = list(snapshots)
        local = [s for s in snaps if not s.remote]
        rss, cpu, count = self.local_usage() if local else (None, None, 0)
        out = []
        for snap in snaps:
            loaded = snap.loaded_models
            size = sum((m.size_bytes or 0) * len(m.instances) for m in loaded)
            if snap.remote:
                out.append(ResourceSample(snap.name, None, None, 0, size, len(loaded)))
            else:
                out.append(ResourceSample(snap.name, rss, cpu, count, size, len(loaded)))
        return out
