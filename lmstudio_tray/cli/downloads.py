"""`lmstudio-tray get MODEL`: download a model into LM Studio from a terminal, following the core's download events.

Output: a progress bar with speed and ETA on a terminal; plain lines (one per 10 % step) when stdout is not one;
with `--json`, one JSON object per line (`started`, `progress`, then `result`, or `error` / `interrupted`). The exit
code says how it ended (`GetExit`). Ctrl-C stops following: a REST download goes on inside LM Studio (running
`get` again follows it again), an `lms get` run (LM Studio before 0.4.0) is stopped with this command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from lmstudio_tray.cli._common import human_size, pick_instance, run_with_core
from lmstudio_tray.core.control.downloads import DownloadResult
from lmstudio_tray.core.errors import ActionError, ActionErrorKind
from lmstudio_tray.core.events import DOWNLOAD_KINDS, DownloadProgressed, DownloadStarted, Event
from lmstudio_tray.core.lmstudio.client import DownloadStatus
from lmstudio_tray.core.models import DownloadFailure
from lmstudio_tray.core.runtime import Core

PLAIN_STEP = 10  # percent between two plain progress lines


class GetExit(IntEnum):
    """`get`'s exit codes (in its `--help` and the README)."""

    OK = 0  # downloaded, or downloaded already
    FAILED = 1  # LM Studio (or `lms get`) reported the download as failed
    USAGE = 2  # no such instance
    UNKNOWN_MODEL = 3  # the catalog has no such model
    UNREACHABLE = 4  # LM Studio is not running, refuses our token, or stopped answering
    NO_ROUTE = 5  # LM Studio before 0.4.0 (no REST download) and no `lms` to download with
    INTERRUPTED = 130  # Ctrl-C


_ERROR_EXITS = {
    ActionErrorKind.UNKNOWN_MODEL: GetExit.UNKNOWN_MODEL,
    ActionErrorKind.OFFLINE: GetExit.UNREACHABLE,
    ActionErrorKind.AUTH_FAILED: GetExit.UNREACHABLE,
    ActionErrorKind.LMS_MISSING: GetExit.NO_ROUTE,
    ActionErrorKind.UNKNOWN_INSTANCE: GetExit.USAGE,
}
_FAILURE_EXITS = {
    DownloadFailure.UNKNOWN_MODEL: GetExit.UNKNOWN_MODEL,
    DownloadFailure.UNREACHABLE: GetExit.UNREACHABLE,
    DownloadFailure.NO_ROUTE: GetExit.NO_ROUTE,
}


def add_get_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                   instance_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `get` on the command line."""
    p = sub.add_parser("get", help="download a model into LM Studio (progress, speed and ETA)",
                       description="Download a model into LM Studio. Exit codes: 0 downloaded (or already), 1 the "
                       "download failed, 2 usage, 3 unknown model, 4 LM Studio not reachable, 5 no way to download "
                       "(LM Studio before 0.4.0 without `lms`), 130 interrupted.")
    p.add_argument("model", help="a catalog name (e.g. ibm/granite-4-micro) or a Hugging Face URL")
    p.add_argument("--quantization", "-q", metavar="Q", help="the quantization to download, e.g. Q4_K_M")
    p.add_argument("--json", action="store_true",
                   help="print JSON lines: started, progress, then the result (or error / interrupted)")
    instance_arg(p)
    p.set_defaults(func=run_get)


@dataclass
class _Seen:
    """What the command knows of its download, for the Ctrl-C message."""

    instance: str | None = None
    job_id: str | None = None
    via_lms: bool = False


def run_get(args: argparse.Namespace) -> int:
    """`lmstudio-tray get`: start (or attach to) the download and follow it to its end."""
    seen = _Seen()
    out = _Output.make(args)

    async def body(core: Core) -> DownloadResult:
        name = pick_instance(core, args.instance)
        seen.instance = name
        unsubscribe = core.bus.subscribe(lambda e: _on_event(e, args.model, name, seen, out), *DOWNLOAD_KINDS)
        try:
            started = await core.downloads.start(name, args.model, quantization=args.quantization)
            if started.job_id is None:
                return started
            return await core.downloads.wait(name, started.job_id)
        finally:
            unsubscribe()
            out.close()
            await asyncio.shield(core.downloads.aclose())  # an `lms get` child stops with this command

    try:
        result = run_with_core(args, body)
    except ActionError as exc:
        out.error(exc)
        return _ERROR_EXITS.get(exc.kind, GetExit.FAILED)
    except KeyboardInterrupt:
        out.interrupted(args.model, seen)
        return GetExit.INTERRUPTED
    out.result(result)
    if result.status is DownloadStatus.FAILED:
        return _FAILURE_EXITS.get(result.cause or DownloadFailure.FAILED, GetExit.FAILED)
    return GetExit.OK


def _on_event(event: Event, model: str, instance: str, seen: _Seen, out: _Output) -> None:
    if event.instance != instance or getattr(event, "model", None) != model:
        return
    if isinstance(event, DownloadStarted):
        seen.job_id, seen.via_lms = event.job_id, event.via_lms
        out.started(event)
    elif isinstance(event, DownloadProgressed) and event.job_id == seen.job_id:
        out.progress(event)


def _eta(event: DownloadProgressed) -> float | None:
    if not event.bytes_per_second or event.total_bytes is None or event.downloaded_bytes is None:
        return None
    return max(0.0, (event.total_bytes - event.downloaded_bytes) / event.bytes_per_second)


def _speed(event: DownloadProgressed) -> str:
    if event.paused:
        return "paused in LM Studio"
    return f"{human_size(int(event.bytes_per_second))}/s" if event.bytes_per_second else "-- /s"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    whole = round(seconds)
    hours, minutes, secs = whole // 3600, whole // 60 % 60, whole % 60
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _percent(event: DownloadProgressed) -> float | None:
    if not event.total_bytes or event.downloaded_bytes is None:
        return None
    return min(100.0, event.downloaded_bytes * 100 / event.total_bytes)


class _Output:
    """Plain lines; subclasses draw a bar or write JSON lines."""

    def __init__(self) -> None:
        self._next_step = PLAIN_STEP

    @staticmethod
    def make(args: argparse.Namespace) -> _Output:
        if args.json:
            return _JsonOutput()
        return _BarOutput() if sys.stdout.isatty() else _Output()

    def started(self, event: DownloadStarted) -> None:
        how = " (attached to the download already running)" if event.attached else ""
        via = " with `lms get`" if event.via_lms else ""
        _say(f"Downloading {event.model} ({human_size(event.total_bytes)}) on {event.instance}{via}{how}.")

    def progress(self, event: DownloadProgressed) -> None:
        percent = _percent(event)
        if percent is None or percent < self._next_step:
            return
        self._next_step = (int(percent) // PLAIN_STEP + 1) * PLAIN_STEP
        _say(f"{event.model}: {percent:.0f}% of {human_size(event.total_bytes)}, {_speed(event)}, "
             f"ETA {_clock(_eta(event))}")

    def close(self) -> None:
        """The download is over (or followed no longer): a bar is taken down."""

    def result(self, result: DownloadResult) -> None:
        if result.status is DownloadStatus.ALREADY_DOWNLOADED:
            _say(f"{result.model} is downloaded already on {result.instance}; nothing to do.")
        elif result.status is DownloadStatus.COMPLETED:
            took = f" in {result.seconds:.1f} s" if result.seconds is not None else ""
            _say(f"Downloaded {result.model} ({human_size(result.total_bytes)}) on {result.instance}{took}. "
                 f"Load it with `lmstudio-tray load {result.model}`.")
        else:
            print(f"lmstudio-tray: downloading {result.model} on {result.instance} failed: {result.reason}",
                  file=sys.stderr)

    def error(self, exc: ActionError) -> None:
        print(f"lmstudio-tray: {exc}", file=sys.stderr)

    def interrupted(self, model: str, seen: _Seen) -> None:
        print(f"lmstudio-tray: {interrupted_text(model, seen)}", file=sys.stderr)


def interrupted_text(model: str, seen: _Seen) -> str:
    """What Ctrl-C did to the download, in words."""
    again = f"`lmstudio-tray get {model}`"
    if seen.job_id is None:
        return (f"interrupted before LM Studio confirmed the download of {model}; if it started, it goes on inside "
                f"LM Studio: run {again} to follow it.")
    if seen.via_lms:
        return (f"interrupted: the `lms get` process downloading {model} (this LM Studio has no REST download, "
                f"added in 0.4.0) was stopped with this command; LM Studio's downloads show whether it goes on. Run "
                f"{again} to download it again.")
    return (f"stopped following the download of {model} (job {seen.job_id}): it goes on inside LM Studio. Run {again} "
            "again to follow it, or watch it in LM Studio's downloads.")


def _say(line: str) -> None:
    print(line, flush=True)


class _JsonOutput(_Output):
    """One JSON object per line on stdout, each with its `event`."""

    def started(self, event: DownloadStarted) -> None:
        data = event.to_json()
        del data["kind"]  # the line's `event` says it
        _json_line("started", data)

    def progress(self, event: DownloadProgressed) -> None:
        data = event.to_json()
        del data["kind"]
        data.update(percent=_percent(event), eta_seconds=_eta(event))
        _json_line("progress", data)

    def result(self, result: DownloadResult) -> None:
        _json_line("result", result.to_json())

    def error(self, exc: ActionError) -> None:
        _json_line("error", {"kind": exc.kind.value, "message": str(exc)})

    def interrupted(self, model: str, seen: _Seen) -> None:
        _json_line("interrupted", {
            "model": model, "instance": seen.instance, "job_id": seen.job_id,
            "continues_in_lm_studio": seen.job_id is not None and not seen.via_lms,
            "message": interrupted_text(model, seen),
        })


def _json_line(event: str, data: dict[str, Any]) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


class _BarOutput(_Output):
    """A rich progress bar on the terminal: percent, bytes, LM Studio's speed and the ETA from it."""

    def __init__(self) -> None:
        super().__init__()
        from rich.progress import BarColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[size]}"), TextColumn("{task.fields[speed]}"), TextColumn("ETA {task.fields[eta]}"),
            transient=True,
        )
        self._task: Any = None

    def started(self, event: DownloadStarted) -> None:
        super().started(event)
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task(event.model, total=event.total_bytes or None, size="", speed="", eta="")

    def progress(self, event: DownloadProgressed) -> None:
        if self._task is None:
            return
        size = f"{human_size(event.downloaded_bytes)} / {human_size(event.total_bytes)}"
        self._bar.update(self._task, completed=event.downloaded_bytes or 0, total=event.total_bytes or None,
                         size=size, speed=_speed(event), eta=_clock(_eta(event)))

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None

