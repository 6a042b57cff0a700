"""The tray redraws on its own thread, only for events that change it, and coalesces bursts.

A real bus whose events are published on a real event loop in another thread (the core loop), the
presenter subscribed the way TrayApp subscribes it, its redraw loop on a thread of its own (the tray's),
and a view that records what it is told and on which thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lmstudio_tray.core.events import EventBus, LoadProgressed, StateChanged, VerdictGiven
from lmstudio_tray.core.models import InstanceState, StatusReport
from lmstudio_tray.tray.menu import MenuItem, flatten
from lmstudio_tray.tray.presenter import Redraws, TrayPresenter

from .factories import loading, ready, report, snap
from .redraw import RedrawThread, wait_for
from .test_presenter import FakeActions, LoopThread


class RecordingView:
    """Records every draw with the thread it came from; can hold the first draw to make a burst pile up."""

    def __init__(self) -> None:
        self.draws: list[tuple[str, Any, int]] = []
        self.menus: list[tuple[MenuItem, ...]] = []
        self.hold: threading.Event | None = None  # set: the next draw waits for `release`
        self.holding = threading.Event()
        self.release = threading.Event()

    def _draw(self, what: str, value: Any) -> None:
        if self.hold is not None and self.hold.is_set():
            self.hold.clear()
            self.holding.set()
            self.release.wait(10)  # a safety net only: the test releases it
        self.draws.append((what, value, threading.get_ident()))

    def set_icon(self, state: InstanceState, progress: float | None) -> None:
        self._draw("icon", (state, progress))

    def set_tooltip(self, text: str) -> None:
        self._draw("tooltip", text)

    def set_menu(self, items: tuple[MenuItem, ...]) -> None:
        self._draw("menu", items)
        self.menus.append(items)

    def copy_text(self, text: str) -> bool:
        return False

    def open_path(self, path: str) -> bool:
        return False

    def quit(self) -> None:
        pass


class Tray:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.core = LoopThread()  # publishes like the monitor: on the core's loop, in its thread
        self.status = report(ready())
        self.reads = 0
        self.view = RecordingView()
        self.presenter = TrayPresenter(self.view, status=self.read, actions=FakeActions(),
                                       submit=self.core.submit, reporter=_NoReports())
        self.bus.subscribe(self.presenter.on_event, *self.presenter.EVENTS)  # as TrayApp does
        self.presenter.refresh()
        self.redraws = RedrawThread(self.presenter)

    def read(self) -> StatusReport:
        self.reads += 1
        return self.status

    def on_core(self, work: Callable[[], None]) -> int:
        """Run `work` on the core loop and wait for it; returns the core thread's id."""

        async def run() -> int:
            work()
            return threading.get_ident()

        return int(self.core.submit(run()).result(30))

    def close(self) -> None:
        self.view.release.set()
        self.redraws.stop()
        self.core.stop()


class _NoReports:
    def report(self, title: str, body: str, *, replace_key: str | None = None, failure: bool = True) -> None:
        raise AssertionError(f"unexpected report: {title}: {body}")

    def offer(self, title: str, body: str, *, button: str, on_press: Callable[[], None], replace_key: str) -> bool:
        raise AssertionError(f"unexpected offer: {title}: {body}")


@pytest.fixture
def tray() -> Iterator[Tray]:
    t = Tray()
    yield t
    t.close()


def menu_text(items: tuple[MenuItem, ...]) -> str:
    return "\n".join(i.label for i in flatten(items))


def test_verdicts_never_make_the_tray_read_the_status_or_draw(tray: Tray) -> None:
    reads, draws = tray.reads, len(tray.view.draws)

    def validates() -> None:
        for n in range(500):
            tray.bus.publish(VerdictGiven("local", model="qwen3-8b", category="ok", session_id=f"s{n}"))

    tray.on_core(validates)
    # a status change after them: once it is drawn, anything the verdicts caused would have been too
    tray.status = report(snap(InstanceState.OFFLINE))
    tray.on_core(lambda: tray.bus.publish(StateChanged("local", old="ready", new="offline")))
    wait_for(lambda: ("icon", (InstanceState.OFFLINE, None)) in [d[:2] for d in tray.view.draws],
             what="the offline icon")
    assert tray.reads == reads + 1  # the state change alone
    assert [d[0] for d in tray.view.draws[draws:]] == ["icon", "tooltip", "menu"]


def test_a_burst_of_progress_is_drawn_a_few_times_and_ends_at_the_last_figure(tray: Tray) -> None:
    tray.status = report(loading(0.0, 30))
    tray.presenter.refresh()
    menus = len(tray.view.menus)
    assert tray.view.hold is None
    tray.view.hold = threading.Event()
    tray.view.hold.set()  # the first draw after the first event waits while the other 99 arrive

    def progress(n: int) -> None:
        tray.status = report(loading(n / 100, 30 - n * 0.3))
        tray.bus.publish(LoadProgressed("local", model="gemma-3-4b", progress=n / 100))

    published = threading.Event()

    def burst() -> None:
        for n in range(1, 101):
            progress(n)
        published.set()

    tray.core.loop.call_soon_threadsafe(burst)
    wait_for(published.is_set, what="the 100 events published (the core loop never waits for the tray)")
    wait_for(tray.view.holding.is_set, what="the first redraw")
    tray.view.release.set()
    wait_for(lambda: "100 %" in menu_text(tray.view.menus[-1]), what="the last progress in the menu")
    drawn = len(tray.view.menus) - menus
    assert 1 <= drawn <= 2, f"{drawn} menu redraws for 100 progress events"
    assert tray.view.draws[-1][0] == "menu"


def test_redraws_run_on_the_trays_thread_never_on_the_core_loop(tray: Tray) -> None:
    draws = len(tray.view.draws)
    tray.status = report(loading(0.5, 10))
    core = tray.on_core(lambda: tray.bus.publish(LoadProgressed("local", model="gemma-3-4b", progress=0.5)))
    wait_for(lambda: len(tray.view.draws) >= draws + 3, what="the loading icon, tooltip and menu")
    threads = {ident for _, _, ident in tray.view.draws[draws:]}
    assert threads == {tray.redraws.thread.ident} and core not in threads


def test_the_safety_refresh_redraws_without_events_and_stop_ends_the_loop() -> None:
    calls: list[str] = []
    redraws = Redraws(lambda: calls.append("redraw"), interval=0.0)
    thread = threading.Thread(target=redraws.run, kwargs={"every": 0.01, "on_every": lambda: calls.append("tick")},
                              daemon=True)
    thread.start()
    wait_for(lambda: calls.count("tick") >= 2, what="two safety refreshes")
    redraws.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert calls[:2] == ["redraw", "tick"]


def test_a_loop_stopped_before_it_runs_returns_at_once() -> None:
    redraws = Redraws(lambda: None)
    redraws.request()
    redraws.stop()
    redraws.run(every=3600.0)  # returns: the tray quit before its setup thread got here
