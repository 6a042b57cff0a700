"""The tray on a StatusNotifierItem desktop: a real watcher and host, the real tray process, no GTK in it.

`status-notifier-watcher` plays the desktop's org.kde.StatusNotifierWatcher and `gtk-sni-tray-standalone`
its panel: it draws each registered item's IconPixmap in a bar at the bottom of the screen and renders
the item's menu with libdbusmenu-gtk3, the library GNOME's, XFCE's and MATE's tray plugins use. Both
start for these tests only, so the XEmbed tests (trayer, no watcher) still see a desktop without SNI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.tray.icons import state_colour

from .conftest import REQUIRE_ENV, missing_desktop
from .xtools import grab, popups, stop_process, wait_for, xdotool

pytestmark = pytest.mark.desktop

WATCHER = "org.kde.StatusNotifierWatcher"
ITEM = "org.kde.StatusNotifierItem"
MENU = "com.canonical.dbusmenu"


# ---- a D-Bus client that looks at the tray the way a host does ------------------------------------


class Bus:
    def __init__(self) -> None:
        from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

        self.conn: Any = open_dbus_connection("SESSION")

    def close(self) -> None:
        self.conn.close()

    def call(self, dest: str, path: str, interface: str, method: str, signature: str | None = None,
             *args: Any) -> tuple[Any, ...]:
        from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
        from jeepney.wrappers import unwrap_msg  # type: ignore[import-untyped]

        msg = new_method_call(DBusAddress(path, bus_name=dest, interface=interface), method, signature, args)
        return tuple(unwrap_msg(self.conn.send_and_get_reply(msg, timeout=10)))

    def has_owner(self, name: str) -> bool:
        return bool(self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                              "NameHasOwner", "s", name)[0])

    def registered_items(self) -> list[str]:
        value = self.call(WATCHER, "/StatusNotifierWatcher", "org.freedesktop.DBus.Properties", "Get", "ss",
                          WATCHER, "RegisteredStatusNotifierItems")[0]
        return list(value[1])

    def item_property(self, service: str, name: str) -> Any:
        return self.call(service, "/StatusNotifierItem", "org.freedesktop.DBus.Properties", "Get", "ss",
                         ITEM, name)[0][1]

    def layout(self, service: str) -> tuple[int, Any]:
        menu_path = self.item_property(service, "Menu")
        revision, root = self.call(service, menu_path, MENU, "GetLayout", "iias", 0, -1, [])
        return revision, root


def node_label(node: Any) -> str:
    return str(node[1].get("label", ("s", ""))[1]).replace("__", "_")


def children(node: Any) -> list[Any]:
    return [variant[1] for variant in node[2]]


def child(node: Any, label: str) -> Any:
    return next(c for c in children(node) if node_label(c).startswith(label))


def pixmap_colour(pixmaps: list[tuple[int, int, bytes]]) -> tuple[int, int, int]:
    """The colour of the largest IconPixmap's disc rim (ARGB32, network byte order)."""
    width, height, data = max(pixmaps, key=lambda p: p[0])
    offset = ((height // 2) * width + max(1, width // 16)) * 4
    alpha, red, green, blue = data[offset:offset + 4]
    assert alpha == 255
    return red, green, blue


def near(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---- the desktop: watcher + host, then the tray ----------------------------------------------------


@dataclass
class Host:
    bus: Bus
    bar: tuple[int, int, int, int]  # the host's panel on screen
    procs: list[subprocess.Popen[bytes]]  # the watcher, then the host

    def restart_watcher(self) -> None:
        """What a desktop does when its panel (and the watcher in it) crashes and comes back."""
        old = self.procs[0]
        old.terminate()
        old.wait(10)
        wait_for(lambda: not self.bus.has_owner(WATCHER), 10, what="the old watcher gone")
        self.procs[0] = start_watcher()
        wait_for(lambda: self.bus.has_owner(WATCHER), 15, what="the new watcher on the bus")

    def pixels_of(self, state: InstanceState, tol: int = 30) -> int:
        img = grab(self.bar)
        rgb = state_colour(state)
        data = img.get_flattened_data() if hasattr(img, "get_flattened_data") else img.getdata()
        return sum(1 for p in data if all(abs(a - b) <= tol for a, b in zip(p, rgb, strict=True)))


def start_watcher() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["status-notifier-watcher"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def host_bar() -> tuple[int, int, int, int] | None:
    """The host's panel window: the wide top-level named gtk-sni-tray-standalone."""
    out = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        found = re.search(r'\("gtk-sni-tray-standalone".*\)\s+(\d+)x(\d+)\+(-?\d+)\+(-?\d+)', line)
        if found:
            w, h, x, y = (int(v) for v in found.groups())
            if w > 100:
                return x, y, w, h
    return None


@pytest.fixture
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A fresh watcher and host per test: gtk-sni-tray-standalone now and then keeps drawing an item that
    has left the watcher, and the tests click the first icon in its bar."""
    # This fixture is set up before conftest's per-test check, so it applies the same rule itself:
    # skip on a machine without the test desktop, fail when CI requires it.
    problem = missing_desktop()
    missing = [tool for tool in ("status-notifier-watcher", "gtk-sni-tray-standalone", "xwininfo")
               if shutil.which(tool) is None]
    if missing and problem is None:
        problem = f"{', '.join(missing)} not installed; run scripts/deps/desktop.sh (as root)"
    if problem is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    logs = tmp_path_factory.mktemp("sni-host")  # the host's log, for a failing run
    bus = Bus()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        assert not bus.has_owner(WATCHER), "another StatusNotifierWatcher is already running"
        procs.append(start_watcher())
        wait_for(lambda: bus.has_owner(WATCHER), 15, what="status-notifier-watcher on the bus")
        procs.append(subprocess.Popen(["gtk-sni-tray-standalone", "--bottom", "--size", "32"],
                                      stdout=subprocess.DEVNULL, stderr=(logs / "host.log").open("wb")))
        bar = wait_for(host_bar, 15, what="the gtk-sni-tray-standalone bar")
        assert bar is not None
        yield Host(bus, bar, procs)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        # the next module's tests (XEmbed) must see no watcher again
        wait_for(lambda: not bus.has_owner(WATCHER), 10, what="the watcher gone")
        bus.close()


@dataclass
class SniTray:
    proc: subprocess.Popen[bytes]
    service: str
    log: Path
    menu_dump: Path
    emulator: Any

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def tray(request: pytest.FixtureRequest, host: Host, tmp_path: Path, emulator: Any) -> Iterator[SniTray]:
    """The tray as a subprocess; parametrized indirectly with {NAME: value or None}, its environment changes."""
    changes: dict[str, str | None] = getattr(request, "param", {})
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[instances]]\nname = "emu"\nurl = "{emulator.api_url}"\n\n'
        "[monitor]\npoll_interval = 0.3\nfast_poll_interval = 0.1\noffline_backoff_max = 0.5\n\n"
        "[endpoint]\nport = 0\n"
    )
    env = dict(os.environ)
    env.pop("PYSTRAY_BACKEND", None)
    env.pop("LMSTUDIO_TRAY_NOTIFIER", None)
    env.update(LMSTUDIO_TRAY_MENU_DUMP=str(tmp_path / "menu.json"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    log = tmp_path / "tray.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_tray", "--config", str(config), "--log-level", "debug", "run"],
        env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    service = f"org.kde.StatusNotifierItem-{proc.pid}-1"
    running = SniTray(proc, service, log, tmp_path / "menu.json", emulator)

    def registered() -> bool:
        assert proc.poll() is None, f"tray exited early:\n{running.log_text()}"
        return any(item.split("/")[0] == service for item in host.bus.registered_items())

    wait_for(registered, 20, what="the tray registered with the StatusNotifierWatcher")
    yield running
    stop_process(proc)
    if host.bus.has_owner(WATCHER):
        wait_for(lambda: service not in [i.split("/")[0] for i in host.bus.registered_items()], 10,
                 what="the item gone from the watcher")


def state_shown(host: Host, tray: SniTray) -> tuple[int, int, int]:
    return pixmap_colour(host.bus.item_property(tray.service, "IconPixmap"))


# ---- the tests -------------------------------------------------------------------------------------


def test_registers_without_gtk_and_the_host_draws_the_idle_icon(host: Host, tray: SniTray) -> None:
    assert "tray: StatusNotifierItem icon with menu (no GTK)" in tray.log_text()
    maps = Path(f"/proc/{tray.proc.pid}/maps").read_text()
    assert "libgtk" not in maps and "libgdk" not in maps, "the SNI tray must not load GTK"
    assert "/gi/_gi" not in maps, "the SNI tray must not import PyGObject"
    idle = state_colour(InstanceState.IDLE)
    wait_for(lambda: near(state_shown(host, tray), idle), 10, what="IconPixmap in the idle colour")
    assert host.bus.item_property(tray.service, "ItemIsMenu") is True
    tooltip = host.bus.item_property(tray.service, "ToolTip")
    assert "emu" in tooltip[3]
    # What the user sees: the host's bar shows a disc in the idle colour.
    wait_for(lambda: host.pixels_of(InstanceState.IDLE) > 150, 10, what="the idle icon drawn by the host")


def test_the_menu_lists_the_emulators_models(host: Host, tray: SniTray) -> None:
    def load_menu() -> Any:
        _, root = host.bus.layout(tray.service)
        load = child(root, "Load model")
        return load if load[1].get("enabled", ("b", True))[1] else None

    load = wait_for(load_menu, 10, what="an enabled Load model submenu")
    leaves = [node_label(leaf) for group in children(load) for leaf in (children(group) or [group])]
    downloaded = tray.emulator.downloaded()
    assert len(leaves) == len(downloaded)
    for model in downloaded:  # what a user reads in the host's menu
        assert any(label.startswith(model.get("displayName") or model["modelKey"]) for label in leaves), (
            model["modelKey"], leaves)
    assert json.loads(tray.menu_dump.read_text()), "MENU_DUMP still writes the menu"


def open_host_menu(host: Host, state: InstanceState) -> tuple[int, int, int, int]:
    """Click the (only) icon in the host's bar; the host renders our DBusMenu as a GTK menu."""
    wait_for(lambda: host.pixels_of(state) > 150, 10, what=f"the {state.value} icon drawn by the host")
    before = set(popups())
    x, y, _, h = host.bar
    xdotool("mousemove", str(x + h // 2), str(y + h // 2), "click", "1")

    def menu() -> tuple[int, int, int, int] | None:  # a tooltip is a popup too, but a small one
        return next((g for wid, g in popups().items() if wid not in before and g[3] > 150), None)

    box = wait_for(menu, 10, what="the menu the host rendered")
    assert box is not None
    return box


def test_load_through_the_hosts_menu_turns_the_icon_ready(host: Host, tray: SniTray) -> None:
    idle, ready = state_colour(InstanceState.IDLE), state_colour(InstanceState.READY)
    wait_for(lambda: near(state_shown(host, tray), idle), 10, what="idle")
    menu = json.loads(tray.menu_dump.read_text())
    load = next(i for i in menu if i["label"] == "Load model")
    first_enabled = next(i for i in menu if i["enabled"] and not i["separator"])
    assert first_enabled is load, "Load model should be the first item the keyboard reaches"
    keys, node = ["Down", "Right"], load["children"][0]
    if node["children"] and node["children"][0]["action"] is None:  # grouped by model type
        keys.append("Right")
        node = node["children"][0]
    keys.append("Right")  # the model's submenu of context lengths: LM Studio's default comes first
    node = node["children"][0]
    assert node["label"] == "LM Studio's default" and node["action"][3] is None
    key = node["action"][2]
    box = open_host_menu(host, InstanceState.IDLE)
    assert box[2] > 100, f"the host's menu looks too narrow: {box}"
    for k in keys:
        time.sleep(0.3)  # GTK opens submenus after a short delay
        xdotool("key", k)
    time.sleep(0.3)
    xdotool("key", "Return")
    wait_for(lambda: any(key in json.dumps(m) for m in tray.emulator.loaded()), 20,
             what=f"{key} loaded in the emulator")
    wait_for(lambda: near(state_shown(host, tray), ready), 15, what="IconPixmap in the ready colour")
    wait_for(lambda: host.pixels_of(InstanceState.READY) > 150, 10, what="the ready icon drawn by the host")
    assert host.pixels_of(InstanceState.IDLE) < 50


def test_quit_from_the_menu_ends_the_tray(host: Host, tray: SniTray) -> None:
    idle = state_colour(InstanceState.IDLE)
    wait_for(lambda: near(state_shown(host, tray), idle), 10, what="idle")
    open_host_menu(host, InstanceState.IDLE)
    time.sleep(0.3)
    xdotool("key", "Up")  # from no selection, Up goes to the last item: Quit
    time.sleep(0.3)
    xdotool("key", "Return")
    try:
        assert tray.proc.wait(15) == 0
    except subprocess.TimeoutExpired:
        pytest.fail(f"Quit did not end the tray; its log:\n{tray.log_text()}")
    wait_for(lambda: tray.service not in [i.split("/")[0] for i in host.bus.registered_items()], 10,
             what="the item gone from the watcher")


@pytest.mark.parametrize("tray", [{"DISPLAY": None, "WAYLAND_DISPLAY": "wayland-test"}], indirect=True,
                         ids=["no-DISPLAY"])
def test_wayland_without_xwayland_still_shows_the_icon(host: Host, tray: SniTray) -> None:
    # No DISPLAY for the tray at all: it talks only to the session bus; the host (here on X) draws.
    assert "tray: StatusNotifierItem icon with menu (no GTK)" in tray.log_text()
    wait_for(lambda: host.pixels_of(InstanceState.IDLE) > 150, 15, what="the idle icon drawn by the host")


def test_sigterm_ends_the_tray_cleanly(tray: SniTray) -> None:
    tray.proc.send_signal(signal.SIGTERM)
    assert tray.proc.wait(10) == 0


def test_registers_again_when_the_watcher_comes_back(host: Host, tray: SniTray) -> None:
    host.restart_watcher()
    try:
        wait_for(lambda: tray.service in [i.split("/")[0] for i in host.bus.registered_items()], 15,
                 what="the tray registered with the new watcher")
    except AssertionError as exc:
        pytest.fail(f"{exc}; the tray's log:\n{tray.log_text()}")
    assert "registering the icon with it" in tray.log_text()


def test_answers_what_hosts_ask_besides_the_icon(host: Host, tray: SniTray) -> None:
    bus, service = host.bus, tray.service
    xml = bus.call(service, "/StatusNotifierItem", "org.freedesktop.DBus.Introspectable", "Introspect")[0]
    assert f'<interface name="{ITEM}">' in xml and f'<interface name="{MENU}">' in xml
    assert bus.call(service, "/StatusNotifierItem", "org.freedesktop.DBus.Peer", "Ping") == ()
    menu = bus.call(service, "/MenuBar", "org.freedesktop.DBus.Properties", "GetAll", "s", MENU)[0]
    assert menu["Version"] == ("u", 3) and menu["Status"] == ("s", "normal")
    item = bus.call(service, "/StatusNotifierItem", "org.freedesktop.DBus.Properties", "GetAll", "s", ITEM)[0]
    assert item["Id"] == ("s", "lmstudio-tray") and item["Menu"] == ("o", "/MenuBar")
    # A click on an id the menu does not have (a host with a stale layout) is harmless.
    bus.call(service, "/MenuBar", MENU, "Event", "isvu", 999_999, "clicked", ("i", 0), 0)
    assert tray.proc.poll() is None
