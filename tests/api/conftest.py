"""A real endpoint (uvicorn on 127.0.0.1, port 0) over a real core monitoring an emulated LM Studio.

The core runs in its own loop thread (`CoreThread`, as in the tray), so the endpoint's handlers and the
monitor share one loop while the test talks to it over HTTP from the test's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.config.schema import Config, parse_config
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator

T = TypeVar("T")


@dataclass
class Api:
    client: httpx.AsyncClient
    core: Core
    emu: Emulator
    server: EndpointServer
    thread: CoreThread

    @property
    def url(self) -> str:
        return self.emu.api_url.rstrip("/")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def token(self) -> str:
        return self.server.token

    async def on_core(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the core's loop (where the monitor lives)."""
        return await asyncio.wrap_future(self.thread.submit(coro))

    async def refreshed(self) -> None:
        await self.on_core(self.core.monitor.get("local", max_age=0))

    async def validate(self, model: str, **extra: Any) -> dict[str, Any]:
        r = await self.client.post("/v1/validate", json={"model": model, "base_url": self.url + "/v1", **extra})
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


def make_config(emu: Emulator, **overrides: Any) -> Config:
    data: dict[str, Any] = {"instances": [{"name": "local", "url": emu.api_url}], "endpoint": {"port": 0}}
    data.update(overrides)
    return parse_config(data)


def client_for(server: EndpointServer, token: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token or server.token}"} if token != "" else {}
    # no keep-alive: the client belongs to the test's loop and is never closed across loops
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30,
                             limits=httpx.Limits(max_keepalive_connections=0))


@pytest.fixture
def api_factory(emulator_factory: Any) -> Iterator[Callable[..., Api]]:
    threads: list[CoreThread] = []

    def make(emu_settings: dict[str, Any] | None = None, **config: Any) -> Api:
        emu = emulator_factory(**(emu_settings or {}))
        core = Core(make_config(emu, **config), lms_path=None)
        server = attach_endpoint(core)
        thread = CoreThread(core)
        thread.start()
        threads.append(thread)
        return Api(client_for(server), core, emu, server, thread)

    yield make
    for thread in threads:
        thread.stop()


@pytest.fixture
def api(api_factory: Callable[..., Api]) -> Api:
    return api_factory()
