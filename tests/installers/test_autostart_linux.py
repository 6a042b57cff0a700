"""Linux autostart for real: files in a temporary $XDG_CONFIG_HOME, checked by the desktop's own tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray import __version__
from lmstudio_tray.platform.autostart import AutostartError, for_platform
from lmstudio_tray.platform.autostart.linux import (
    LinuxAutostart,
    exec_quote,
    exec_unquote,
    read_desktop_entry,
    systemd_quote,
)
from lmstudio_tray.platform.command import launch_command

from .helpers import desktop_file_validate, systemd_verify_user_unit, xdg_config_home

ODD_COMMAND = ["/opt/LM Studio Tray/bin/lmstudio-tray", "run", "--config", "/home/a b/$HOME/100%/it's \"q\"\\x"]


@pytest.fixture
def system_dir(tmp_path: Path) -> Path:
    path = tmp_path / "etc-xdg"
    path.mkdir()
    return path


def linux(system_dir: Path, **kw: object) -> LinuxAutostart:
    return LinuxAutostart(config_dirs=[system_dir], **kw)  # type: ignore[arg-type]


def test_off_by_default_and_status_changes_nothing(system_dir: Path) -> None:
    auto = linux(system_dir)
    status = auto.status()
    assert not status.enabled and not status.user_disabled and status.where is None
    assert not (xdg_config_home() / "autostart").exists()
    assert not (xdg_config_home() / "systemd").exists()


def test_for_platform_picks_linux_and_writes_under_xdg_config_home(system_dir: Path) -> None:
    auto = for_platform("linux")
    assert isinstance(auto, LinuxAutostart)
    assert auto.desktop_file == xdg_config_home() / "autostart" / "lmstudio-tray.desktop"


def test_enable_writes_a_valid_entry_that_starts_this_install(system_dir: Path) -> None:
    auto = linux(system_dir)
    status = auto.enable()
    path = xdg_config_home() / "autostart" / "lmstudio-tray.desktop"
    assert status.enabled and status.where == str(path) and status.mechanism == "xdg"
    desktop_file_validate(path)
    keys = read_desktop_entry(path)
    argv = exec_unquote(keys["Exec"])
    assert argv == launch_command() and argv[-1] == "run"
    # The entry's program really is this install: ask it for its version.
    r = subprocess.run([*argv[:-1], "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and __version__ in r.stdout


def test_odd_characters_in_the_command_survive_the_exec_key(system_dir: Path) -> None:
    auto = linux(system_dir, command=ODD_COMMAND)
    auto.enable()
    desktop_file_validate(auto.desktop_file)
    assert list(auto.status().command) == ODD_COMMAND
    assert exec_unquote(exec_quote(ODD_COMMAND)) == ODD_COMMAND


@pytest.mark.parametrize("switch_off", ["Hidden=true", "X-GNOME-Autostart-enabled=false"])
def test_switched_off_by_the_desktop_is_reported_and_never_re_added(system_dir: Path, switch_off: str) -> None:
    auto = linux(system_dir)
    auto.enable()
    # What GNOME's / KDE's startup settings do when the user turns the entry off.
    text = auto.desktop_file.read_text().replace("X-GNOME-Autostart-enabled=true\n", "") + switch_off + "\n"
    auto.desktop_file.write_text(text)
    status = auto.status()
    assert not status.enabled and status.user_disabled and switch_off in status.detail
    # Starting the app / asking the status again does not touch the user's choice.
    for_platform("linux").status()
    assert auto.desktop_file.read_text() == text
    # Only an explicit enable turns it back on.
    assert auto.enable().enabled
    keys = read_desktop_entry(auto.desktop_file)
    assert keys.get("Hidden") is None and keys["X-GNOME-Autostart-enabled"] == "true"


def test_user_deleting_the_entry_is_respected(system_dir: Path) -> None:
    auto = linux(system_dir)
    auto.enable()
    auto.desktop_file.unlink()
    assert not auto.status().enabled
    assert not auto.desktop_file.exists()


def test_disable_removes_exactly_the_entry(system_dir: Path) -> None:
    auto = linux(system_dir)
    other = xdg_config_home() / "autostart" / "someone-else.desktop"
    other.parent.mkdir(parents=True)
    other.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    auto.enable()
    status = auto.disable()
    assert not status.enabled and not status.user_disabled
    assert not auto.desktop_file.exists() and other.exists()
    other.unlink()
    auto.enable()
    auto.disable()
    assert not (xdg_config_home() / "autostart").exists()


def test_a_hand_written_entry_is_switched_off_not_deleted(system_dir: Path) -> None:
    auto = linux(system_dir)
    auto.desktop_file.parent.mkdir(parents=True)
    auto.desktop_file.write_text("[Desktop Entry]\nType=Application\nName=Mine\nExec=lmstudio-tray --log-level debug\n")
    assert auto.status().enabled
    auto.disable()
    keys = read_desktop_entry(auto.desktop_file)
    assert keys["Hidden"] == "true" and keys["Exec"] == "lmstudio-tray --log-level debug"
    assert not auto.status().enabled


def test_system_wide_entry_is_overridden_per_user(system_dir: Path) -> None:
    (system_dir / "autostart").mkdir()
    system_entry = system_dir / "autostart" / "lmstudio-tray.desktop"
    system_entry.write_text("[Desktop Entry]\nType=Application\nName=LM Studio Tray\nExec=/usr/bin/lmstudio-tray\n")
    auto = linux(system_dir)
    assert auto.status().enabled and auto.status().where == str(system_entry)
    status = auto.disable()
    assert not status.enabled and not status.user_disabled
    assert read_desktop_entry(auto.desktop_file)["Hidden"] == "true"
    desktop_file_validate(auto.desktop_file)
    assert system_entry.exists()  # not ours to delete
    assert auto.enable().enabled


def test_systemd_unit_is_bound_to_the_graphical_session(system_dir: Path, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))  # type: ignore[call-overload]
        return subprocess.CompletedProcess(list(argv), 1, "", "Failed to connect to bus")  # type: ignore[call-overload]

    xdg = linux(system_dir)
    xdg.enable()  # switching mechanisms must not leave the tray starting twice
    auto = linux(system_dir, systemd=True, runner=runner)
    status = auto.enable()
    unit = xdg_config_home() / "systemd" / "user" / "lmstudio-tray.service"
    wants = xdg_config_home() / "systemd" / "user" / "graphical-session.target.wants" / "lmstudio-tray.service"
    assert status.enabled and status.mechanism == "systemd" and status.where == str(unit)
    assert wants.is_symlink() and wants.resolve() == unit.resolve()
    assert not xdg.desktop_file.exists()
    text = unit.read_text()
    assert "PartOf=graphical-session.target" in text and "WantedBy=graphical-session.target" in text
    assert list(status.command) == launch_command()
    assert ["systemctl", "--user", "daemon-reload"] in calls  # tried; a missing user bus is not an error
    systemd_verify_user_unit(unit, tmp_path)

    status = auto.disable()
    assert not status.enabled and not unit.exists() and not wants.exists()
    assert not (xdg_config_home() / "systemd").exists()  # nothing left behind, not even empty folders


def test_systemd_quoting_survives_odd_paths(system_dir: Path, tmp_path: Path) -> None:
    exe = tmp_path / "dir with space" / "100%" / "lmstudio-tray"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    command = [str(exe), "run", "--config", "$HOME/a b.toml"]
    auto = linux(system_dir, systemd=True, command=command, runner=lambda a: subprocess.CompletedProcess(a, 0))
    assert list(auto.enable().command) == command
    assert systemd_quote(command).count('"') == 4
    systemd_verify_user_unit(auto.unit_file, tmp_path)


def test_systemd_unit_disabled_by_the_user(system_dir: Path) -> None:
    auto = linux(system_dir, systemd=True, runner=lambda a: subprocess.CompletedProcess(a, 0))
    auto.enable()
    auto.wants_link.unlink()  # what `systemctl --user disable lmstudio-tray` does
    status = auto.status()
    assert not status.enabled and status.user_disabled and "systemctl" in status.detail


def test_set_enabled_raises_when_the_entry_cannot_be_written(system_dir: Path) -> None:
    auto = linux(system_dir)
    auto.desktop_file.mkdir(parents=True)  # something in the way that even root cannot replace with a file
    with pytest.raises((AutostartError, OSError)):
        auto.set_enabled(True)
    assert not auto.status().enabled


def test_launch_command_prefers_the_console_script(tmp_path: Path) -> None:
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    python = bindir / "python"
    python.write_text("")
    assert launch_command(executable=str(python), frozen=False, platform="linux") == [
        str(python), "-m", "lmstudio_tray", "run"
    ]
    script = bindir / "lmstudio-tray"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert launch_command(executable=str(python), frozen=False, platform="linux") == [str(script), "run"]
    assert launch_command(executable="/Applications/X.app/Contents/MacOS/x", frozen=True) == [
        "/Applications/X.app/Contents/MacOS/x", "run"
    ]
    assert sys.executable  # the default argument


def test_launch_command_on_windows_avoids_a_console_window(tmp_path: Path) -> None:
    scripts = tmp_path / "Scripts"
    scripts.mkdir()
    python = scripts / "python.exe"
    python.write_text("")
    (scripts / "lmstudio-tray.exe").write_text("")
    assert launch_command(executable=str(python), frozen=False, platform="win32") == [
        str(scripts / "lmstudio-tray.exe"), "run"
    ]
    (scripts / "pythonw.exe").write_text("")
    assert launch_command(executable=str(python), frozen=False, platform="win32") == [
        str(scripts / "pythonw.exe"), "-m", "lmstudio_tray", "run"
    ]


def test_launch_command_of_the_windows_bundle_uses_its_windowless_program(tmp_path: Path) -> None:
    cli = tmp_path / "lmstudio-tray.exe"
    cli.write_text("")
    assert launch_command(executable=str(cli), frozen=True, platform="win32") == [str(cli), "run"]
    (tmp_path / "lmstudio-trayw.exe").write_text("")
    assert launch_command(executable=str(cli), frozen=True, platform="win32") == [
        str(tmp_path / "lmstudio-trayw.exe"), "run"
    ]
