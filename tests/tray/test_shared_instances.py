"""The tray with a team profile, without a display: shared instances are marked, an unload or switch
that would cut off someone using the model is refused with a notification that offers "Unload anyway"
(or the --force command where bubbles have no buttons), and the active instance is a menu choice.

A real core (in its loop thread, with the endpoint the tray always serves) watches emulated LM Studio
servers; the notifications go through the real NotificationService into a recording backend.
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

from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.control import model_use
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.notify.base import RecordingNotifier
from lmstudio_tray.notify.service import NotificationService
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuItem, MenuPrefs, find
from lmstudio_tray.tray.preferences import ConfigPreferences, menu_prefs
from lmstudio_tray.tray.presenter import TrayPresenter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


class PlainNotifier(RecordingNotifier):
    """A backend without buttons (notify-send without actions, Windows toasts via plyer...)."""

    supports_buttons = False


class Tray:
    def __init__(self, path: Path, notifier: RecordingNotifier) -> None:
        self.path = path
        self.core = Core(load_config(path), config_path=path, lms_path=None)
        attach_endpoint(self.core, port=0)
        self.thread = CoreThread(self.core)
        self.thread.start()
        self.notifier = notifier
        self.view = mock.Mock()
        self.prefs = ConfigPreferences(self.core, path, self.thread.submit)
        self.presenter = TrayPresenter(
            self.view, status=self.core.status, actions=self.core.actions, submit=self.thread.submit,
            reporter=NotificationService(notifier, self.core.config.notifications),
            prefs=MenuPrefs(**menu_prefs(self.core.config, self.core.teams)), preferences=self.prefs,
        )
        self.core.on_config_change(lambda cfg: self.presenter.update_prefs(**menu_prefs(cfg, self.core.teams)))
        self.presenter.refresh()

    def menu(self) -> tuple[MenuItem, ...]:
        self.presenter.refresh()
        items: tuple[MenuItem, ...] = self.view.set_menu.call_args[0][0]
        return items

    def click(self, kind: ActionKind, instance: str | None = None, target: str | None = None) -> None:
        self.presenter.on_click(MenuAction(kind, instance, target))

    def settle(self, timeout: float = 15.0) -> None:
        self.wait(lambda: not self.presenter.pending, timeout)

    def wait(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "condition never became true"
            time.sleep(0.05)


@pytest.fixture
def setup(
    tmp_path: Path, emulator_factory: Callable[..., Emulator]
) -> Iterator[Callable[[RecordingNotifier], tuple[Tray, Emulator, Emulator]]]:
    trays: list[Tray] = []

    def make(notifier: RecordingNotifier) -> tuple[Tray, Emulator, Emulator]:
        shared, own = emulator_factory(), emulator_factory()
        shared.load(QWEN)
        shared.load(GEMMA)
        profile = tmp_path / "team.toml"
        profile.write_text(textwrap.dedent(f"""\
            [team]
            name = "ml"
            [[instances]]
            name = "gpu-box"
            url = "{shared.api_url}"
            """))
        path = tmp_path / "config.toml"
        path.write_text(textwrap.dedent(f"""\
            team_profile = "{profile}"
            active_instance = "desk"  # mine

            [[instances]]
            name = "desk"
            url = "{own.api_url}"
            """))
        # someone's OpenCode session used qwen on the shared box a minute ago (the router/validate record)
        uses = model_use.ModelUseLog()
        uses.record("gpu-box", QWEN, time.time() - 60)
        uses.flush()
        tray = Tray(path, notifier)
        trays.append(tray)
        tray.wait(lambda: all(s.state.value == "ready" for s in tray.core.status().instances
                              if s.name == "gpu-box"))
        return tray, shared, own

    yield make
    for tray in trays:
        tray.thread.stop()


def loaded(emu: Emulator) -> list[str]:
    return sorted(i["modelKey"] for i in emu.loaded())


def test_menu_marks_the_shared_instance_and_switches_the_active_one(setup: Any) -> None:
    tray, _shared, _own = setup(RecordingNotifier())
    menu = tray.menu()
    box = find(menu, "gpu-box")
    assert box.label.endswith("(shared)")
    assert find(box.children, "Shared with team 'ml'").enabled is False
    assert find(menu, "desk").label.endswith("(active)")
    chooser = find(menu, "Active instance: desk")
    assert sorted((c.label, c.checked, c.radio) for c in chooser.children) == [
        ("desk", True, True), ("gpu-box  (shared)", False, True),
    ]

    tray.click(ActionKind.USE_INSTANCE, target="gpu-box")
    data: dict[str, Any] = tomllib.loads(tray.path.read_text())
    assert data["active_instance"] == "gpu-box"
    assert "# mine" in tray.path.read_text()  # the user's comment stays
    tray.wait(lambda: tray.core.active_instance == "gpu-box")
    tray.wait(lambda: find(tray.menu(), "Active instance:").label == "Active instance: gpu-box")
    assert find(tray.menu(), "gpu-box").label.endswith("(shared)  (active)")


def test_unload_of_a_model_in_use_is_refused_with_an_unload_anyway_button(setup: Any) -> None:
    notifier = RecordingNotifier()
    tray, shared, _own = setup(notifier)
    tray.click(ActionKind.UNLOAD, "gpu-box", QWEN)
    tray.settle()
    message = notifier.messages[-1]
    assert message.title == f"Could not unload {QWEN}"
    assert "shared by team 'ml'" in message.body and "60 s ago" in message.body
    assert [b.label for b in message.buttons] == ["Unload anyway"]
    assert loaded(shared) == sorted([QWEN, GEMMA])

    # gemma served nobody: unloading it needs no confirmation
    tray.click(ActionKind.UNLOAD, "gpu-box", GEMMA)
    tray.settle()
    assert loaded(shared) == [QWEN]

    message.buttons[0].on_press()  # the person confirms on the earlier bubble
    tray.wait(lambda: loaded(shared) == [])
    tray.settle()


def test_switch_is_refused_before_anything_loads_and_can_be_confirmed(setup: Any) -> None:
    notifier = RecordingNotifier()
    tray, shared, _own = setup(notifier)
    shared.unload_all()
    shared.load(QWEN)
    tray.wait(lambda: [m.key for m in tray.core.monitor.snapshot("gpu-box").loaded_models] == [QWEN])  # type: ignore[union-attr]
    tray.click(ActionKind.SWITCH, "gpu-box", GEMMA)
    tray.settle()
    assert [b.label for b in notifier.messages[-1].buttons] == ["Switch anyway"]
    assert loaded(shared) == [QWEN]
    notifier.press("Switch anyway")
    tray.wait(lambda: loaded(shared) == [GEMMA], timeout=30)
    tray.settle()


def test_without_buttons_the_notification_names_the_force_command(setup: Any) -> None:
    notifier = PlainNotifier()
    tray, shared, _own = setup(notifier)
    tray.click(ActionKind.UNLOAD_ALL, "gpu-box")
    tray.settle()
    message = notifier.messages[-1]
    assert message.buttons == ()
    assert "lmstudio-tray unload --all --instance gpu-box --force" in message.body
    assert loaded(shared) == sorted([QWEN, GEMMA])
