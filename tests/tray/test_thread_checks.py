"""The tray's side of the threading model, checked by the code: the redraw (reading the status, building
the menu, drawing) never runs on the core's event loop; a bus subscriber only marks the tray dirty."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest

from lmstudio_tray.core.events import EventBus, StateChanged
from lmstudio_tray.core.threads import WrongThread
from lmstudio_tray.tray.presenter import TrayPresenter

from .factories import ready, report
from .test_presenter import FakeActions, LoopThread


def presenter() -> tuple[TrayPresenter, mock.Mock, mock.Mock]:
    view, status = mock.Mock(), mock.Mock(return_value=report(ready()))
    p = TrayPresenter(view, status=status, actions=FakeActions(), submit=LoopThread().submit, reporter=mock.Mock())
    return p, view, status


def test_a_redraw_on_the_core_loop_is_refused_before_it_reads_or_draws_anything() -> None:
    p, view, status = presenter()

    async def on_the_loop() -> None:
        p.refresh()

    with pytest.raises(WrongThread, match="tray's redraw must not run on the core's event loop"):
        asyncio.run(on_the_loop())
    status.assert_not_called()
    assert not view.method_calls


def test_the_redraw_runs_on_the_trays_thread_and_a_subscriber_on_the_loop_only_marks_it_dirty() -> None:
    p, view, status = presenter()
    p.refresh()  # the tray's side: no loop runs on this thread
    assert status.call_count == 1 and view.set_menu.called
    bus = EventBus()
    bus.subscribe(p.on_event, *p.EVENTS)

    async def publish() -> None:
        bus.publish(StateChanged("local", old="idle", new="ready"))

    asyncio.run(publish())  # on a loop, as the core publishes: no WrongThread, nothing read or drawn
    assert status.call_count == 1
