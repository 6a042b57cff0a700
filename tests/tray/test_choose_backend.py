"""Which tray backend the app picks, asked of a real private session bus with a real SNI watcher."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmstudio_tray.tray.app import choose_backend, sni_watcher_present

needs_bus = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None or shutil.which("status-notifier-watcher") is None,
    reason="needs dbus-daemon and status-notifier-watcher (scripts/deps/desktop.sh)",
)


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    """A throwaway session bus; yields its address."""
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1", f"--address=unix:path={tmp_path}/bus"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def watcher(session_bus: str) -> Iterator[str]:
    proc = subprocess.Popen(["status-notifier-watcher"], env=dict(os.environ, DBUS_SESSION_BUS_ADDRESS=session_bus),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not sni_watcher_present({"DBUS_SESSION_BUS_ADDRESS": session_bus}):
            assert time.monotonic() < deadline, "status-notifier-watcher never took its bus name"
            assert proc.poll() is None, "status-notifier-watcher exited"
            time.sleep(0.05)
        yield session_bus
    finally:
        proc.terminate()
        proc.wait(10)


@needs_bus
def test_a_watcher_on_the_bus_means_sni_without_gtk(watcher: str) -> None:
    choice = choose_backend({"DBUS_SESSION_BUS_ADDRESS": watcher, "DISPLAY": ":0"}, platform="linux")
    assert choice.backend == "sni" and choice.has_menu
    assert choice.message == "tray: StatusNotifierItem icon with menu (no GTK)"


@needs_bus
def test_wayland_without_xwayland_gets_an_icon_through_the_watcher(watcher: str) -> None:
    choice = choose_backend({"DBUS_SESSION_BUS_ADDRESS": watcher, "WAYLAND_DISPLAY": "wayland-0"}, platform="linux")
    assert choice.backend == "sni"


@needs_bus
def test_wayland_without_a_watcher_is_headless_and_says_why(session_bus: str) -> None:
    choice = choose_backend({"DBUS_SESSION_BUS_ADDRESS": session_bus, "WAYLAND_DISPLAY": "wayland-0"},
                            platform="linux")
    assert choice.backend is None
    assert "no StatusNotifierItem host" in choice.message


def test_no_bus_and_no_display_is_headless() -> None:
    env = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    assert not sni_watcher_present(env)
    choice = choose_backend(env, platform="linux")
    assert choice.backend is None and "no display" in choice.message


@needs_bus
def test_pystray_backend_forced_wins_over_the_watcher(watcher: str) -> None:
    env = {"DBUS_SESSION_BUS_ADDRESS": watcher, "DISPLAY": ":0", "PYSTRAY_BACKEND": "gtk"}
    assert choose_backend(env, platform="linux").backend == "gtk"


@needs_bus
def test_asking_for_the_watcher_loads_no_gtk(watcher: str) -> None:
    code = (
        "import sys; from lmstudio_tray.tray.app import choose_backend; "
        f"c = choose_backend({{'DBUS_SESSION_BUS_ADDRESS': {watcher!r}, 'DISPLAY': ':0'}}, platform='linux'); "
        "print(c.backend, 'gi' in sys.modules, any('libgtk' in l for l in open('/proc/self/maps')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["sni", "False", "False"]


def test_macos_and_windows_are_unchanged() -> None:
    assert choose_backend({}, platform="darwin").backend == "darwin"
    assert choose_backend({}, platform="win32").backend == "win32"


@needs_bus
def test_the_bus_is_found_in_the_runtime_dir_without_the_variable(watcher: str) -> None:
    # systemd user sessions put the bus at $XDG_RUNTIME_DIR/bus; autostarted apps may miss the variable
    runtime = watcher.removeprefix("unix:path=").split(",")[0].rsplit("/", 1)[0]
    assert Path(runtime, "bus").exists()
    assert choose_backend({"XDG_RUNTIME_DIR": runtime, "DISPLAY": ":0"}, platform="linux").backend == "sni"
