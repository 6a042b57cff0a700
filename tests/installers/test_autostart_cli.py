"""`lmstudio-tray autostart ...` as a user runs it: a real subprocess, files in the test's XDG dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lmstudio_tray.platform.autostart.linux import exec_unquote, read_desktop_entry

from .helpers import desktop_file_validate, xdg_config_home


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_DIRS": os.environ["XDG_CONFIG_HOME"] + "/no-system-dirs"}
    return subprocess.run([sys.executable, "-m", "lmstudio_tray", "autostart", *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_enable_status_disable_round_trip() -> None:
    entry = xdg_config_home() / "autostart" / "lmstudio-tray.desktop"
    r = cli("status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["enabled"] is False
    assert not entry.exists()  # status never creates anything

    r = cli("enable")
    assert r.returncode == 0, r.stderr
    assert "will start at login" in r.stdout and str(entry) in r.stdout
    desktop_file_validate(entry)
    argv = exec_unquote(read_desktop_entry(entry)["Exec"])
    assert argv[-1] == "run" and Path(argv[0]).is_file()

    r = cli("status", "--json")
    data = json.loads(r.stdout)
    assert data["enabled"] is True and data["where"] == str(entry) and data["mechanism"] == "xdg"
    assert data["user_disabled"] is False and data["command"] == argv

    r = cli("disable", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["enabled"] is False
    assert not entry.exists()


def test_status_explains_a_user_switch_off() -> None:
    assert cli("enable").returncode == 0
    entry = xdg_config_home() / "autostart" / "lmstudio-tray.desktop"
    entry.write_text(entry.read_text() + "Hidden=true\n")
    r = cli("status")
    assert r.returncode == 0
    assert "switched off outside lmstudio-tray" in r.stdout and "Hidden=true" in r.stdout
    r = cli("enable")
    assert "it is on again now" in r.stdout
    assert "Hidden" not in read_desktop_entry(entry)


def test_systemd_flag(tmp_path: Path) -> None:
    r = cli("enable", "--systemd", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    unit = xdg_config_home() / "systemd" / "user" / "lmstudio-tray.service"
    assert data["mechanism"] == "systemd" and data["where"] == str(unit) and unit.is_file()
    r = cli("disable")
    assert r.returncode == 0 and "will not start at login" in r.stdout
    assert not unit.exists()


def test_failure_is_reported_with_the_path() -> None:
    entry = xdg_config_home() / "autostart" / "lmstudio-tray.desktop"
    entry.mkdir(parents=True)  # a directory where the entry should go
    r = cli("enable")
    assert r.returncode == 1
    assert "lmstudio-tray autostart enable:" in r.stderr and "lmstudio-tray.desktop" in r.stderr
