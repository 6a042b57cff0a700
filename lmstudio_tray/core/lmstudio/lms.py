"""The `lms` command-line tool: finding it and running the few commands the tray needs.

Starting or stopping LM Studio's HTTP server is impossible over HTTP (the port is closed while it is
off), so it goes through `lms`, found on PATH or in LM Studio's home `bin/` like LM Studio installs it.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmstudio_tray.core.errors import LmsError
from lmstudio_tray.core.support import paths

LMS_MISSING = (
    "the `lms` command was not found (looked on PATH and in {home}/bin). Start LM Studio once, or run "
    "`npx lmstudio install-cli`, then try again; you can also start the server from LM Studio's Developer tab."
)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_IDENTIFIER = re.compile(r'identifier "([^"]+)"')


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


def find_lms() -> Path | None:
    """The `lms` executable: on PATH, else in LM Studio's home `bin/`; None when there is none."""
    exe = "lms.exe" if sys.platform == "win32" else "lms"
    on_path = shutil.which(exe)
    if on_path:
        return Path(on_path)
    candidate = paths.lmstudio_home() / "bin" / exe
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


class Lms:
    """Runs `lms` for one LM Studio server: the local one, or a remote one through `--host` (and `--port`). Coroutines
    on the running loop; on Windows the processes get no console window."""

    def __init__(self, path: Path, *, host: str | None = None, port: int | None = None) -> None:
        self.path = path
        self.host = host
        self.port = port
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def _base(self) -> list[str]:
        args = [str(self.path)]
        if self.host:
            args += ["--host", self.host]
            if self.port:
                args += ["--port", str(self.port)]
        return args

    async def run(self, *args: str, timeout: float = 30.0) -> LmsResult:
        """Run `lms ARGS` and wait up to `timeout` s; its result whatever the exit code. LmsError (and the process
        killed) when it takes longer."""
        proc = await asyncio.create_subprocess_exec(
            *self._base(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **_no_window()
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise LmsError(f"`lms {' '.join(args)}` did not finish within {timeout:.0f} s") from None
        return LmsResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    async def server_start(self, port: int | None) -> LmsResult:
        """`lms server start`, on `port` when given; waits up to 60 s."""
        args = ["server", "start"] + (["--port", str(port)] if port else [])
        return await self.run(*args, timeout=60.0)

    async def server_stop(self) -> LmsResult:
        """`lms server stop`; waits up to 30 s."""
        return await self.run("server", "stop", timeout=30.0)

    async def server_status(self) -> dict[str, Any]:
        """`lms server status --json`, parsed: the last JSON object it printed. LmsError when it printed none."""
        result = await self.run("server", "status", "--json", "--quiet", timeout=15.0)
        for line in reversed(result.stdout.strip().splitlines()):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    return data
        raise LmsError(f"`lms server status --json` gave no JSON: {result.message}")

    async def load(
        self,
        key: str,
        *,
        context_length: int | None,
        on_progress: Callable[[float], None],
        timeout: float = 900.0,
    ) -> str:
        """Load through `lms load`, reporting LM Studio's own progress. Returns the instance identifier."""
        args = [*self._base(), "load", key, "--yes"]
        if context_length:
            args += ["--context-length", str(context_length)]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **_no_window()
        )
        self._procs[key] = proc
        text: list[str] = []

        async def pump(stream: asyncio.StreamReader) -> None:
            buf = b""
            while chunk := await stream.read(256):
                buf += chunk
                # spinners redraw with \r; treat it like a line end
                *lines, buf = re.split(rb"[\r\n]", buf)
                for raw in lines:
                    line = raw.decode(errors="replace")
                    text.append(line)
                    match = _PERCENT.search(line)
                    if match and "oading" in line:
                        on_progress(min(1.0, float(match.group(1)) / 100.0))
            if buf:
                text.append(buf.decode(errors="replace"))

        try:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.wait_for(asyncio.gather(pump(proc.stderr), pump(proc.stdout), proc.wait()), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise LmsError(f"loading {key} did not finish within {timeout:.0f} s") from None
        finally:
            self._procs.pop(key, None)
        joined = "\n".join(text)
        if proc.returncode == -signal.SIGINT or proc.returncode == 130 or proc.returncode == -signal.SIGTERM:
            raise LmsError(f"loading {key} was cancelled", cancelled=True)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in text if ln.strip() and "%" not in ln]
            last = lines[-1] if lines else f"lms load exited with {proc.returncode}"
            # cancelled in LM Studio itself (its window, another `lms`): lms says so in its last line
            raise LmsError(last, cancelled="cancelled" in last)
        match = _IDENTIFIER.search(joined)
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


def _no_window() -> dict[str, Any]:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import subprocess

        return {"creationflags": subprocess.CREATE_NO_WINDOW}
    return {}
