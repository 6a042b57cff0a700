"""LM Studio's own record of its HTTP server settings: `.internal/http-server-config.json` in its home.

LM Studio rewrites the file whenever the server starts or a server setting changes; `lms server start` reads
its port. What a program can change goes through `lms server start --port --bind --cors`; Just-in-Time
loading is a setting of the app only (shown here, not changeable); idle TTL and auto-evict are app settings
that the file does not hold: a program sets a TTL per load (`lms load --ttl`, REST `ttl`) or per JIT request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from lmstudio_tray.core.support import paths

CONFIG_NAME = "http-server-config.json"
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


class Reach(str, Enum):
    """Who can connect: LM Studio's "Serve on Local Network" switch."""

    THIS_MACHINE = "this_machine"
    LOCAL_NETWORK = "local_network"


def reach_of(network_interface: str) -> Reach:
    """Whether LM Studio serving on `network_interface` is reachable from this machine only or the local network."""
    try:
        loopback = ipaddress.ip_address(network_interface).is_loopback
    except ValueError:
        loopback = network_interface == "localhost"
    return Reach.THIS_MACHINE if loopback else Reach.LOCAL_NETWORK


class ServerConfigError(ValueError):
    """The file exists but is not a server config LM Studio wrote; the message names the file and the fault."""


@dataclass(frozen=True)
class ServerConfig:
    """LM Studio's own server settings (`.internal/http-server-config.json`)."""
    port: int
    network_interface: str  # 127.0.0.1 (this machine), 0.0.0.0 or an address of this machine (local network)
    cors: bool
    jit: bool | None  # Just-in-Time model loading; None when the file does not say
    auto_start: bool | None  # start the server when LM Studio starts (the last state is restored)
    source: Path

    @property
    def reach(self) -> Reach:
        """This machine only, or the local network."""
        return reach_of(self.network_interface)


def config_path(home: Path | None = None) -> Path:
    """LM Studio's server-settings file in its home (`home`, else the one LM Studio uses)."""
    return (home or paths.lmstudio_home()) / ".internal" / CONFIG_NAME


def _flag(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def read_server_config(home: Path | None = None) -> ServerConfig | None:
    """The settings LM Studio last saved; None when there is no file (its server was never started).
    Blocking: on the core loop use `load_server_config`."""
    source = config_path(home)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServerConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ServerConfigError(f"{source} is not valid JSON ({exc}); start the server once in LM Studio") from None
    port = data.get("port") if isinstance(data, dict) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ServerConfigError(f"{source} has no valid `port` (found {port!r}); start the server once in LM Studio")
    interface = data.get("networkInterface")
    return ServerConfig(
        port=port,
        network_interface=interface if isinstance(interface, str) and interface else LOOPBACK,
        cors=_flag(data, "cors") is True,
        jit=_flag(data, "justInTimeModelLoading"),
        auto_start=_flag(data, "autoStartOnLaunch"),
        source=source,
    )


async def load_server_config(home: Path | None = None) -> ServerConfig | None:
    """`read_server_config` in a worker thread, so the core loop never waits on the disk."""
    return await asyncio.to_thread(read_server_config, home)
