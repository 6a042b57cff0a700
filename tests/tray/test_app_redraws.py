"""The tray app as it runs: hook calls never make the core loop read the status for the tray, and the
icon, tooltip and menu are drawn on the tray's own thread.

A real TrayApp (core in its loop thread, the OpenCode endpoint, analytics, notifications into a recording
backend) watches the emulator over HTTP; validates go through the endpoint over real HTTP. Only the view
stands in for SniView: like it, `run()` owns the main thread and starts `setup` on a thread of its own;
here it runs the test's steps on the main thread instead of answering D-Bus, then returns like Quit.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from lmstudio_tray.core.config.schema import Config, EndpointConfig, InstanceConfig
from lmstudio_tray.core.models import InstanceState, StatusReport
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.support.endpoint_file import read_endpoint
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.notify.base import RecordingNotifier
from lmstudio_tray.tray.app import BackendChoice, TrayApp
from lmstudio_tray.tray.menu import MenuAction, MenuItem
from lmstudio_tray.wiring import attach_surfaces

from .redraw import wait_for

QWEN = "qwen/qwen3-4b-2507"


class CountingCore(Core):
    """The real core, noting the thread of every status read (the tray's redraws read it)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, lms_path=None)
        self.status_threads: list[int] = []

    def status(self) -> StatusReport:
        self.status_threads.append(threading.get_ident())
        return super().status()


class ScriptedView:
    backend = "scripted"

    def __init__(self, steps: Callable[[ScriptedView], None]) -> None:
        self.on_click: Callable[[MenuAction], None] = lambda action: None
        self.steps = steps
        self.draws: list[tuple[str, Any, int]] = []
        self.setup_thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def set_icon(self, state: InstanceState, progress: float | None) -> None:
        self.draws.append(("icon", state, threading.get_ident()))

    def set_tooltip(self, text: str) -> None:
        self.draws.append(("tooltip", text, threading.get_ident()))

    def set_menu(self, items: tuple[MenuItem, ...]) -> None:
        self.draws.append(("menu", items, threading.get_ident()))

    def copy_text(self, text: str) -> bool:
        return False

    def open_path(self, path: str) -> bool:
        return False

    def quit(self) -> None:
        pass

    def run(self, setup: Callable[[ScriptedView], None]) -> None:
        self.setup_thread = threading.Thread(target=setup, args=(self,), name="tray-setup", daemon=True)
        self.setup_thread.start()
        try:
            self.steps(self)
        except BaseException as exc:  # raised after run(): TrayApp would fall back to headless on it
            self.error = exc

    def icon_shows(self, state: InstanceState) -> bool:
        return any(what == "icon" and value is state for what, value, _ in self.draws)


class ScriptedTray(TrayApp):
    def __init__(self, config: Config, view: ScriptedView) -> None:
        self.counting = CountingCore(config)
        # attached as `lmstudio-tray run` attaches them, notifications into a recording backend
        surfaces = attach_surfaces(self.counting, command="run", notifier=RecordingNotifier(),
                                   endpoint_required=False)
        assert surfaces.notifications is not None
        super().__init__(config, core=self.counting, reporter=surfaces.notifications,
                         tips=surfaces.insights.tip_texts, on_shutdown=surfaces.close,
                         backend=BackendChoice("scripted", "tray: test view"))
        self._view = view

    def _make_view(self, backend: str) -> Any:
        return self._view


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """TrayApp installs SIGINT/SIGTERM handlers on the main thread; pytest gets its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_validates_leave_the_tray_alone_and_it_draws_on_its_own_thread(
    emulator: Emulator, keep_signal_handlers: None
) -> None:
    config = Config(instances=[InstanceConfig(name="local", url=emulator.api_url)], endpoint=EndpointConfig(port=0))
    seen: dict[str, Any] = {}

    def steps(view: ScriptedView) -> None:
        seen["first_draws"] = len(view.draws)  # the first refresh ran on this thread, before run()
        wait_for(lambda: view.icon_shows(InstanceState.IDLE), what="the first poll drawn")
        wait_for(lambda: read_endpoint() is not None, what="the endpoint")
        info = read_endpoint()
        assert info is not None
        body = {"model": QWEN, "base_url": emulator.api_url + "/v1", "agent": "build", "session_id": "s1"}
        with httpx.Client(base_url=info.url, headers={"Authorization": f"Bearer {info.token}"}) as http:
            for _ in range(200):
                assert http.post("/v1/validate", json=body).status_code == 200
        emulator.load(QWEN)
        wait_for(lambda: view.icon_shows(InstanceState.READY), what="the loaded model drawn")
        seen["core"] = app.core_thread.call(threading.get_ident)

    view = ScriptedView(steps)
    app = ScriptedTray(config, view)
    assert app.run() == 0
    if view.error is not None:
        raise view.error
    core, setup = seen["core"], view.setup_thread
    assert setup is not None and setup.ident is not None
    assert core not in app.counting.status_threads, "the core loop read the status for the tray"
    assert {ident for _, _, ident in view.draws[seen["first_draws"]:]} == {setup.ident}
    assert not setup.is_alive(), "the tray's redraw loop outlived the app"
