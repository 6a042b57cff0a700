r"""Windows: a per-user value under `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`.

The Inno Setup installer's optional "Start at login" task writes the same value, so the app, the CLI and
the installer agree on one switch. When the user disables the app in Task Manager's Startup tab or in
Settings > Apps > Startup, Windows keeps the Run value and records the choice under
`...\Explorer\StartupApproved\Run` (first byte odd = disabled): that is `user_disabled`.

The registry sits behind `Registry` so the logic is tested with a dict on any OS; `WinRegistry` is the
real one (winreg, imported only when used).
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Sequence
from typing import Any, Protocol

from lmstudio_tray.platform.autostart.base import ENTRY_NAME, Autostart, AutostartError, AutostartStatus
from lmstudio_tray.platform.command import launch_command

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
VALUE_NAME = ENTRY_NAME


class Registry(Protocol):
    """The few HKEY_CURRENT_USER operations autostart needs."""

    def get(self, key: str, name: str) -> str | bytes | None: ...

    def set_string(self, key: str, name: str, value: str) -> None: ...

    def delete(self, key: str, name: str) -> None:
        """Remove a value; no error when it is not there."""


def _winreg() -> Any:
    # Imported by name: the module exists only on Windows, and its stubs only type-check there.
    return importlib.import_module("winreg")


class WinRegistry:
    """HKEY_CURRENT_USER through winreg."""

    def get(self, key: str, name: str) -> str | bytes | None:
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key) as handle:
                value, _kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        return value if isinstance(value, (str, bytes)) else str(value)

    def set_string(self, key: str, name: str, value: str) -> None:
        winreg = _winreg()
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE) as handle:
            winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, value)

    def delete(self, key: str, name: str) -> None:
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE) as handle:
                winreg.DeleteValue(handle, name)
        except FileNotFoundError:
            pass


def command_line(argv: Sequence[str]) -> str:
    """argv as one Windows command line (the Run value is parsed like a command line)."""
    return subprocess.list2cmdline(list(argv))


def split_command_line(value: str) -> list[str]:
    """The inverse of `command_line` for what it produces (quotes and backslash-quote pairs)."""
    args: list[str] = []
    cur: list[str] = []
    have = quoted = False
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            j = i
            while j < len(value) and value[j] == "\\":
                j += 1
            n = j - i
            if j < len(value) and value[j] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i = j + 1
                else:
                    i = j
                have = True
                continue
            cur.append("\\" * n)
            have = True
            i = j
            continue
        if c == '"':
            quoted = not quoted
            have = True
        elif c in " \t" and not quoted:
            if have:
                args.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args


def _approved_off(value: str | bytes | None) -> bool:
    # StartupApproved data is 12 bytes: 02/06 00.. means allowed; 03/07 + a FILETIME means switched off.
    return isinstance(value, bytes) and len(value) > 0 and bool(value[0] & 1)


class WindowsAutostart(Autostart):
    mechanism = "registry"

    def __init__(self, command: Sequence[str] | None = None, *, registry: Registry | None = None) -> None:
        self.command = list(command) if command else launch_command()
        self.registry: Registry = registry or WinRegistry()

    @property
    def where(self) -> str:
        return rf"HKCU\{RUN_KEY}\{VALUE_NAME}"

    def enable(self) -> AutostartStatus:
        try:
            self.registry.set_string(RUN_KEY, VALUE_NAME, command_line(self.command))
            # An explicit "on" from the user also lifts their earlier Task Manager "Disable".
            if _approved_off(self.registry.get(APPROVED_KEY, VALUE_NAME)):
                self.registry.delete(APPROVED_KEY, VALUE_NAME)
        except OSError as exc:
            raise AutostartError(f"could not write {self.where}: {exc}") from exc
        return self.status()

    def disable(self) -> AutostartStatus:
        try:
            self.registry.delete(RUN_KEY, VALUE_NAME)
            self.registry.delete(APPROVED_KEY, VALUE_NAME)
        except OSError as exc:
            raise AutostartError(f"could not remove {self.where}: {exc}") from exc
        return self.status()

    def status(self) -> AutostartStatus:
        value = self.registry.get(RUN_KEY, VALUE_NAME)
        if value is None:
            return AutostartStatus(False, None, mechanism=self.mechanism, detail="no Run registry value")
        text = value.decode("utf-16-le", "replace") if isinstance(value, bytes) else value
        argv = tuple(split_command_line(text))
        if _approved_off(self.registry.get(APPROVED_KEY, VALUE_NAME)):
            return AutostartStatus(False, self.where, user_disabled=True, mechanism=self.mechanism, command=argv,
                                   detail="switched off in Task Manager > Startup apps")
        return AutostartStatus(True, self.where, mechanism=self.mechanism, command=argv,
                               detail=f"starts at login via {self.where}")
