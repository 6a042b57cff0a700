"""Finding the emulated LM Studio like `lms` finds the real one (createClient + findOrStartLlmster): the
internal API server named in `.internal/http-server.json`, else wake the service from its install-location
file and poll until it answers.

Remote mode (`--host/--port`) probes the greeting and then uses the control port the emulator advertises in a
private header; `LMS_EMULATOR_CONTROL_URL` (baked into an `lms` installed without a home) names the control
port directly. The real CLI also scans five well-known ports; the emulator never listens on them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lmstudio_tray.emulator.lms.base import (
    CONTROL_PORT_HEADER,
    Control,
    Exit,
    LmsError,
    Logger,
    api_server_status,
    greeting_ok,
    internal_file,
    read_json,
)

DEFAULT_REMOTE_PORT = 1234
# The real CLI polls once a second, 60 times; the emulator starts in milliseconds, so a twentieth of that.
WAKE_POLL_SECONDS = 0.05
WAKE_ATTEMPTS = 60
NOT_INSTALLED = "LM Studio daemon is not running and no valid installation could be found or installed."
WAKE_TIMEOUT = "Timed out waiting for LM Studio daemon to start."
NO_SERVICE = "Failed to start or connect to local LM Studio API server."


def env_control() -> str | None:
    env = os.environ.get("LMS_EMULATOR_CONTROL_URL")
    return env.rstrip("/") if env else None


def _preferred_port() -> int | None:
    path = os.environ.get("LMS_API_SERVER_INFO_PATH")
    info = read_json(Path(path) if path else internal_file("http-server.json"))
    port = info.get("port") if isinstance(info, dict) else None
    return port if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536 else None


def find_local() -> Control | None:
    """`tryFindLocalAPIServer`: the running service, or None (no waking)."""
    env = env_control()
    if env is not None:
        env_port = env.rsplit(":", 1)[-1]
        return Control(env) if env_port.isdigit() and api_server_status(int(env_port)) is not None else None
    port = _preferred_port()
    if port is not None and api_server_status(port) is not None:
        return Control(f"http://127.0.0.1:{port}")
    return None


def _install_location() -> tuple[dict[str, Any], bool] | None:
    """llmster's install location (preferred), else the desktop app's; with whether it is the daemon."""
    for name, daemon in (("llmster-install-location.json", True), ("app-install-location.json", False)):
        data = read_json(internal_file(name))
        if isinstance(data, dict) and isinstance(data.get("path"), str) and data["path"]:
            return data, daemon
    return None


def _wake(location: dict[str, Any], daemon: bool) -> None:
    path = location["path"]
    args = [] if daemon else ["--run-as-service"]
    cwd = location.get("cwd") if isinstance(location.get("cwd"), str) else str(Path(path).parent)
    # Detached and with no output, as the real CLI spawns it; a start that fails only shows as a timeout.
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [path, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=sys.platform != "win32",
        )


def find_or_start(logger: Logger) -> Control | None:
    """`findOrStartLlmster`."""
    found = find_local()
    if found is not None or env_control() is not None:
        return found
    located = _install_location()
    if located is None or not Path(located[0]["path"]).exists():
        logger.error(NOT_INSTALLED)
        return None
    logger.info("Waking up LM Studio service...")
    _wake(*located)
    for _ in range(WAKE_ATTEMPTS):
        time.sleep(WAKE_POLL_SECONDS)
        found = find_local()
        if found is not None:
            return found
    logger.error(WAKE_TIMEOUT)
    return None


def _remote(host: str, port: int) -> Control:
    ok, headers = greeting_ok(host, port)
    if not ok:
        raise LmsError(
            f"Error: The server does not appear to be running at {host}:{port}. Please make sure the server is "
            "running and accessible at the specified address."
        )
    control_port = headers.get(CONTROL_PORT_HEADER) if headers is not None else None
    if not control_port:
        raise LmsError(f"Error: {host}:{port} is an LM Studio server, not an lmstudio-tray emulator.")
    return Control(f"http://{host}:{control_port}")


def connect(args: argparse.Namespace, logger: Logger) -> Control:
    """`createClient`: remote mode, or the local service (woken if it is down); exits 1 when there is none."""
    host, port = getattr(args, "host", None), getattr(args, "port", None)
    if host is not None or port is not None:
        return _remote(host or "127.0.0.1", port or DEFAULT_REMOTE_PORT)
    env = env_control()
    if env is not None:
        return Control(env)
    info_path = os.environ.get("LMS_API_SERVER_INFO_PATH")
    if info_path:
        found = find_local()
        if found is None:
            logger.error(f"Failed to connect using {info_path}.")
            raise Exit(1)
        return found
    found = find_or_start(logger)
    if found is None:
        logger.error(NO_SERVICE)
        raise Exit(1)
    return found
