"""The "Start at login" checkbox: presenter with a mock view, driving the real Linux autostart backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from lmstudio_tray.platform.autostart import Autostart, for_platform
from lmstudio_tray.platform.autostart.linux import LinuxAutostart, read_desktop_entry
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuPrefs, find, flatten
from lmstudio_tray.tray.presenter import TrayPresenter

from .factories import ready, report
from .test_presenter import FakeActions, LoopThread


class Tray:
    """A presenter wired the way the tray app wires autostart: state read once, setter = the backend."""

    def __init__(self, autostart: Autostart | None) -> None:
        self.autostart = autostart
        self.view = mock.Mock()
        self.reporter = mock.Mock()
        self.core = LoopThread()

        def set_autostart(on: bool) -> None:
            assert self.autostart is not None
            self.autostart.set_enabled(on)

        self.presenter = TrayPresenter(
            self.view,
            status=lambda: report(ready()),
            actions=FakeActions(),
            submit=self.core.submit,
            reporter=self.reporter,
            prefs=MenuPrefs(autostart=autostart.status().enabled if autostart else None),
            set_autostart=set_autostart if autostart else None,
        )
        self.presenter.refresh()

    def menu(self) -> Any:
        return self.view.set_menu.call_args.args[0]

    def click(self) -> None:
        self.presenter.on_click(MenuAction(ActionKind.TOGGLE_AUTOSTART))


@pytest.fixture
def linux(tmp_path: Path) -> LinuxAutostart:
    auto = for_platform("linux", command=["/usr/bin/lmstudio-tray", "run"])
    assert isinstance(auto, LinuxAutostart)
    auto.config_dirs = [tmp_path / "no-system-config"]
    return auto


@pytest.fixture
def tray(linux: LinuxAutostart) -> Iterator[Tray]:
    t = Tray(linux)
    yield t
    t.core.stop()


def test_item_is_in_the_global_part_and_off_by_default(tray: Tray, linux: LinuxAutostart) -> None:
    item = find(tray.menu(), "Start at login")
    assert item.checked is False and item.enabled
    labels = [i.label for i in tray.menu()]
    assert labels.index("Notifications") < labels.index("Start at login") < labels.index("Quit")
    assert not linux.desktop_file.exists()


def test_clicking_turns_autostart_on_and_off(tray: Tray, linux: LinuxAutostart) -> None:
    tray.click()
    assert find(tray.menu(), "Start at login").checked is True
    assert read_desktop_entry(linux.desktop_file)["Exec"] == "/usr/bin/lmstudio-tray run"
    tray.click()
    assert find(tray.menu(), "Start at login").checked is False
    assert not linux.desktop_file.exists()
    tray.reporter.report.assert_not_called()


def test_a_failure_is_reported_and_the_checkbox_keeps_the_truth(tray: Tray, linux: LinuxAutostart) -> None:
    linux.desktop_file.mkdir(parents=True)  # something in the way of the entry
    tray.click()
    title, body = tray.reporter.report.call_args.args
    assert title == "Could not change autostart" and "lmstudio-tray.desktop" in body
    assert find(tray.menu(), "Start at login").checked is False


def test_switched_off_by_the_user_shows_unchecked_and_click_turns_it_on(linux: LinuxAutostart) -> None:
    linux.enable()
    linux.desktop_file.write_text(linux.desktop_file.read_text() + "Hidden=true\n")
    t = Tray(linux)
    try:
        assert find(t.menu(), "Start at login").checked is False
        assert "Hidden=true" in linux.desktop_file.read_text()  # building the menu changed nothing
        t.click()
        assert find(t.menu(), "Start at login").checked is True
        assert linux.status().enabled and "Hidden" not in read_desktop_entry(linux.desktop_file)
    finally:
        t.core.stop()


def test_no_item_where_autostart_is_unavailable() -> None:
    t = Tray(None)
    try:
        assert all(not i.label.startswith("Start at login") for i in flatten(t.menu()))
        t.click()
        t.reporter.report.assert_not_called()
    finally:
        t.core.stop()
