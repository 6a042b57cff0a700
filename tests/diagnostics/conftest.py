"""Diagnostics fixtures: clean log handlers and secret registry per test; a private D-Bus and X server."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.core.support import logs as logging_setup


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    logging_setup.forget_secrets()
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging_setup.forget_secrets()


# ---- a private session bus and X server, so the desktop checks run against real ones ----------------------

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon with no service files: a name is there only while a test owns it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._conns: list[Any] = []

    def own(self, name: str) -> None:
        from jeepney.bus_messages import message_bus  # type: ignore[import-untyped]
        from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

        conn = open_dbus_connection(bus=self.address)
        reply = conn.send_and_get_reply(message_bus.RequestName(name), timeout=5)
        assert reply.body[0] == 1, f"could not own {name}"
        self._conns.append(conn)

    def release_all(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns.clear()


@pytest.fixture
def private_bus(tmp_path: Path) -> Iterator[PrivateBus]:
    exe = shutil.which("dbus-daemon")
    assert exe, "dbus-daemon is needed for the desktop checks (Debian package dbus)"
    sock_dir = Path(tempfile.mkdtemp(prefix="bus-"))  # short: unix socket paths are limited to ~100 bytes
    config = tmp_path / "bus.conf"
    config.write_text(_BUS_CONFIG.format(dir=sock_dir), encoding="utf-8")
    proc = subprocess.Popen([exe, f"--config-file={config}", "--nofork", "--print-address=1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address, "dbus-daemon printed no address"
        bus = PrivateBus(address)
        yield bus
        bus.release_all()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(sock_dir, ignore_errors=True)


class Xserver:
    def __init__(self, display: str) -> None:
        self.display = display
        self._x: Any = None

    def own_tray_selection(self) -> None:
        """Act as an XEmbed system tray: own _NET_SYSTEM_TRAY_S0 (what trayer or a panel does)."""
        from Xlib import X
        from Xlib import display as xdisplay

        d = xdisplay.Display(self.display)
        screen = d.screen()
        win = screen.root.create_window(0, 0, 1, 1, 0, screen.root_depth)
        win.set_selection_owner(d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}"), X.CurrentTime)
        d.sync()
        self._x = d

    def close(self) -> None:
        if self._x is not None:
            self._x.close()


@pytest.fixture
def xvfb() -> Iterator[Xserver]:
    exe = shutil.which("Xvfb")
    assert exe, "Xvfb is needed for the tray check (Debian package xvfb)"
    read_fd, write_fd = os.pipe()
    # -noreset: Xvfb otherwise resets when its last client leaves, and a connection made during the
    # reset is dropped ("connection reset by peer"), as each check here connects and leaves in turn
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "320x240x24", "-nolisten", "tcp",
                             "-noreset"],
                            pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not report its display"
        server = Xserver(f":{number}")
        yield server
        server.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
