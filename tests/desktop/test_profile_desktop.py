"""The real tray on a test desktop: profiles added and switched from the CLI and from the menu.

Runs under scripts/with-desktop.sh like the other desktop tests.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.cli import main
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.profiles import apply_preset

from .test_tray_desktop import RunningTray, open_menu, start_tray, stop_tray
from .xtools import wait_for, xdotool

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

pytestmark = pytest.mark.desktop


@pytest.fixture
def tray(tmp_path: Path, emulator: Any) -> Iterator[RunningTray]:
    running = start_tray(tmp_path, emulator)
    yield running
    stop_tray(running)


def profile_item(tray: RunningTray) -> dict[str, Any] | None:
    return next((i for i in tray.menu() if i["label"].startswith("Profile: ")), None)


def test_profiles_from_the_cli_and_the_menu_apply_without_a_restart(tray: RunningTray, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert profile_item(tray) is None  # no profiles yet: no submenu
    apply_preset(config, "quiet", "laptop")
    apply_preset(config, "strict", "work")

    # the running tray notices the new profiles in the file
    wait_for(lambda: profile_item(tray), 10, what="the Profile submenu")
    item = profile_item(tray)
    assert item is not None
    assert item["label"] == "Profile: none"
    assert [(c["label"].split(" — ")[0], c["checked"]) for c in item["children"]] == [
        ("No profile", True), ("laptop", False), ("work", False),
    ]

    # the command line switches the running tray
    assert main(["--config", str(config), "profile", "use", "laptop"]) == 0
    wait_for(lambda: (profile_item(tray) or {}).get("label") == "Profile: laptop", 10, what="Profile: laptop")

    # and so does the menu, by keyboard: Profile -> work
    menu = tray.menu()
    reachable = [i for i in menu if i["enabled"] and not i["separator"]]
    index = next(n for n, i in enumerate(reachable) if i["label"].startswith("Profile: "))
    children = next(i for i in menu if i["label"].startswith("Profile: "))["children"]
    target = next(n for n, c in enumerate(children) if c["label"].startswith("work"))
    open_menu(tray)
    for key in ["Down"] * (index + 1) + ["Right"] + ["Down"] * target:
        time.sleep(0.25)  # GTK opens submenus after a short delay
        xdotool("key", key)
    time.sleep(0.25)
    xdotool("key", "Return")
    wait_for(lambda: tomllib.loads(config.read_text()).get("active_profile") == "work", 10,
             what="active_profile = work in the file")
    wait_for(lambda: (profile_item(tray) or {}).get("label") == "Profile: work", 10, what="Profile: work")
    assert load_config(config).validation.policy["jit"].value == "block"
    assert "Traceback" not in tray.log_text()
