"""The endpoint's server does not wake its event loop while nobody calls it (uvicorn's own main loop
ticks ten times a second), and still stops at once when asked."""

from __future__ import annotations

import asyncio
import selectors
import threading
import time
from typing import Any

import httpx
import pytest

from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core, CoreThread


class RecordingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The loop's selector, noting the timeout of every wait: None means "sleep until I/O arrives"."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout)
        return super().select(timeout)


def test_an_idle_endpoint_lets_its_loop_sleep_and_stops_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    selector = RecordingSelector()
    monkeypatch.setattr(asyncio, "new_event_loop", lambda: asyncio.SelectorEventLoop(selector))
    core = Core(parse_config({"endpoint": {"port": 0}, "instances": []}), lms_path=None)  # nothing polls
    server = attach_endpoint(core)
    thread = CoreThread(core)
    thread.start()
    try:
        assert httpx.get(f"{server.url}/v1/health", timeout=30).status_code == 200
        # Once the request's connection has closed, the loop must wait for I/O with no timer at all:
        # uvicorn's 0.1 s tick would show up here as a select timeout of at most 0.1 s, every time.
        deadline = time.monotonic() + 30
        while selector.timeouts[-1] is not None:
            assert time.monotonic() < deadline, f"the idle loop keeps a timer: {selector.timeouts[-5:]}"
            time.sleep(0.05)
    finally:
        stopper = threading.Thread(target=thread.stop, daemon=True)
        stopper.start()
        stopper.join(30)
        assert not stopper.is_alive(), "the endpoint did not stop"
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/health", timeout=5)
