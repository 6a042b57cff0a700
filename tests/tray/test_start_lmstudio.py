"""The tray's "Start LM Studio" and its server-settings line, with a real core, the emulator and the fake `lms`:
offered when nothing runs on this machine, started with a bubble before and after, and a failure said as such."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest

from lmstudio_tray.core.config.schema import Config, InstanceConfig
from lmstudio_tray.core.events import InstanceOffline, InstanceOnline, ServerStarted, ServerStopped
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuItem, find, flatten
from lmstudio_tray.tray.presenter import TrayPresenter
from tests.emulator_fixtures import LmsHome

from .redraw import RedrawThread, wait_for


@dataclass
class Tray:
    core: Core
    thread: CoreThread
    presenter: TrayPresenter
    view: mock.Mock
    reporter: mock.Mock

    def menu(self) -> tuple[MenuItem, ...]:
        # nothing drawn yet (the presenter's first redraw can come after the test starts waiting): no items
        call = self.view.set_menu.call_args
        items: tuple[MenuItem, ...] = call.args[0] if call is not None else ()
        return items

    def labels(self) -> list[str]:
        return [item.label for item in flatten(self.menu())]

    def reports(self) -> list[tuple[Any, ...]]:
        return [c.args for c in self.reporter.report.call_args_list]


@pytest.fixture
def tray(lms_home: LmsHome) -> Iterator[Tray]:
    emu = lms_home.emulator
    emu.stop_server()  # LM Studio comes back with its server as it left it: off here
    emu.kill()
    core = Core(Config(instances=[InstanceConfig(name="local", url=emu.api_url)]), lms_path=lms_home.lms)
    thread = CoreThread(core)
    thread.start()
    view, reporter = mock.Mock(), mock.Mock()
    presenter = TrayPresenter(view, status=core.status, actions=core.actions, submit=thread.submit,
                              reporter=reporter, server=core.server_control)
    # as TrayApp wires it
    core.bus.subscribe(presenter.on_event, *presenter.EVENTS)
    core.bus.subscribe(core.server_control.on_status_change, InstanceOnline, InstanceOffline, ServerStarted,
                       ServerStopped)
    thread.submit(core.server_control.refresh()).result(60)
    redraws = RedrawThread(presenter)
    yield Tray(core, thread, presenter, view, reporter)
    redraws.stop()
    thread.stop()


def test_start_lmstudio_when_nothing_runs(tray: Tray, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    wait_for(lambda: "Start LM Studio" in tray.labels(), what="Start LM Studio offered")
    start = find(tray.menu(), "Start LM Studio")
    assert start.enabled and start.action == MenuAction(ActionKind.START_LMSTUDIO, "local")
    tray.presenter.on_click(start.action)
    wait_for(lambda: len(tray.reports()) >= 2, timeout=60, what="the result's bubble")
    first, last = tray.reports()[:2]
    assert first == ("Starting LM Studio", "Starting LM Studio and its server…")
    assert last[0] == "LM Studio started" and f"its server is on port {emu.api_port}" in last[1]
    assert emu.alive and emu.server_running
    # the menu follows: the server is up, with its settings on a line of their own
    line = f"Server: port {emu.api_port}, this machine only, CORS off"
    wait_for(lambda: line in tray.labels() and "Stop server" in tray.labels(), timeout=60, what="the settings")


def test_start_lmstudio_without_an_installation_says_so(tray: Tray, lms_home: LmsHome) -> None:
    (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").unlink()
    wait_for(lambda: "Start LM Studio" in tray.labels(), what="Start LM Studio offered")
    tray.presenter.on_click(MenuAction(ActionKind.START_LMSTUDIO, "local"))
    wait_for(lambda: len(tray.reports()) >= 2, timeout=60, what="the failure's bubble")
    title, body = tray.reports()[1][:2]
    assert title == "Could not start LM Studio" and "LM Studio is not installed here" in body
    assert not lms_home.emulator.alive
