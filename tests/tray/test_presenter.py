from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any
from unittest import mock

import pytest

from lmstudio_tray.core.errors import ActionError, SharedBusyError, SharedInstanceBusy
from lmstudio_tray.core.models import InstanceState, StatusReport
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuPrefs, find
from lmstudio_tray.tray.presenter import TrayPresenter

from .factories import loading, ready, report, snap
from .redraw import RedrawThread, wait_for


class FakeActions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.cancellable = False

    async def _do(self, *call: str) -> Any:
        self.calls.append(call)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return True

    async def load(self, instance: str, model: str, *, context_length: int | None = None) -> Any:
        return await self._do("load", instance, model)

    async def switch(self, instance: str, model: str, *, context_length: int | None = None) -> Any:
        return await self._do("switch", instance, model)

    async def unload(self, instance: str, target: str) -> Any:
        return await self._do("unload", instance, target)

    async def unload_all(self, instance: str) -> Any:
        return await self._do("unload_all", instance)

    async def server_start(self, instance: str) -> Any:
        return await self._do("server_start", instance)

    async def server_stop(self, instance: str) -> Any:
        return await self._do("server_stop", instance)

    async def cancel_load(self, instance: str, model: str) -> bool:
        await self._do("cancel_load", instance, model)
        return self.cancellable

    def can_cancel(self, instance: str, model: str) -> bool:
        return self.cancellable


class LoopThread:
    """Stands in for CoreThread: a real loop in another thread, so clicks really do not block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2)


class Harness:
    def __init__(self) -> None:
        self.status = report(ready())
        self.view = mock.Mock()
        self.view.copy_text.return_value = True
        self.view.open_path.return_value = True
        self.reporter = mock.Mock()
        self.actions = FakeActions()
        self.core = LoopThread()
        self.set_notifications = mock.Mock()
        self.presenter = TrayPresenter(
            self.view,
            status=lambda: self.status,
            actions=self.actions,
            submit=self.core.submit,
            reporter=self.reporter,
            prefs=MenuPrefs(notifications=True, config_path="/cfg/config.toml", logs_path="/logs"),
            set_notifications=self.set_notifications,
            ensure_config=lambda: "/cfg/config.toml",
            about_text=lambda: "Watching 1 instance.",
        )
        self.redraws = RedrawThread(self.presenter)  # as TrayApp runs it, on the tray's own thread

    def click(self, action: MenuAction) -> None:
        self.presenter.on_click(action)

    def settle(self) -> None:
        for f in list(self.presenter.pending):
            with contextlib.suppress(Exception):
                f.result(2)
        # done-callbacks run right after the result is set; give them a moment on this side.
        for _ in range(100):
            if not self.presenter.pending:
                return
            threading.Event().wait(0.01)

    def last_menu(self) -> Any:
        return self.view.set_menu.call_args.args[0]


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.redraws.stop()
    harness.core.stop()


def test_refresh_pushes_icon_tooltip_and_menu(h: Harness) -> None:
    h.presenter.refresh()
    h.view.set_icon.assert_called_once_with(InstanceState.READY, None)
    h.view.set_tooltip.assert_called_once_with("LM Studio Tray\nlocal: qwen3-8b (8k)")
    assert find(h.last_menu(), "Unload all").enabled


def test_refresh_only_pushes_changes(h: Harness) -> None:
    h.presenter.refresh()
    h.presenter.refresh()
    assert h.view.set_icon.call_count == 1
    assert h.view.set_menu.call_count == 1
    h.status = report(snap(InstanceState.OFFLINE))
    h.presenter.refresh()
    h.view.set_icon.assert_called_with(InstanceState.OFFLINE, None)
    assert h.view.set_menu.call_count == 2


def test_loading_progress_moves_the_ring_in_steps(h: Harness) -> None:
    h.status = report(loading(0.50, 10))
    h.presenter.refresh()
    h.status = report(loading(0.51, 9))
    h.presenter.refresh()
    assert h.view.set_icon.call_count == 1  # same 1/24 step: no redraw
    h.status = report(loading(0.75, 5))
    h.presenter.refresh()
    h.view.set_icon.assert_called_with(InstanceState.LOADING, 0.75)


def test_click_load_runs_in_the_core_without_blocking(h: Harness) -> None:
    h.status = report(snap(InstanceState.IDLE))
    h.presenter.refresh()
    gate = asyncio.Event()
    h.actions.gate = gate
    h.click(MenuAction(ActionKind.LOAD, "local", "qwen3-8b"))
    # We are back while the load still runs; the clicked model is greyed meanwhile.
    assert h.presenter.pending and not h.presenter.pending[0].done()
    qwen = find(find(h.last_menu(), "Load model").children, "qwen3-8b")
    assert not qwen.enabled
    h.core.loop.call_soon_threadsafe(gate.set)
    h.settle()
    assert h.actions.calls == [("load", "local", "qwen3-8b")]
    # the action ended on the core loop: the tray's thread redraws the item enabled
    wait_for(lambda: find(find(h.last_menu(), "Load model").children, "qwen3-8b").enabled, what="qwen3-8b enabled")
    h.reporter.report.assert_not_called()


@pytest.mark.parametrize(
    ("action", "call"),
    [
        (MenuAction(ActionKind.SWITCH, "local", "gemma-3-4b"), ("switch", "local", "gemma-3-4b")),
        (MenuAction(ActionKind.UNLOAD, "local", "qwen3-8b"), ("unload", "local", "qwen3-8b")),
        (MenuAction(ActionKind.UNLOAD_ALL, "local"), ("unload_all", "local")),
        (MenuAction(ActionKind.SERVER_START, "local"), ("server_start", "local")),
        (MenuAction(ActionKind.SERVER_STOP, "local"), ("server_stop", "local")),
    ],
)
def test_clicks_map_to_core_actions(h: Harness, action: MenuAction, call: tuple[str, ...]) -> None:
    h.click(action)
    h.settle()
    assert h.actions.calls == [call]


def test_action_failure_becomes_a_notification(h: Harness) -> None:
    h.actions.fail = ActionError("not enough memory to load qwen3-8b (needs 4.7 GB, 2.1 GB free)")
    h.click(MenuAction(ActionKind.LOAD, "local", "qwen3-8b"))
    h.settle()
    h.reporter.report.assert_called_once_with(
        "Could not load qwen3-8b",
        "not enough memory to load qwen3-8b (needs 4.7 GB, 2.1 GB free)",
        replace_key="load:local:qwen3-8b",
    )


def test_every_action_error_is_reported_as_written_and_not_logged_as_a_bug(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # A subclass of ActionError (here the shared-instance refusal, on a click that offers no "anyway")
    # carries a message written for people just the same: the class decides, not its name.
    h.actions.fail = SharedBusyError(SharedInstanceBusy("local is shared by team 'lab'"))
    h.click(MenuAction(ActionKind.LOAD, "local", "qwen3-8b"))
    h.settle()
    title, body = h.reporter.report.call_args.args
    assert title == "Could not load qwen3-8b" and body.startswith("local is shared by team 'lab'")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_look_alike_of_action_error_is_logged_as_a_bug(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    look_alike = type("ActionError", (Exception,), {})  # the name alone says nothing about the message
    h.actions.fail = look_alike("boom")
    h.click(MenuAction(ActionKind.LOAD, "local", "qwen3-8b"))
    h.settle()
    assert any(r.levelname == "ERROR" and "Could not load" in r.getMessage() for r in caplog.records)


def test_unexpected_failure_is_reported_and_logged(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.actions.fail = RuntimeError("boom")
    h.click(MenuAction(ActionKind.SERVER_STOP, "local"))
    h.settle()
    title, body = h.reporter.report.call_args.args
    assert title == "Could not stop the server of local" and body == "boom"
    assert any("Could not stop" in r.getMessage() for r in caplog.records)


def test_cancel_that_is_refused_says_why(h: Harness) -> None:
    h.actions.cancellable = False
    h.click(MenuAction(ActionKind.CANCEL_LOAD, "local", "gemma-3-4b"))
    h.settle()
    title, body = h.reporter.report.call_args.args
    assert title == "Could not cancel loading gemma-3-4b" and "cannot cancel" in body


def test_cancel_offered_when_core_can(h: Harness) -> None:
    h.actions.cancellable = True
    h.status = report(loading())
    h.presenter.refresh()
    assert find(h.last_menu(), "Cancel loading gemma-3-4b").enabled
    h.click(MenuAction(ActionKind.CANCEL_LOAD, "local", "gemma-3-4b"))
    h.settle()
    assert h.actions.calls == [("cancel_load", "local", "gemma-3-4b")]
    h.reporter.report.assert_not_called()


def test_submit_failure_is_reported_not_raised(h: Harness) -> None:
    def broken(coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        raise RuntimeError("loop closed")

    h.presenter._submit = broken
    h.click(MenuAction(ActionKind.LOAD, "local", "qwen3-8b"))
    title, body = h.reporter.report.call_args.args
    assert title == "Could not load qwen3-8b" and "not running" in body


def test_copy_model_id(h: Harness) -> None:
    h.click(MenuAction(ActionKind.COPY_ID, "local", "qwen3-8b:2"))
    h.view.copy_text.assert_called_once_with("qwen3-8b:2")
    h.view.copy_text.return_value = False
    h.click(MenuAction(ActionKind.COPY_ID, "local", "qwen3-8b"))
    h.reporter.report.assert_called_once_with("Model id", "qwen3-8b", failure=False)


def test_toggle_notifications_updates_prefs_and_menu(h: Harness) -> None:
    h.presenter.refresh()
    h.click(MenuAction(ActionKind.TOGGLE_NOTIFICATIONS))
    h.set_notifications.assert_called_once_with(False)
    assert find(h.last_menu(), "Notifications").checked is False
    h.click(MenuAction(ActionKind.TOGGLE_NOTIFICATIONS))
    assert find(h.last_menu(), "Notifications").checked is True


def test_toggle_autostart_without_support_does_nothing(h: Harness) -> None:
    h.click(MenuAction(ActionKind.TOGGLE_AUTOSTART))
    h.reporter.report.assert_not_called()


def test_open_config_logs_about_quit(h: Harness) -> None:
    h.click(MenuAction(ActionKind.OPEN_CONFIG))
    h.view.open_path.assert_called_with("/cfg/config.toml")
    h.click(MenuAction(ActionKind.OPEN_LOGS))
    h.view.open_path.assert_called_with("/logs")
    h.view.open_path.return_value = False
    h.click(MenuAction(ActionKind.OPEN_LOGS))
    h.reporter.report.assert_called_with("Could not open the logs folder", "The logs are in /logs")
    h.click(MenuAction(ActionKind.ABOUT))
    title, body = h.reporter.report.call_args.args
    assert title.startswith("LM Studio Tray ") and body == "Watching 1 instance."
    h.click(MenuAction(ActionKind.QUIT))
    h.view.quit.assert_called_once_with()


def test_broken_status_source_does_not_raise(h: Harness) -> None:
    def boom() -> StatusReport:
        raise RuntimeError("cache gone")

    h.presenter._status = boom
    h.presenter.refresh()
    h.view.set_menu.assert_not_called()


def test_view_exception_in_click_is_contained(h: Harness) -> None:
    h.view.quit.side_effect = RuntimeError("toolkit gone")
    h.click(MenuAction(ActionKind.QUIT))
    assert "quit failed" in h.reporter.report.call_args.args[0]


def dashboard_presenter(h: Harness, opener: Any) -> TrayPresenter:
    return TrayPresenter(h.view, status=lambda: h.status, actions=h.actions, submit=h.core.submit,
                         reporter=h.reporter, prefs=MenuPrefs(dashboard=True), open_dashboard=opener)


def test_open_dashboard_is_in_the_menu_and_opens_it_off_the_tray_thread(h: Harness) -> None:
    clicked_on = threading.get_ident()
    opened: list[int] = []
    done = threading.Event()

    def opener() -> None:
        opened.append(threading.get_ident())
        done.set()

    presenter = dashboard_presenter(h, opener)
    presenter.refresh()
    item = find(h.last_menu(), "Open dashboard")
    assert item.action == MenuAction(ActionKind.OPEN_DASHBOARD)
    presenter.on_click(item.action)
    assert done.wait(10)
    assert opened and opened[0] != clicked_on  # a loopback call and a browser start never freeze the menu
    h.reporter.report.assert_not_called()


@pytest.mark.parametrize(("outcome", "title", "body"), [
    (RuntimeError("no running endpoint found; start the tray or `lmstudio-tray serve` first."),
     "Could not open the dashboard", "no running endpoint found; start the tray or `lmstudio-tray serve` first."),
    ("http://127.0.0.1:47823/dashboard?code=abc", "Open the dashboard",
     "Open this link within a minute (it works once): http://127.0.0.1:47823/dashboard?code=abc"),
])
def test_open_dashboard_says_what_went_wrong_or_gives_the_link(h: Harness, outcome: Any, title: str,
                                                                body: str) -> None:
    def opener() -> str:
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    dashboard_presenter(h, opener).on_click(MenuAction(ActionKind.OPEN_DASHBOARD))
    for _ in range(500):
        if h.reporter.report.called:
            break
        threading.Event().wait(0.02)
    assert h.reporter.report.call_args.args == (title, body)


def test_no_dashboard_item_without_a_way_to_open_it(h: Harness) -> None:
    h.presenter.refresh()
    with pytest.raises(KeyError):
        find(h.last_menu(), "Open dashboard")
