"""The start-at-login interface every platform module implements (see `platform.autostart`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
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
