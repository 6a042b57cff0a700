"""Finding the local LM Studio server: its port from LM Studio's own settings, confirmed by the greeting
probe `lms` itself uses."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.support import paths


@dataclass(frozen=True)
class LocalServer:
    """The local LM Studio server as `instances discover` finds it: its URL, the LM Studio file the port came from, and
    whether it answered the greeting as LM Studio."""

    url: str
    source: Path  # the LM Studio file the port came from
    confirmed: bool  # the greeting probe answered as LM Studio


def local_server_url(home: Path | None = None) -> tuple[str, Path] | None:
    """The local server's address from LM Studio's own settings (`.internal/http-server-config.json`)."""
    source = (home or paths.lmstudio_home()) / ".internal" / "http-server-config.json"
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    port = data.get("port") if isinstance(data, dict) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    return f"http://127.0.0.1:{port}", source


async def greets(url: str, token: str | None = None, timeout: float = 1.0) -> bool:
    """`GET /lmstudio-greeting` answers as LM Studio (the check `lms` itself makes; no token needed)."""
    client = LMStudioClient(url, token=token, timeout=timeout)
    try:
        return await client.greeting()
    finally:
        await client.aclose()


async def discover_local(home: Path | None = None) -> LocalServer | None:
    """The local server from LM Studio's own settings (None when they name no port), confirmed by the greeting probe.
    Reads a file on the calling thread: for the CLI, not for the core's loop."""
    found = local_server_url(home)
    if found is None:
        return None
    url, source = found
    return LocalServer(url=url, source=source, confirmed=await greets(url))


def internal_api_port(home: Path | None = None) -> int | None:
    """The port of LM Studio's internal API server as LM Studio publishes it (`.internal/http-server.json`,
    newer builds); None when it does not. Reads a file: not on an event loop."""
    try:
        data = json.loads(((home or paths.lmstudio_home()) / ".internal" / "http-server.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    port = data.get("port") if isinstance(data, dict) else None
    return port if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536 else None


# The internal API server's well-known ports, which `lms` probes when LM Studio publishes none
# (LM Studio's `apiServerPorts`).
API_SERVER_PORTS = (41343, 52993, 16141, 39414, 22931)


async def local_version(home: Path | None = None, ports: tuple[int, ...] = API_SERVER_PORTS) -> str | None:
    """This machine's LM Studio version from its internal API server (`GET /lms-status`, the probe `lms` makes): on
    the port LM Studio publishes, else on the first of its well-known `ports` that answers (all asked at once, as
    `lms` does); None when none does. The file is read in a worker thread."""
    published = await asyncio.to_thread(internal_api_port, home)
    for candidates in ((published,) if published is not None else (), ports):
        found = [v for v in await asyncio.gather(*(_lms_status(p) for p in candidates)) if v]
        if found:
            return found[0]
    return None


async def _lms_status(port: int) -> str | None:
    client = LMStudioClient(f"http://127.0.0.1:{port}", timeout=3.0)
    try:
        return await client.lms_status()
    finally:
        await client.aclose()
