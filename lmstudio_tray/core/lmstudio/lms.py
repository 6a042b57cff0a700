"""The `lms` command-line tool: finding it and running the commands the core needs.

Starting or stopping LM Studio's HTTP server is impossible over HTTP (the port is closed while it is
off), so it goes through `lms`, found on PATH or in LM Studio's home `bin/` like LM Studio installs it. So do
the llmster daemon (`lms daemon up|down|status`), loads with the options only `lms load` has, memory
estimates (`lms load --estimate-only`) and downloads on LM Studio versions without the REST download route
(`lms get`). `lms` writes what people read to stderr (errors after `Error:`, warnings after `W`) and JSON to
stdout; any command that needs LM Studio first wakes it from its install location.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lmstudio_tray.core.errors import LmsError, LmsFailure
from lmstudio_tray.core.lmstudio.load_options import LoadOptions
from lmstudio_tray.core.support import paths

LMS_MISSING = (
    "the `lms` command was not found (looked on PATH and in {home}/bin). Start LM Studio once, or run "
    "`npx lmstudio install-cli`, then try again; you can also start the server from LM Studio's Developer tab."
)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_IDENTIFIER = re.compile(r'identifier "([^"]+)"')
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[78su]")
_SIZE = r"(\d+(?:\.\d+)?) (Bytes|B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)"
_DOWNLOAD = re.compile(rf"(\d+(?:\.\d+)?)% \| {_SIZE} / {_SIZE} \| {_SIZE}/s")
_UNITS = {
    "B": 1, "Bytes": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}
_ESTIMATE_FITS = "This model may be loaded based on your resource guardrails settings."
_ESTIMATE_FAILS = "This model will fail to load based on your resource guardrails settings."


# What LM Studio's `lms` prints for each failure it has words for (lmstudio-ai/lms and lmstudio-js sources).
_MARKERS = (
    ("no valid installation could be found", LmsFailure.NOT_INSTALLED),
    ("Timed out waiting for LM Studio daemon to start", LmsFailure.DAEMON_TIMEOUT),
    ("Failed to verify the server is running", LmsFailure.BIND_REFUSED),
    ("Load cancelled.", LmsFailure.CANCELLED),
    ("Model loading was cancelled", LmsFailure.CANCELLED),  # cancelled in LM Studio itself
    ("Model not found", LmsFailure.MODEL_NOT_FOUND),
    ("No staff picks found", LmsFailure.MODEL_NOT_FOUND),
    ("not found in the LM Studio catalog", LmsFailure.MODEL_NOT_FOUND),
    ("Daemon is not running.", LmsFailure.NOT_RUNNING),
    ("The server is not running.", LmsFailure.NOT_RUNNING),
    ("running as part of LM Studio", LmsFailure.DESKTOP_APP),
)
# What to tell a person for the failures that have a clear next step.
_ADVICE = {
    LmsFailure.NOT_INSTALLED: "LM Studio is not running and `lms` found no LM Studio or llmster installation to "
    "start; install LM Studio (or llmster), start it once, then try again",
    LmsFailure.DAEMON_TIMEOUT: "LM Studio was started but did not answer in time; start LM Studio by hand and "
    "look at its logs",
    LmsFailure.BIND_REFUSED: "LM Studio could not serve on that port or address: the port may be in use by "
    "another program, or the address is not one of this machine's; pick another port (or address) and retry",
    LmsFailure.DESKTOP_APP: "the LM Studio desktop app is running the service; quit LM Studio to stop it",
}


@dataclass(frozen=True)
class LmsResult:
    """How one `lms` command ended: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """What `lms` said last: the last line of its stderr, else of its stdout, else a line naming the exit code."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return text[-1] if text else f"lms exited with {self.returncode}"

    @property
    def warnings(self) -> tuple[str, ...]:
        """`lms` warnings (`W <text>` on stderr), without the prefix."""
        return tuple(line[2:].strip() for line in self.stderr.splitlines() if line.startswith("W "))

    @property
    def error(self) -> str:
        """The error `lms` reported: its `Error:` lines without the prefix, else its last line."""
        errors = [line.removeprefix("Error:").strip() for line in self.stderr.splitlines() if line.startswith("Error:")]
        return " ".join(errors) if errors else self.message


def failure_of(text: str) -> LmsFailure:
    """The failure kind `lms`'s words in `text` name; FAILED when they name none."""
    return next((kind for marker, kind in _MARKERS if marker in text), LmsFailure.FAILED)


def raise_for(result: LmsResult, what: str) -> None:
    """Turn a non-zero exit into an LmsError with its kind and a message that says what to do."""
    if result.returncode == 0:
        return
    kind = failure_of(result.stderr + result.stdout)
    advice = _ADVICE.get(kind)
    detail = f"{advice} (lms: {result.error})" if advice else result.error
    raise LmsError(f"{what} failed: {detail}", kind)


@dataclass(frozen=True)
class ServerStatus:
    """`lms server status --json`: the configured port answers LM Studio's greeting, or not."""

    running: bool
    port: int | None  # None when LM Studio never saved a server config


@dataclass(frozen=True)
class ServerStarted:
    """`lms server start` succeeded: where the server listens, and what `lms` warned about."""
    port: int
    bind: str
    cors: bool
    warnings: tuple[str, ...]  # what `lms` warned about (CORS on, serving the network), as it said it


@dataclass(frozen=True)
class DaemonStatus:
    """`lms daemon status|up --json`: whether the LM Studio service runs, and as what."""

    running: bool
    pid: int | None = None
    is_daemon: bool | None = None  # True: llmster, the headless daemon; False: the desktop app
    version: str | None = None  # reported by `daemon up` only


@dataclass(frozen=True)
class LoadEstimate:
    """`lms load --estimate-only`: what LM Studio expects the load to need, and its guardrails' verdict."""

    model: str
    context_length: int | None
    gpu_offload: float | None  # the ratio asked for (0..1); None = LM Studio decides
    gpu_memory_bytes: int
    total_memory_bytes: int
    low_confidence: bool
    fits: bool  # "may be loaded" (True) or "will fail to load" (False) under the resource guardrails


@dataclass(frozen=True)
class DownloadProgress:
    """One frame of `lms get`'s progress bar."""
    fraction: float
    downloaded_bytes: int
    total_bytes: int
    bytes_per_second: float


@dataclass(frozen=True)
class GetResult:
    """`lms get` finished: the model was downloaded now, or already was."""

    already_downloaded: bool
    model: str | None  # the key `lms` names to load it with, when it says


def find_lms() -> Path | None:
    """The `lms` executable: on PATH, else in LM Studio's home `bin/`; None when there is none."""
    exe = "lms.exe" if sys.platform == "win32" else "lms"
    on_path = shutil.which(exe)
    if on_path:
        return Path(on_path)
    candidate = paths.lmstudio_home() / "bin" / exe
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def size_bytes(number: str, unit: str) -> int:
    """`number` `unit` (as `lms` prints sizes: GB or GiB, MB or MiB, ...) in bytes."""
    return round(float(number) * _UNITS[unit])


def _json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return None


def parse_estimate(text: str) -> LoadEstimate:
    """The lines `lms load --estimate-only` prints (sizes in GiB, or GB before Feb 2026)."""
    fields: dict[str, str] = {}
    verdict: bool | None = None
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).strip()
        if line.startswith("Estimate:"):
            verdict = _ESTIMATE_FITS in line if (_ESTIMATE_FITS in line or _ESTIMATE_FAILS in line) else None
        elif ":" in line:
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()

    def memory(name: str) -> int:
        match = re.fullmatch(_SIZE, fields.get(name, ""))
        if match is None:
            raise LmsError(f"`lms load --estimate-only` gave no {name} line: {text.strip()!r}", LmsFailure.BAD_OUTPUT)
        return size_bytes(match.group(1), match.group(2))

    if "Model" not in fields or verdict is None:
        raise LmsError(f"`lms load --estimate-only` gave no estimate: {text.strip()!r}", LmsFailure.BAD_OUTPUT)
    ctx = fields.get("Context Length")
    gpu = fields.get("GPU Offload")
    return LoadEstimate(
        model=fields["Model"],
        context_length=int(ctx.replace(",", "")) if ctx else None,
        gpu_offload=float(gpu.rstrip("%")) / 100 if gpu else None,
        gpu_memory_bytes=memory("Estimated GPU Memory"),
        total_memory_bytes=memory("Estimated Total Memory"),
        low_confidence=fields.get("Confidence", "").upper() == "LOW",
        fits=verdict,
    )


def parse_download_progress(line: str) -> DownloadProgress | None:
    """One frame of `lms get`'s progress bar: `45.00% | 1.03 GB / 2.28 GB | 250.00 MB/s | ETA 00:05`."""
    match = _DOWNLOAD.search(_ANSI.sub("", line))
    if match is None:
        return None
    return DownloadProgress(
        fraction=min(1.0, float(match.group(1)) / 100),
        downloaded_bytes=size_bytes(match.group(2), match.group(3)),
        total_bytes=size_bytes(match.group(4), match.group(5)),
        bytes_per_second=float(size_bytes(match.group(6), match.group(7))),
    )


class Lms:
    """Runs `lms` for LM Studio on this machine (the real CLI's `--host` works for a few commands only and not for
    `server start/stop`, so a remote instance is never driven through `lms`). Coroutines on the running loop; on
    Windows the processes get no console window."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    async def run(self, *args: str, timeout: float = 30.0) -> LmsResult:
        """Run `lms ARGS` and collect its output; a run longer than `timeout` is killed (LmsError TIMEOUT)."""
        proc = await asyncio.create_subprocess_exec(
            str(self.path), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **_no_window()
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            command = " ".join(args)
            raise LmsError(f"`lms {command}` did not finish within {timeout:.0f} s", LmsFailure.TIMEOUT) from None
        finally:
            if proc.returncode is None:
                # cancelled (the core stopping mid-poll): a short query has no work to keep, and a child left running
                # would outlive the loop its pipes belong to
                proc.kill()
                await proc.wait()
        return LmsResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    # ---- the HTTP server ---------------------------------------------------------------------------

    async def server_start(
        self, port: int | None, *, bind: str | None = None, cors: bool = False
    ) -> LmsResult:
        """`lms server start` as is (the caller reads the exit code); `start_server` raises instead."""
        args = ["server", "start"] + (["--port", str(port)] if port else [])
        if bind:
            args += ["--bind", bind]
        if cors:
            args.append("--cors")
        return await self.run(*args, timeout=90.0)

    async def start_server(
        self, port: int | None = None, *, bind: str | None = None, cors: bool = False
    ) -> ServerStarted:
        """Start LM Studio's HTTP server: `port` (None: the last one), `bind` = the network interface
        (127.0.0.1: this machine only; 0.0.0.0 or this machine's LAN address: the local network), `cors`.
        A port in use or an address that is not this machine's raises LmsError(BIND_REFUSED)."""
        result = await self.server_start(port, bind=bind, cors=cors)
        raise_for(result, "Starting LM Studio's server")
        match = re.search(r"Server is now running on port (\d+)", result.stderr)
        if match is None:
            raise LmsError(f"`lms server start` did not say where the server runs: {result.message}",
                           LmsFailure.BAD_OUTPUT)
        return ServerStarted(int(match.group(1)), bind or "127.0.0.1", cors, result.warnings)

    async def server_stop(self) -> LmsResult:
        """`lms server stop`; waits up to 30 s."""
        return await self.run("server", "stop", timeout=30.0)

    async def server_status(self) -> ServerStatus:
        """`lms server status --json`: LM Studio's saved port and whether its greeting answers there."""
        result = await self.run("server", "status", "--json", "--quiet", timeout=15.0)
        data = _json_line(result.stdout)
        if data is None or not isinstance(data.get("running"), bool):
            raise LmsError(f"`lms server status --json` gave no JSON: {result.message}", LmsFailure.BAD_OUTPUT)
        port = data.get("port")
        return ServerStatus(data["running"], port if isinstance(port, int) and not isinstance(port, bool) else None)

    # ---- the LM Studio service (llmster) --------------------------------------------------------------

    async def daemon_status(self) -> DaemonStatus:
        """`lms daemon status --json`: whether LM Studio's service runs (llmster or the desktop app)."""
        result = await self.run("daemon", "status", "--json", timeout=30.0)
        raise_for(result, "Asking for the LM Studio daemon's status")
        return _daemon(result, "daemon status")

    async def daemon_up(self, *, timeout: float = 120.0) -> DaemonStatus:
        """Start llmster if LM Studio is not running (the real CLI waits up to 60 s for it)."""
        result = await self.run("daemon", "up", "--json", timeout=timeout)
        raise_for(result, "Starting the LM Studio daemon")
        return _daemon(result, "daemon up")

    async def daemon_down(self) -> str:
        """Stop llmster. Nothing running raises LmsError(NOT_RUNNING); the desktop app, (DESKTOP_APP)."""
        result = await self.run("daemon", "down", timeout=60.0)
        raise_for(result, "Stopping the LM Studio daemon")
        return result.message

    # ---- models --------------------------------------------------------------------------------------

    async def estimate(self, key: str, *, context_length: int | None = None, gpu: float | None = None) -> LoadEstimate:
        """`lms load KEY --estimate-only`: loads nothing."""
        options = LoadOptions(context_length=context_length, gpu=gpu)
        result = await self.run("load", key, "--estimate-only", "--yes", *options.lms_args(), timeout=60.0)
        raise_for(result, f"Estimating {key}")
        return parse_estimate(result.stderr)

    async def load(
        self,
        key: str,
        *,
        context_length: int | None,
        on_progress: Callable[[float], None],
        timeout: float = 900.0,
        options: LoadOptions | None = None,
    ) -> str:
        """Load through `lms load`, reporting LM Studio's own progress. Returns the instance identifier.
        `options` adds GPU offload, TTL, parallel and identifier (an option `lms` has no flag for raises
        UnsupportedLoadOptions before anything runs)."""
        opts = options or LoadOptions()
        opts.check_lms()
        if context_length and opts.context_length is None:
            opts = replace(opts, context_length=context_length)
        proc = await asyncio.create_subprocess_exec(
            str(self.path), "load", key, "--yes", *opts.lms_args(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **_no_window(),
        )
        self._procs[key] = proc
        errors: list[str] = []

        def on_line(line: str, stderr: bool) -> None:
            match = _PERCENT.search(line)
            if match and "oading" in line:
                on_progress(min(1.0, float(match.group(1)) / 100.0))
            elif stderr:
                errors.append(line)

        try:
            await asyncio.wait_for(_pump_both(proc, on_line), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise LmsError(f"loading {key} did not finish within {timeout:.0f} s", LmsFailure.TIMEOUT) from None
        finally:
            self._procs.pop(key, None)
        said = "\n".join(errors)
        if proc.returncode in (-signal.SIGINT, 130, -signal.SIGTERM) or failure_of(said) is LmsFailure.CANCELLED:
            raise LmsError(f"loading {key} was cancelled", LmsFailure.CANCELLED)
        if proc.returncode != 0:
            lines = [ln for ln in errors if ln.strip()]
            message = lines[-1] if lines else f"lms load exited with {proc.returncode}"
            raise LmsError(message, failure_of(said))
        match = _IDENTIFIER.search(said)
        return match.group(1) if match else key

    def cancel(self, key: str) -> bool:
        """Cancel the running `lms load` of `key` the way a person does (Ctrl-C; on Windows the process is terminated).
        False when no such load runs."""
        proc = self._procs.get(key)
        if proc is None or proc.returncode is not None:
            return False
        # Ctrl-C is how a person cancels `lms load`; the CLI then aborts the load in LM Studio.
        proc.send_signal(signal.SIGINT if sys.platform != "win32" else signal.SIGTERM)
        return True

    async def get(
        self, model: str, *, on_progress: Callable[[DownloadProgress], None] | None = None, timeout: float = 86400.0
    ) -> GetResult:
        """Download `model` with `lms get MODEL --yes` (a catalog key, `owner/name@quant` or a Hugging Face
        URL), reporting the progress bar's figures; for LM Studio versions without the REST download route."""
        proc = await asyncio.create_subprocess_exec(
            str(self.path), "get", model, "--yes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **_no_window(),
        )
        said: list[str] = []

        def on_line(line: str, stderr: bool) -> None:
            progress = parse_download_progress(line)
            if progress is not None:
                if on_progress is not None:
                    on_progress(progress)
            elif stderr:
                said.append(line)

        try:
            await asyncio.wait_for(_pump_both(proc, on_line), timeout)
        except asyncio.TimeoutError:
            raise LmsError(f"downloading {model} did not finish within {timeout:.0f} s", LmsFailure.TIMEOUT) from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: the download stops with its `lms`
                proc.kill()
                await proc.wait()
        result = LmsResult(proc.returncode or 0, "", "\n".join(said))
        if result.returncode != 0:
            kind = failure_of(result.stderr)
            raise LmsError(f"Downloading {model} failed: {result.error}",
                           kind if kind is not LmsFailure.FAILED else LmsFailure.DOWNLOAD_FAILED)
        hint = re.search(r"lms load (\S+)", result.stderr)
        return GetResult("already downloaded" in result.stderr, hint.group(1) if hint else None)


def _daemon(result: LmsResult, command: str) -> DaemonStatus:
    data = _json_line(result.stdout)
    if data is None or data.get("status") not in ("running", "not-running"):
        raise LmsError(f"`lms {command} --json` gave no status: {result.message}", LmsFailure.BAD_OUTPUT)
    pid, daemon, version = data.get("pid"), data.get("isDaemon"), data.get("version")
    return DaemonStatus(
        running=data["status"] == "running",
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        is_daemon=daemon if isinstance(daemon, bool) else None,
        version=version if isinstance(version, str) else None,
    )


async def _pump_both(proc: asyncio.subprocess.Process, on_line: Callable[[str, bool], None]) -> None:
    """Feed every line of both streams to `on_line(text, is_stderr)` as it comes; spinners and progress bars
    redraw with \\r, which counts as a line end; terminal control codes are dropped."""

    async def pump(stream: asyncio.StreamReader, stderr: bool) -> None:
        buf = b""
        while chunk := await stream.read(256):
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                text = _ANSI.sub("", raw.decode(errors="replace"))
                if text.strip():
                    on_line(text, stderr)
        if buf.strip():
            on_line(_ANSI.sub("", buf.decode(errors="replace")), stderr)

    assert proc.stdout is not None and proc.stderr is not None
    await asyncio.gather(pump(proc.stderr, True), pump(proc.stdout, False), proc.wait())


def _no_window() -> dict[str, Any]:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import subprocess

        return {"creationflags": subprocess.CREATE_NO_WINDOW}
    return {}
