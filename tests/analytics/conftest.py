"""A live stack for analytics tests: emulated LM Studio, a core in its thread, the endpoint, the store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.analytics import Analytics
from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator


@dataclass
class Stack:
    core: Core
    emu: Emulator
    server: EndpointServer
    analytics: Analytics
    thread: CoreThread

    def client(self, *, token: bool = True) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.server.token}"} if token else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)

    def flushed(self, timeout: float = 20.0) -> None:
        """Wait until the writer has written everything queued so far."""
        writer = self.analytics.writer
        assert writer is not None
        deadline = time.monotonic() + timeout
        while writer.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(self.analytics.flush_interval * 2 + 0.2)  # the batch popped last is committed too
        assert writer.pending == 0


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stack_factory(emulator_factory: Any, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    threads: list[CoreThread] = []

    def make(emu_settings: dict[str, Any] | None = None, **analytics_options: Any) -> Stack:
        emu = emulator_factory(**(emu_settings or {}))
        cfg = parse_config({"instances": [{"name": "local", "url": emu.api_url}], "endpoint": {"port": 0}})
        core = Core(cfg, lms_path=None)
        analytics_options.setdefault("flush_interval", 0.1)
        # wired as lmstudio_tray.wiring wires them: the endpoint gets the analytics as its insights
        analytics = Analytics(core, path=tmp_path / "analytics.sqlite3", **analytics_options)
        server = attach_endpoint(core, insights=analytics)
        core.add_service(analytics.start, analytics.stop)
        thread = CoreThread(core)
        thread.start()
        threads.append(thread)
        return Stack(core, emu, server, analytics, thread)

    yield make
    for thread in threads:
        thread.stop()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory()
