"""Start the tray at login: one interface, one module per platform (`linux`, `macos`, `windows`).

Autostart is opt-in. Nothing here turns it on except an explicit `enable()`, which only the user's own
action calls (the CLI command or the tray's "Start at login" item). When the user switched it off
outside the app (GNOME's startup settings, Windows' Task Manager, macOS' Login Items) `status()` says so
with `user_disabled`, and nothing re-adds it behind their back.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

APP_LABEL = "LM Studio Tray"
ENTRY_NAME = "lmstudio-tray"  # file / unit / registry value name, the same on every platform
BUNDLE_ID = "io.github.lmstudio-tray"  # macOS label; matches the .app's CFBundleIdentifier


class AutostartError(Exception):
    """Autostart could not be changed; the message says what failed and what to do."""


class AutostartUnsupported(AutostartError):
    """No autostart implementation for this platform."""


@dataclass(frozen=True)
class AutostartStatus:
    enabled: bool
    where: str | None  # the file or registry value that starts the app (None when there is none)
    user_disabled: bool = False  # an entry exists but the user switched it off outside the app
    mechanism: str = ""  # "xdg", "systemd", "launchagent", "registry"
    command: tuple[str, ...] = ()  # argv the entry starts, when it can be read back
    detail: str = ""  # one human sentence, e.g. why it is off
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "where": self.where,
            "user_disabled": self.user_disabled,
            "mechanism": self.mechanism,
            "command": list(self.command),
            "detail": self.detail,
            **self.extra,
        }


class Autostart(ABC):
    """Start-at-login for one platform. Every method is synchronous, cheap and safe to call from a menu."""

    mechanism: str = ""

    @abstractmethod
    def enable(self) -> AutostartStatus:
        """Register the app to start at login (the user asked for it), replacing a stale or disabled entry."""

    @abstractmethod
    def disable(self) -> AutostartStatus:
        """Remove what `enable` registered; afterwards `status().enabled` is False."""

    @abstractmethod
    def status(self) -> AutostartStatus:
        """Read the current state without changing anything."""

    def set_enabled(self, on: bool) -> AutostartStatus:
        """For checkboxes: enable or disable, raising AutostartError if the result is not what was asked."""
        result = self.enable() if on else self.disable()
        if result.enabled != on:
            raise AutostartError(result.detail or f"autostart is still {'off' if not on else 'on'}")
        return result


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
