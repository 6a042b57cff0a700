"""Windows Run-key logic through the registry interface, with a dict standing in for HKCU."""

from __future__ import annotations

import subprocess

import pytest

from lmstudio_tray.platform.autostart import AutostartError, for_platform
from lmstudio_tray.platform.autostart.windows import (
    APPROVED_KEY,
    RUN_KEY,
    WindowsAutostart,
    command_line,
    split_command_line,
)


class FakeRegistry:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str | bytes] = {}
        self.fail: OSError | None = None

    def get(self, key: str, name: str) -> str | bytes | None:
        return self.values.get((key, name))

    def set_string(self, key: str, name: str, value: str) -> None:
        if self.fail:
            raise self.fail
        self.values[(key, name)] = value

    def delete(self, key: str, name: str) -> None:
        if self.fail:
            raise self.fail
        self.values.pop((key, name), None)


COMMAND = [r"C:\Users\Ann Lee\AppData\Local\Programs\LM Studio Tray\lmstudio-tray.exe", "run"]
DISABLED = bytes([3, 0, 0, 0]) + bytes(8)  # what Task Manager writes for "Disable"
ENABLED = bytes([2, 0, 0, 0]) + bytes(8)


@pytest.fixture
def reg() -> FakeRegistry:
    return FakeRegistry()


def win(reg: FakeRegistry, command: list[str] = COMMAND) -> WindowsAutostart:
    auto = for_platform("win32", command=command, registry=reg)
    assert isinstance(auto, WindowsAutostart)
    return auto


def test_off_by_default(reg: FakeRegistry) -> None:
    assert not win(reg).status().enabled
    assert reg.values == {}


def test_enable_writes_the_per_user_run_value(reg: FakeRegistry) -> None:
    status = win(reg).enable()
    assert status.enabled and status.where == rf"HKCU\{RUN_KEY}\lmstudio-tray"
    value = reg.values[(RUN_KEY, "lmstudio-tray")]
    assert value == r'"C:\Users\Ann Lee\AppData\Local\Programs\LM Studio Tray\lmstudio-tray.exe" run'
    assert list(status.command) == COMMAND


def test_disable_removes_the_value(reg: FakeRegistry) -> None:
    auto = win(reg)
    auto.enable()
    reg.values[(APPROVED_KEY, "lmstudio-tray")] = ENABLED
    assert not auto.disable().enabled
    assert reg.values == {}


def test_task_manager_disable_is_user_disabled_and_kept(reg: FakeRegistry) -> None:
    auto = win(reg)
    auto.enable()
    reg.values[(APPROVED_KEY, "lmstudio-tray")] = DISABLED
    status = auto.status()
    assert not status.enabled and status.user_disabled and "Task Manager" in status.detail
    assert reg.values[(APPROVED_KEY, "lmstudio-tray")] == DISABLED
    # Turning it on in the app is the user's newer choice.
    assert auto.enable().enabled
    assert (APPROVED_KEY, "lmstudio-tray") not in reg.values


def test_registry_errors_become_autostart_errors(reg: FakeRegistry) -> None:
    reg.fail = PermissionError("Access is denied")
    with pytest.raises(AutostartError, match=r"could not write HKCU\\.*Access is denied"):
        win(reg).enable()


@pytest.mark.parametrize(
    "argv",
    [
        COMMAND,
        [r"C:\Python 3.12\pythonw.exe", "-m", "lmstudio_tray", "run"],
        [r"C:\a\b", 'say "hi"', "trailing\\", "", r"x\\\"y"],
    ],
)
def test_command_line_round_trips(argv: list[str]) -> None:
    assert split_command_line(command_line(argv)) == argv
    assert command_line(argv) == subprocess.list2cmdline(argv)


def test_real_registry_is_the_default() -> None:
    from lmstudio_tray.platform.autostart.windows import WinRegistry

    assert isinstance(WindowsAutostart(COMMAND).registry, WinRegistry)
