"""Tray preferences end to end without a display: menu click -> config file -> running core -> menu.

A real core (in its loop thread, as in the tray) watches an emulated LM Studio; the view is a mock.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.profiles import use_profile
from lmstudio_tray.core.config.schema import Policy
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuItem, MenuPrefs, find
from lmstudio_tray.tray.preferences import ConfigPreferences, menu_prefs
from lmstudio_tray.tray.presenter import TrayPresenter

from .redraw import RedrawThread

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


class Tray:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.core = Core(load_config(path), config_path=path, lms_path=None)
        self.thread = CoreThread(self.core)
        self.thread.start()
        self.view = mock.Mock()
        self.reporter = mock.Mock()
        self.prefs = ConfigPreferences(self.core, path, self.thread.submit)
        self.presenter = TrayPresenter(
            self.view, status=self.core.status, actions=self.core.actions, submit=self.thread.submit,
            reporter=self.reporter, prefs=MenuPrefs(**menu_prefs(self.core.config, self.core.teams)),
            set_notifications=self.prefs.set_notifications, preferences=self.prefs,
        )
        # what TrayApp does: changes from anywhere (CLI, editor) and status events reach the menu
        self.core.on_config_change(lambda cfg: self.presenter.update_prefs(**menu_prefs(cfg, self.core.teams)))
        self.core.bus.subscribe(self.presenter.on_event, *self.presenter.EVENTS)
        self.presenter.refresh()
        self.redraws = RedrawThread(self.presenter)

    def menu(self) -> tuple[MenuItem, ...]:
        items: tuple[MenuItem, ...] = self.view.set_menu.call_args[0][0]
        return items

    def click(self, kind: ActionKind, target: str | None = None) -> None:
        self.presenter.on_click(MenuAction(kind, target=target))

    def file(self) -> dict[str, Any]:
        data: dict[str, Any] = tomllib.loads(self.path.read_text())
        return data

    def wait(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "condition never became true"
            time.sleep(0.05)


@pytest.fixture
def tray_factory() -> Iterator[Callable[[Path], Tray]]:
    trays: list[Tray] = []

    def make(path: Path) -> Tray:
        tray = Tray(path)
        trays.append(tray)
        return tray

    yield make
    for tray in trays:
        tray.redraws.stop()
        tray.thread.stop()


def write_config(path: Path, home: Emulator, gpu: Emulator) -> None:
    path.write_text(textwrap.dedent(f"""\
        # my settings
        [[instances]]
        name = "home"
        url = "{home.api_url}"

        [notifications]
        enabled = true  # bubbles please

        [profiles.work]
        description = "office GPU"

        [[profiles.work.instances]]
        name = "gpu"
        url = "{gpu.api_url}"

        [profiles.laptop.notifications]
        quiet = true
        """))


def test_profile_submenu_switches_the_running_core_and_persists(
    tmp_path: Path, emulator_factory: Callable[..., Emulator], tray_factory: Callable[[Path], Tray]
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_config(path, home, gpu)
    tray = tray_factory(path)
    profile_menu = find(tray.menu(), "Profile: none")
    assert [(c.label, c.checked, c.radio) for c in profile_menu.children] == [
        ("No profile", True, True), ("work — office GPU", False, True), ("laptop", False, True),
    ]
    tray.click(ActionKind.USE_PROFILE, "work")
    assert tray.file()["active_profile"] == "work"
    tray.wait(lambda: [s.name for s in tray.core.status().instances] == ["gpu"])
    tray.presenter.refresh()
    work = find(tray.menu(), "Profile: work")
    assert [c.checked for c in work.children] == [False, True, False]
    assert tray.view.set_tooltip.call_args[0][0].startswith("LM Studio Tray · profile work")
    assert "# my settings" in path.read_text()

    # a switch from the command line shows up in the menu too
    use_profile(path, None)
    tray.wait(lambda: tray.core.config.active_profile is None)
    tray.wait(lambda: find(tray.menu(), "Profile:").label == "Profile: none")


def test_notification_toggles_persist_and_reach_the_running_core(
    tmp_path: Path, emulator_factory: Callable[..., Emulator], tray_factory: Callable[[Path], Tray]
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_config(path, home, gpu)
    tray = tray_factory(path)
    tray.click(ActionKind.TOGGLE_NOTIFICATIONS)
    assert tray.file()["notifications"]["enabled"] is False
    assert "enabled = false  # bubbles please" in path.read_text()  # the user's comment stays
    tray.wait(lambda: tray.core.config.notifications.enabled is False)
    assert find(tray.menu(), "Notifications").checked is False

    tray.click(ActionKind.TOGGLE_NOTIFICATIONS)
    tray.click(ActionKind.TOGGLE_NOTIFY_CATEGORY, "loading")
    assert tray.file()["notifications"]["categories"] == {"loading": False}
    tray.wait(lambda: tray.core.config.notifications.categories["loading"] is False)
    types = find(tray.menu(), "Notification types")
    assert find(types.children, "Model loading").checked is False and find(types.children, "Load failed").checked

    # in the laptop profile, `quiet` belongs to the profile: a change there goes into the profile
    tray.click(ActionKind.USE_PROFILE, "laptop")
    tray.wait(lambda: tray.core.config.active_profile == "laptop")
    assert tray.prefs.save({"notifications.quiet": False})["profile"] == "laptop"
    assert tray.file()["profiles"]["laptop"]["notifications"]["quiet"] is False
    assert "quiet" not in tray.file()["notifications"]


def test_validation_choice_persists_and_changes_policy(
    tmp_path: Path, emulator_factory: Callable[..., Emulator], tray_factory: Callable[[Path], Tray]
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_config(path, home, gpu)
    tray = tray_factory(path)
    menu = find(tray.menu(), "OpenCode validation")
    assert [c.label.split(" (")[0] for c in menu.children if c.checked] == ["Default"]
    tray.click(ActionKind.SET_VALIDATION, "strict")
    tray.wait(lambda: tray.core.config.validation.policy["jit"] is Policy.BLOCK)
    assert load_config(path).validation.policy["loading"] is Policy.BLOCK
    checked = [c.label for c in find(tray.menu(), "OpenCode validation").children if c.checked]
    assert checked == ["Strict (only loaded models)"]
    # a hand-made policy shows as custom
    tray.prefs.save({"validation.policy.jit": "warn"})
    tray.wait(lambda: any(c.label.startswith("Custom") and c.checked
                          for c in find(tray.menu(), "OpenCode validation").children))


def test_a_save_that_cannot_be_made_is_reported_and_changes_nothing(
    tmp_path: Path, emulator_factory: Callable[..., Emulator], tray_factory: Callable[[Path], Tray]
) -> None:
    home, gpu = emulator_factory(), emulator_factory()
    path = tmp_path / "config.toml"
    write_config(path, home, gpu)
    tray = tray_factory(path)
    path.write_text(path.read_text() + "\nbroken = = line\n")  # someone is mid-edit
    before = path.read_bytes()
    tray.click(ActionKind.USE_PROFILE, "work")
    title, body = tray.reporter.report.call_args[0]
    assert title == "Could not switch the profile" and "not valid TOML" in body
    assert path.read_bytes() == before
    assert tray.core.config.active_profile is None


def test_without_a_config_file_a_toggle_keeps_the_running_instances(
    tmp_path: Path, emulator: Emulator, tray_factory: Callable[[Path], Tray]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "demo"\nurl = "{emulator.api_url}"\n')
    tray = tray_factory(path)
    path.unlink()  # e.g. demo mode: the settings exist only in memory
    tray.click(ActionKind.TOGGLE_NOTIFICATIONS)
    cfg = load_config(path)
    assert [i.name for i in cfg.instances] == ["demo"] and cfg.notifications.enabled is False
