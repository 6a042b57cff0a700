"""`Core.start(defer_services=True)` + `start_services()`: the tray shows its icon before the endpoint and
analytics load; every service still starts once and is stopped, even when a stop comes mid-start."""

from __future__ import annotations

import asyncio

import pytest

from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core


class Recorder:
    def __init__(self, core: Core, name: str, delay: float = 0.0) -> None:
        self.name, self.delay = name, delay
        self.log: list[str] = []
        core.add_service(self.start, self.stop)

    async def start(self) -> None:
        self.log.append("starting")
        await asyncio.sleep(self.delay)
        self.log.append("started")

    async def stop(self) -> None:
        self.log.append("stopped")


def make_core() -> Core:
    return Core(parse_config({}), lms_path=None)


def test_deferred_services_start_only_when_asked_and_only_once() -> None:
    async def scenario() -> None:
        core = make_core()
        endpoint, analytics = Recorder(core, "endpoint"), Recorder(core, "analytics")
        await core.start(defer_services=True)
        assert endpoint.log == [] and analytics.log == []
        await core.start_services()
        await core.start_services()  # a second call (headless fallback after a tray failure) is harmless
        assert endpoint.log == ["starting", "started"] and analytics.log == ["starting", "started"]
        await core.stop()
        assert endpoint.log[-1] == "stopped" and analytics.log[-1] == "stopped"

    asyncio.run(scenario())


def test_a_stop_during_the_start_waits_for_it_and_stops_what_started() -> None:
    async def scenario() -> None:
        core = make_core()
        slow = Recorder(core, "endpoint", delay=0.3)
        after = Recorder(core, "analytics")
        await core.start(defer_services=True)
        starting = asyncio.ensure_future(core.start_services())
        await asyncio.sleep(0.05)  # the slow start is in flight
        await core.stop()
        assert slow.log == ["starting", "started", "stopped"]
        # nothing starts after the stop began
        assert after.log == []
        await starting
        await core.start_services()
        assert after.log == []

    asyncio.run(scenario())


def test_a_failing_service_is_logged_and_the_core_keeps_running(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        core = make_core()

        async def broken() -> None:
            raise RuntimeError("port taken")

        async def nothing() -> None:
            return None

        core.add_service(broken, nothing)
        await core.start(defer_services=True)
        await core.start_services()  # does not raise
        assert core.status() is not None
        await core.stop()

    asyncio.run(scenario())
    assert "a service failed to start" in caplog.text
