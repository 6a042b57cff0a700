"""The tray as a user meets it: a real subprocess under Xvfb + trayer + dunst, LM Studio emulated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.tray.icons import state_colour

from .xtools import colour_share, dunst_history, popups, stop_process, tray_icons, wait_for, xdotool

pytestmark = pytest.mark.desktop


@dataclass
class RunningTray:
    proc: subprocess.Popen[bytes]
    icon: tuple[int, int, int, int]
    menu_dump: Path
    log: Path
    emulator: Any
    state_home: Path

    def menu(self) -> list[dict[str, Any]]:
        return list(json.loads(self.menu_dump.read_text()))

    def shows(self, state: InstanceState) -> bool:
        return colour_share(self.icon, state_colour(state)) > 0.15

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_tray(tmp_path: Path, emulator: Any, name: str = "emu") -> RunningTray:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[instances]]\nname = "{name}"\nurl = "{emulator.api_url}"\n\n'
        "[monitor]\npoll_interval = 0.3\nfast_poll_interval = 0.1\noffline_backoff_max = 0.5\n\n"
        "[endpoint]\nport = 0\n"
    )
    state_home = tmp_path / "state"
    # the "browser": notes which page the tray asked it to open
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{tmp_path / "opened.txt"}"\n')
    browser.chmod(0o755)
    env = dict(os.environ)
    env.pop("PYSTRAY_BACKEND", None)  # the app picks its backend itself; that choice is under test
    env.update(
        LMSTUDIO_TRAY_MENU_DUMP=str(tmp_path / "menu.json"),
        XDG_STATE_HOME=str(state_home),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        PATH=os.environ.get("PATH", ""),
        BROWSER=str(browser),
    )
    env.pop("LMSTUDIO_TRAY_NOTIFIER", None)
    log = tmp_path / "tray.stderr"
    before = set(tray_icons())
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_tray", "--config", str(config), "--log-level", "info", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )

    def new_icon() -> tuple[int, int, int, int] | None:
        assert proc.poll() is None, f"tray exited early:\n{log.read_text(errors='replace')}"
        fresh = [g for wid, g in tray_icons().items() if wid not in before and g[2] >= 16 and g[3] >= 16]
        return fresh[0] if fresh else None

    icon = wait_for(new_icon, 15, what="a new tray icon")
    tray = RunningTray(proc, icon, tmp_path / "menu.json", log, emulator, state_home)
    wait_for(tray.menu_dump.exists, 10, what="the first menu")
    return tray


def stop_tray(tray: RunningTray) -> None:
    stop_process(tray.proc)


@pytest.fixture
def tray(tmp_path: Path, emulator: Any) -> Iterator[RunningTray]:
    running = start_tray(tmp_path, emulator)
    yield running
    stop_tray(running)


def open_menu(tray: RunningTray, button: str = "3") -> tuple[int, int, int, int]:
    before = set(popups())
    x, y, w, h = tray.icon

    def popup() -> tuple[int, int, int, int] | None:
        return next((g for wid, g in popups().items() if wid not in before), None)

    xdotool("mousemove", str(x + w // 2), str(y + h // 2), "click", button)
    try:
        found = wait_for(popup, 10, what="the menu popup")
    except AssertionError:
        # On a loaded machine the X server can deliver the click before the icon's window takes input; a
        # person clicks again, and so does this test (once), then waits generously.
        xdotool("mousemove", str(x + w // 2), str(y + h // 2), "click", button)
        found = wait_for(popup, 30, what="the menu popup after a second click")
    assert found is not None  # wait_for returns only a found popup
    return found


def load_first_model_by_keyboard(tray: RunningTray, choice: int = 0) -> str:
    """Open the menu, walk to Load model → first model → its `choice`-th context entry (0: LM Studio's default)
    with the keyboard, press Enter. Returns the model's key."""
    menu = tray.menu()
    load = next(i for i in menu if i["label"] == "Load model")
    assert load["enabled"]
    first_enabled = next(i for i in menu if i["enabled"] and not i["separator"])
    assert first_enabled is load, "Load model should be the first item the keyboard reaches"
    keys = ["Down", "Right"]
    node = load["children"][0]
    if node["children"][0]["action"] is None:  # grouped by model type: one more level
        keys.append("Right")
        node = node["children"][0]
    keys += ["Right"] + ["Down"] * choice  # the model's submenu of context lengths
    assert node["children"][0]["label"] == "LM Studio's default"
    node = node["children"][choice]
    open_menu(tray)
    for key in keys:
        time.sleep(0.25)  # GTK opens submenus after a short delay
        xdotool("key", key)
    time.sleep(0.25)
    xdotool("key", "Return")
    assert node["action"][0] == "load"
    return str(node["action"][2])


def test_icon_appears_with_the_idle_colour(tray: RunningTray) -> None:
    # Emulated server up, nothing loaded: idle.
    wait_for(lambda: tray.shows(InstanceState.IDLE), 10, what="the idle colour in the tray")
    assert "tray: GTK status icon (XEmbed) with menu" in tray.log_text()


def test_right_click_menu_lists_the_emulators_models(tray: RunningTray, tmp_path: Path) -> None:
    box = open_menu(tray)
    assert box[2] > 150 and box[3] > 200, f"menu popup looks too small: {box}"
    menu = tray.menu()
    load = next(i for i in menu if i["label"] == "Load model")
    models = [model for group in load["children"] for model in group["children"]]
    assert all(model["children"][0]["label"] == "LM Studio's default" for model in models)
    shown = {model["children"][0]["action"][2] for model in models}
    downloaded = {m["modelKey"] for m in tray.emulator.downloaded()}
    assert shown == downloaded
    xdotool("key", "Escape")


def test_clicking_load_loads_the_model_and_the_icon_turns_ready(tray: RunningTray) -> None:
    wait_for(lambda: tray.shows(InstanceState.IDLE), 10, what="idle")
    key = load_first_model_by_keyboard(tray)
    wait_for(lambda: any(m.get("modelKey", m.get("key")) == key or key in json.dumps(m)
                         for m in tray.emulator.loaded()), 15, what=f"{key} loaded in the emulator")
    wait_for(lambda: tray.shows(InstanceState.READY), 10, what="the ready colour")
    menu = tray.menu()
    assert any(i["label"].startswith(f"● {key}") for i in menu), [i["label"] for i in menu]


def test_choosing_16k_in_the_models_submenu_loads_with_that_context(tray: RunningTray) -> None:
    wait_for(lambda: tray.shows(InstanceState.IDLE), 10, what="idle")
    menu = tray.menu()
    first = next(i for i in menu if i["label"] == "Load model")["children"][0]["children"][0]
    assert [c["label"] for c in first["children"]][:4] == ["LM Studio's default", "4k", "8k", "16k"]
    key = load_first_model_by_keyboard(tray, choice=3)
    wait_for(lambda: [(m["modelKey"], m["contextLength"]) for m in tray.emulator.loaded()] == [(key, 16384)], 15,
             what=f"{key} loaded in the emulator with 16,384 tokens of context")
    wait_for(lambda: tray.shows(InstanceState.READY), 10, what="the ready colour")


def test_server_stop_turns_offline_and_notifies(tray: RunningTray) -> None:
    wait_for(lambda: tray.shows(InstanceState.IDLE), 10, what="idle")
    tray.emulator.stop_server()
    wait_for(lambda: tray.shows(InstanceState.OFFLINE), 15, what="the offline colour")

    def offline_bubble() -> bool:
        return any(n.get("summary") == "emu is offline" for n in dunst_history())

    wait_for(offline_bubble, 10, what="the offline notification in dunst")
    entry = next(n for n in dunst_history() if n.get("summary") == "emu is offline")
    assert entry.get("appname") == "LM Studio Tray"
    assert tray.emulator.api_url.split("//")[1] in entry.get("body", "")


def test_retry_button_on_a_failed_load_loads_again(tray: RunningTray) -> None:
    emulator = tray.emulator
    keys = [m["modelKey"] for m in emulator.downloaded()]
    emulator.update(fail_loads=dict.fromkeys(keys, "not enough memory (emulated)"))
    wait_for(lambda: tray.shows(InstanceState.IDLE), 10, what="idle")
    key = load_first_model_by_keyboard(tray)

    def load_requests() -> int:
        return sum(1 for r in emulator.requests if r.path.endswith("/models/load"))

    wait_for(lambda: load_requests() >= 1, 15, what="the first load request")
    # The failure bubble carries a Retry button; press it the way a dunst user does (context menu).
    desktop_tmp = os.environ.get("DESKTOP_TMP")
    if not desktop_tmp:
        pytest.fail("DESKTOP_TMP is not set: run under scripts/with-desktop.sh")
    Path(desktop_tmp, "dmenu-pick").write_text("Retry")
    first = load_requests()

    def press_retry() -> bool:
        subprocess.run(["dunstctl", "context"], check=True, timeout=10)
        return wait_until(lambda: load_requests() > first, 2)

    wait_for(press_retry, 20, interval=0.2, what="a second load request after pressing Retry")
    assert "#Retry" in Path(desktop_tmp, "dmenu.in").read_text()
    assert f"retrying load of {key}" in tray.log_text()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_second_start_finds_the_running_tray(tray: RunningTray, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_STATE_HOME=str(tray.state_home))
    second = subprocess.run(
        [sys.executable, "-m", "lmstudio_tray", "--config", str(tmp_path / "config.toml"), "run"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert second.returncode == 0
    assert f"already running (pid {tray.proc.pid})" in second.stderr
    assert tray.proc.poll() is None


def test_the_tray_serves_the_opencode_endpoint(tray: RunningTray) -> None:
    discovery = tray.state_home / "lmstudio-tray" / "endpoint.json"
    wait_for(discovery.exists, 10, what="the endpoint's discovery file")
    info = json.loads(discovery.read_text())
    assert info["pid"] == tray.proc.pid
    headers = {"authorization": f"Bearer {info['token']}"}
    model = tray.emulator.downloaded()[0]["modelKey"]
    with httpx.Client(base_url=info["url"], headers=headers, timeout=10) as client:
        assert client.get("/v1/health").json()["ok"] is True
        verdict = client.post("/v1/validate", json={"model": model, "base_url": tray.emulator.api_url + "/v1"})
        assert verdict.json()["category"] in ("not_loaded", "jit")  # downloaded, not loaded: the plugin is told
        assert client.get("/v1/status").json()["instances"][0]["name"] == "emu"
    stop_tray(tray)
    assert not discovery.exists(), "a clean exit removes the discovery file"
    written = [p for p in tray.state_home.parent.rglob("*") if p.is_file()]
    assert any(p.name == "lmstudio-tray.log" for p in written), "the tray keeps a log"
    assert not [p for p in written if info["token"].encode() in p.read_bytes()], "the token leaked into a file"


def test_sigterm_exits_cleanly(tray: RunningTray) -> None:
    tray.proc.send_signal(signal.SIGTERM)
    assert tray.proc.wait(10) == 0
    wait_for(lambda: tray.icon not in tray_icons().values(), 10, what="the icon to leave the tray")


def test_start_at_login_from_the_menu_writes_the_autostart_entry(tray: RunningTray, tmp_path: Path) -> None:
    entry = tmp_path / "config" / "autostart" / "lmstudio-tray.desktop"
    menu = tray.menu()
    item = next(i for i in menu if i["label"] == "Start at login")
    assert item["checked"] is False and not entry.exists(), "never on by default"
    reachable = [i for i in menu if i["enabled"] and not i["separator"]]
    index = next(n for n, i in enumerate(reachable) if i["label"] == "Start at login")
    open_menu(tray)
    for key in ["Down"] * (index + 1):
        time.sleep(0.1)
        xdotool("key", key)
    time.sleep(0.25)
    xdotool("key", "Return")
    wait_for(entry.exists, 10, what="the XDG autostart entry")
    assert "lmstudio" in entry.read_text() and "Exec=" in entry.read_text()
    wait_for(lambda: next(i for i in tray.menu() if i["label"] == "Start at login")["checked"] is True, 10,
             what="the checkbox ticked")


def choose_by_keyboard(tray: RunningTray, label: str, button: str = "3") -> None:
    """Open the menu with a click of `button` and walk down to the top-level item `label`, then Enter."""
    reachable = [i for i in tray.menu() if i["enabled"] and not i["separator"]]
    index = next(n for n, i in enumerate(reachable) if i["label"] == label)
    open_menu(tray, button)
    for key in ["Down"] * (index + 1):
        time.sleep(0.1)
        xdotool("key", key)
    time.sleep(0.25)
    xdotool("key", "Return")


def test_a_left_click_opens_the_menu_and_open_dashboard_signs_the_browser_in(tray: RunningTray,
                                                                            tmp_path: Path) -> None:
    assert any(i["label"] == "Open dashboard" for i in tray.menu())
    # the endpoint starts beside the icon: before it answers, the item can only say it is not running yet
    discovery = tray.state_home / "lmstudio-tray" / "endpoint.json"
    wait_for(discovery.exists, 30, what="the endpoint's discovery file")
    choose_by_keyboard(tray, "Open dashboard", button="1")  # the menu opens on a left click too
    opened = tmp_path / "opened.txt"
    wait_for(opened.exists, 15, what="the browser started with the dashboard link")
    url = opened.read_text().split()[0]
    assert "/dashboard?code=" in url
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        page = browser.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
