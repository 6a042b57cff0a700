"""Start the tray at login: one interface, one module per platform (`linux`, `macos`, `windows`).

Autostart is opt-in. Nothing here turns it on except an explicit `enable()`, which only the user's own
action calls (the CLI command or the tray's "Start at login" item). When the user switched it off
outside the app (GNOME's startup settings, Windows' Task Manager, macOS' Login Items) `status()` says so
with `user_disabled`, and nothing re-adds it behind their back.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lmstudio_tray.platform.autostart.base import (
    APP_LABEL,
    BUNDLE_ID,
    ENTRY_NAME,
    Autostart,
    AutostartError,
    AutostartStatus,
    AutostartUnsupported,
)


def for_platform(platform: str | None = None, *, command: Sequence[str] | None = None, **options: Any) -> Autostart:
    """The implementation for `platform` (default `sys.platform`).

    `command` is the argv to register (default: how this copy of the app is installed). Options go to the
    platform class, e.g. `systemd=True` on Linux.
    """
    plat = platform or sys.platform
    if plat.startswith("linux") or "bsd" in plat:
        from lmstudio_tray.platform.autostart.linux import LinuxAutostart

        return LinuxAutostart(command=command, **options)
    if plat == "darwin":
        from lmstudio_tray.platform.autostart.macos import MacAutostart

        return MacAutostart(command=command, **options)
    if plat in ("win32", "cygwin"):
        from lmstudio_tray.platform.autostart.windows import WindowsAutostart

        return WindowsAutostart(command=command, **options)
    raise AutostartUnsupported(f"start at login is not supported on {plat!r}; start lmstudio-tray from your session")


__all__ = [
    "APP_LABEL",
    "BUNDLE_ID",
    "ENTRY_NAME",
    "Autostart",
    "AutostartError",
    "AutostartStatus",
    "AutostartUnsupported",
    "for_platform",
]
