"""`CoreThread`'s side of the threading model: a surface hands work to the core's loop and may wait for
it, but the loop itself must never wait for itself (it would hang forever): that is refused at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.core.threads import WrongThread, not_on_event_loop, on_event_loop


@pytest.fixture
def core_thread() -> Iterator[CoreThread]:
    thread = CoreThread(Core(parse_config({"instances": []}), lms_path=None))
    thread.start()
    yield thread
    thread.stop()


def test_a_surface_thread_waits_for_the_core_loop(core_thread: CoreThread) -> None:
    assert core_thread.call(threading.get_ident) == core_thread._thread.ident
    assert core_thread.call(on_event_loop) is True
    assert on_event_loop() is False


def test_the_core_loop_waiting_for_itself_is_refused(core_thread: CoreThread) -> None:
    async def waits_for_itself() -> str:
        return core_thread.call(lambda: "never")

    with pytest.raises(WrongThread, match="would wait for itself"):
        core_thread.submit(waits_for_itself()).result(timeout=30)  # before the check: a hung loop

    async def stops_itself() -> None:
        core_thread.stop()

    with pytest.raises(WrongThread, match=r"CoreThread\.stop"):
        core_thread.submit(stops_itself()).result(timeout=30)
    assert core_thread.call(lambda: "still serving") == "still serving"


def test_blocking_work_is_refused_on_a_loop_and_allowed_off_it() -> None:
    not_on_event_loop("reading a file")  # no loop here

    async def on_the_loop() -> None:
        not_on_event_loop("reading a file")

    with pytest.raises(WrongThread, match="reading a file must not run on the core's event loop"):
        asyncio.run(on_the_loop())

    async def in_a_worker() -> None:
        await asyncio.to_thread(not_on_event_loop, "reading a file")

    asyncio.run(in_a_worker())
