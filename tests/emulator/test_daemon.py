"""`lms daemon up|down|status` and waking LM Studio: the real CLI's texts and JSON, an emulated llmster
executable recorded in the home's install-location file, and a daemon that will not start."""

from __future__ import annotations

import json
import os
import subprocess

from lmstudio_tray.emulator import Emulator
from tests.emulator_fixtures import EmulatorFactory, LmsHome

NOT_INSTALLED = "Error: LM Studio daemon is not running and no valid installation could be found or installed."
NO_SERVICE = "Error: Failed to start or connect to local LM Studio API server."


def lms(home: LmsHome, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(home.lms), *args], capture_output=True, text=True, timeout=30, env={**os.environ})


def test_status_up_and_down_of_llmster(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    pid = os.getpid()  # the emulated process is this one
    r = lms(lms_home, "daemon", "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"status": "running", "pid": pid, "isDaemon": True}
    # console.info: the human text goes to stdout, unlike the logger's
    assert lms(lms_home, "daemon", "status").stdout == f"llmster v0.4.8 is running (PID: {pid})\n"
    r = lms(lms_home, "daemon", "up")
    assert r.returncode == 0 and r.stdout == f"The daemon is already running (PID: {pid}).\n" and r.stderr == ""
    r = lms(lms_home, "daemon", "down")
    assert r.returncode == 0 and r.stderr.splitlines() == ["Shutting down llmster...", "Done."]
    assert not emu.alive
    r = lms(lms_home, "daemon", "status", "--json")
    assert json.loads(r.stdout) == {"status": "not-running"}
    assert lms(lms_home, "daemon", "status").stdout == "LM Studio is not running\n"
    r = lms(lms_home, "daemon", "down")
    assert r.returncode == 1 and r.stderr == "Daemon is not running.\n"
    r = lms(lms_home, "daemon", "up")
    assert r.returncode == 0 and r.stdout == f"llmster started (PID: {pid}).\n"
    assert r.stderr == "Waking up LM Studio service...\n"
    assert emu.alive
    r = lms(lms_home, "daemon", "up", "--json")
    assert json.loads(r.stdout) == {"status": "running", "pid": pid, "isDaemon": True, "version": "0.4.8"}


def test_any_command_wakes_lm_studio(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.load("qwen/qwen3-4b-2507")
    emu.kill()
    r = lms(lms_home, "ps", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []  # a new process: nothing loaded
    assert r.stderr == "Waking up LM Studio service...\n"
    assert emu.alive and emu.server_running  # the server comes back as it was (autoStartOnLaunch)


def test_a_daemon_that_will_not_start(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(launch_error="llmster: cannot open the models folder")
    emu.kill()
    r = lms(lms_home, "daemon", "up", "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "Waking up LM Studio service...", "Error: Timed out waiting for LM Studio daemon to start.", NO_SERVICE,
    ]
    assert not emu.alive
    emu.update(launch_error=None)
    assert lms(lms_home, "daemon", "up").returncode == 0 and emu.alive


def test_not_installed(lms_home: LmsHome) -> None:
    lms_home.emulator.kill()
    (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").unlink()
    r = lms(lms_home, "daemon", "up")
    assert r.returncode == 1 and r.stderr.splitlines() == [NOT_INSTALLED, NO_SERVICE]


def test_install_location_file_points_at_an_executable(lms_home: LmsHome) -> None:
    data = json.loads((lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").read_text())
    assert set(data) == {"path", "argv", "cwd"} and os.access(data["path"], os.X_OK)
    assert not (lms_home.lmstudio_home / ".internal" / "app-install-location.json").exists()


def test_the_desktop_app_as_the_service(emulator_factory: EmulatorFactory, lms_home: LmsHome) -> None:
    lms_home.emulator.close()
    emu: Emulator = emulator_factory(home=lms_home.lmstudio_home, daemon=False)
    pid = os.getpid()
    assert (lms_home.lmstudio_home / ".internal" / "app-install-location.json").exists()
    assert not (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").exists()
    r = lms(lms_home, "daemon", "up")
    assert r.stdout == f"LM Studio is already running (PID: {pid}); not starting a second daemon.\n"
    assert lms(lms_home, "daemon", "status").stdout == f"LM Studio v0.4.8 is running (PID: {pid})\n"
    r = lms(lms_home, "daemon", "down")
    assert r.returncode == 1
    assert r.stderr == "The daemon is currently running as part of LM Studio. Please exit LM Studio to stop it.\n"
    assert emu.alive
    emu.kill()
    r = lms(lms_home, "daemon", "up")
    assert r.returncode == 0 and r.stdout == f"LM Studio started (PID: {pid}).\n" and emu.alive
