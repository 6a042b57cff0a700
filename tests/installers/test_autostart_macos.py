"""macOS LaunchAgent logic through its platform interface, with a fake `launchctl` first on PATH."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray.platform.autostart import AutostartError, for_platform
from lmstudio_tray.platform.autostart.macos import MacAutostart

HERE = Path(__file__).resolve().parent


class FakeLaunchd:
    def __init__(self, state: Path) -> None:
        self.state = state

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def loaded(self) -> dict[str, str]:
        path = self.state / "loaded.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def user_disables(self, label: str) -> None:
        subprocess.run(["launchctl", "disable", f"gui/{os.getuid()}/{label}"], check=True)


@pytest.fixture
def launchd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLaunchd:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "launchctl"
    script.write_text(f"#!{sys.executable}\n" + (HERE / "fake_launchctl.py").read_text())
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LAUNCHCTL_STATE", str(tmp_path / "launchd"))
    assert shutil.which("launchctl") == str(script)
    return FakeLaunchd(tmp_path / "launchd")


COMMAND = ["/Applications/LM Studio Tray.app/Contents/MacOS/lmstudio-tray", "run"]
LABEL = "io.github.lmstudio-tray"


def agent(**kw: object) -> MacAutostart:
    auto = for_platform("darwin", command=COMMAND, **kw)
    assert isinstance(auto, MacAutostart)
    return auto


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def test_off_by_default(launchd: FakeLaunchd) -> None:
    status = agent().status()
    assert not status.enabled and status.where is None
    assert not plist_path().exists() and launchd.loaded() == {}


def test_enable_writes_a_launch_agent_and_bootstraps_it(launchd: FakeLaunchd) -> None:
    status = agent().enable()
    path = plist_path()
    assert status.enabled and status.where == str(path) and status.extra["loaded"] is True
    data = plistlib.loads(path.read_bytes())
    assert data["Label"] == LABEL
    assert data["ProgramArguments"] == COMMAND
    assert data["RunAtLoad"] is True and data["KeepAlive"] is False
    assert data["LimitLoadToSessionType"] == "Aqua"
    assert ["bootstrap", f"gui/{os.getuid()}", str(path)] in launchd.calls()
    assert launchd.loaded() == {LABEL: str(path)}


def test_enable_twice_reloads_instead_of_failing(launchd: FakeLaunchd) -> None:
    agent().enable()
    moved = ["/Users/me/Applications/LM Studio Tray.app/Contents/MacOS/lmstudio-tray", "run"]
    status = for_platform("darwin", command=moved).enable()
    assert status.enabled and list(status.command) == moved
    assert ["bootout", f"gui/{os.getuid()}/{LABEL}"] in launchd.calls()


def test_disable_boots_out_and_removes_the_plist(launchd: FakeLaunchd) -> None:
    auto = agent()
    auto.enable()
    status = auto.disable()
    assert not status.enabled and status.where is None
    assert not plist_path().exists() and launchd.loaded() == {}
    # Disabling what is not there is fine (the CLI may be run twice).
    assert not auto.disable().enabled


def test_switched_off_in_login_items_is_reported_and_left_alone(launchd: FakeLaunchd) -> None:
    auto = agent()
    auto.enable()
    auto.disable()
    auto.enable()
    launchd.user_disables(LABEL)
    status = auto.status()
    assert not status.enabled and status.user_disabled and "Login Items" in status.detail
    calls_before = len(launchd.calls())
    auto.status()
    assert all(c[0] in ("print", "print-disabled") for c in launchd.calls()[calls_before:])
    # The user turning it on from the app lifts the switch.
    assert auto.enable().enabled
    assert ["enable", f"gui/{os.getuid()}/{LABEL}"] in launchd.calls()


def test_plist_with_disabled_key_counts_as_user_disabled(launchd: FakeLaunchd) -> None:
    auto = agent()
    auto.enable()
    data = plistlib.loads(plist_path().read_bytes())
    plist_path().write_bytes(plistlib.dumps({**data, "Disabled": True}))
    status = auto.status()
    assert not status.enabled and status.user_disabled


def test_corrupt_plist_is_reported_and_rewritten_by_enable(launchd: FakeLaunchd) -> None:
    plist_path().parent.mkdir(parents=True)
    plist_path().write_text("<plist>not really")
    status = agent().status()
    assert not status.enabled and "not a readable plist" in status.detail
    assert agent().enable().enabled


def test_bootstrap_failure_is_an_error_that_says_what_to_do(launchd: FakeLaunchd, tmp_path: Path) -> None:
    auto = agent(uid=os.getuid() + 1)  # the fake refuses other users' domains, like launchd
    with pytest.raises(AutostartError, match=r"bootstrap gui/\d+.*next login"):
        auto.enable()
    assert plist_path().exists()


def test_missing_launchctl_is_a_clear_error(tmp_path: Path) -> None:
    def runner(argv: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("launchctl")

    with pytest.raises(AutostartError, match="could not run launchctl"):
        MacAutostart(COMMAND, runner=runner).enable()
