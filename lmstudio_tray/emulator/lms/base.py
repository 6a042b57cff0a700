"""What every fake `lms` command shares: the logger with the real CLI's prefixes and levels, HTTP to the
emulator, LM Studio's home files, the control port client and the number formats of `lms`."""

from __future__ import annotations

import argparse
import http.client as http_client
import json
import math
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CONTROL_PORT_HEADER = "X-LMS-Emulator-Control-Port"
GREETING_TIMEOUT = 0.5
CONTROL_TIMEOUT = 3.0
# Never route loopback calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LEVELS = ("debug", "info", "warn", "error", "none")


class LmsError(Exception):
    """A failure already worded for stderr (with its prefix); the command exits 1."""


class Exit(Exception):
    """End the command with this exit code (the real CLI's `process.exit(code)`)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Logger:
    """`createLogger` of the real CLI: everything on stderr, info without a prefix, warnings after `W`, errors
    after `Error:`; `--quiet` silences it, `--log-level` sets the threshold (no colours: never a terminal)."""

    def __init__(self, args: argparse.Namespace) -> None:
        level = getattr(args, "log_level", None) or "info"
        if getattr(args, "quiet", False):
            level = "none"
        if getattr(args, "verbose", False):
            level = "debug"
        self.threshold = LEVELS.index(level)

    def _emit(self, level: str, *parts: str) -> None:
        if LEVELS.index(level) >= self.threshold:
            print(" ".join(parts), file=sys.stderr, flush=True)

    def info(self, text: str = "") -> None:
        self._emit("info", text)

    def warn(self, text: str) -> None:
        self._emit("warn", "W", text)

    def error(self, text: str) -> None:
        self._emit("error", "Error:", text)

    def error_without_prefix(self, text: str) -> None:
        self._emit("error", text)


def console(text: str = "") -> None:
    """`console.info`/`console.log`: stdout, whatever the log level."""
    print(text, flush=True)


def emit_json(data: Any) -> None:
    # JSON.stringify output: compact.
    print(json.dumps(data, separators=(",", ":"), ensure_ascii=False), flush=True)


def http(method: str, url: str, body: Any = None, timeout: float = CONTROL_TIMEOUT) -> tuple[int, Any, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            parsed = json.loads(payload or b"null")
        except ValueError:
            parsed = None
        return exc.code, parsed, exc.headers


def greeting_ok(host: str, port: int) -> tuple[bool, Any]:
    """`GET /lmstudio-greeting` with the CLI's 500 ms timeout: (answered as LM Studio, headers)."""
    try:
        status, body, headers = http("GET", f"http://{host}:{port}/lmstudio-greeting", timeout=GREETING_TIMEOUT)
    except (OSError, ValueError):
        return False, None
    return status == 200 and isinstance(body, dict) and body.get("lmstudio") is True, headers


def api_server_status(port: int, timeout: float = 3.0) -> dict[str, Any] | None:
    """`GET /lms-status` on an internal API server port: `{package, version}` when LM Studio answers."""
    try:
        status, body, _ = http("GET", f"http://127.0.0.1:{port}/lms-status", timeout=timeout)
    except (OSError, ValueError, http_client.HTTPException):  # a server going away may cut its answer short
        return None
    if status != 200 or not isinstance(body, dict):
        return None
    if not isinstance(body.get("package"), str) or not isinstance(body.get("version"), str):
        return None
    return body


# --- LM Studio's home ------------------------------------------------------------------------------------
def lmstudio_home() -> Path:
    env = os.environ.get("LMSTUDIO_HOME")
    if env:
        return Path(env)
    user_home = Path.home()
    pointer = user_home / ".lmstudio-home-pointer"
    if pointer.is_file():
        return Path(pointer.read_text(encoding="utf-8").strip())
    legacy = user_home / ".cache" / "lm-studio"
    return legacy if legacy.exists() else user_home / ".lmstudio"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def internal_file(name: str) -> Path:
    return lmstudio_home() / ".internal" / name


class Control:
    """The emulator's control port: the fake CLI's stand-in for the SDK websocket."""

    def __init__(self, base: str) -> None:
        self.base = base

    @property
    def host(self) -> str:
        return self.base.split("//", 1)[1].rsplit(":", 1)[0]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            status, data, _ = http(method, f"{self.base}/_emulator{path}", body)
        except (OSError, ValueError) as exc:
            raise LmsError(
                "Error: Failed to connect to LM Studio. Is LM Studio running? "
                f"(emulator control port {self.base} unreachable: {exc})"
            ) from exc
        return status, data

    def get(self, path: str) -> dict[str, Any]:
        status, data = self.call("GET", path)
        if status != 200 or not isinstance(data, dict):
            raise LmsError(f"Error: unexpected answer from LM Studio ({status}).")
        return data

    def state(self) -> dict[str, Any]:
        return self.get("/state")


# --- formats -----------------------------------------------------------------------------------------
def fmt_size(size: float) -> str:
    """`formatSizeBytes1000` (file and download sizes)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{int(size)} B"


def fmt_memory(size: int) -> str:
    """`formatSizeBytes1024` (RAM/VRAM, and the size after a load): `0 Bytes`, `512 Bytes`, `6.56 GiB`."""
    if size <= 0:
        return "0 Bytes"
    units = ("Bytes", "KiB", "MiB", "GiB", "TiB")
    index = min(int(math.log(size) / math.log(1024)), len(units) - 1)
    if index == 0:
        return f"{size} Bytes"
    return f"{size / 1024**index:.2f} {units[index]}"


def fmt_elapsed(seconds: float) -> str:
    """`formatElapsedTime`: `305.00ms`, `6.88s`, `1m 2.50s`, `1h 0m 0.00s`."""
    ms = seconds * 1000
    segments: list[str] = []
    if ms >= 3_600_000:
        segments.append(f"{int(ms // 3_600_000)}h")
        ms %= 3_600_000
    if ms >= 60_000 or segments:
        segments.append(f"{int(ms // 60_000)}m")
        ms %= 60_000
    if ms >= 1000 or segments:
        segments.append(f"{ms / 1000:.2f}s")
    if not segments:
        segments.append(f"{ms:.2f}ms")
    return " ".join(segments)


def js_number(value: float) -> str:
    """A number as JavaScript prints it (`50`, not `50.0`)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def log_line(text: str) -> None:
    """An error already worded with its prefix: stderr, whatever the log level."""
    print(text, file=sys.stderr, flush=True)
