"""A pool of emulated LM Studio servers behind a real endpoint (uvicorn on 127.0.0.1, port 0).

The core runs in its own loop thread as in the tray; tests talk to the router over HTTP like OpenCode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import keyring
import pytest

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.control.routing import Router
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator

T = TypeVar("T")
QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
NOMIC = "text-embedding-nomic-embed-text-v1.5"


@dataclass
class Pool:
    emus: dict[str, Emulator]
    core: Core
    server: EndpointServer
    thread: CoreThread

    def client(self, token: str | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token or self.server.token}"} if token != "" else {}
        return httpx.AsyncClient(base_url=self.server.url, headers=headers, timeout=30, **kw)

    def base(self, pool: str = "team") -> str:
        return f"/v1/route/{pool}/v1"

    @property
    def router(self) -> Router:
        router = self.server.router
        assert router is not None
        return router

    async def on_core(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self.thread.submit(coro))

    async def refreshed(self) -> None:
        for name in self.emus:
            await self.on_core(self.core.monitor.get(name, max_age=0))

    def served(self, name: str, path: str = "/v1/chat/completions") -> int:
        return self.emus[name].request_counts().get(f"POST {path}", 0)


def chat(model: str, text: str = "hi", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream, **extra}


@pytest.fixture
def pool_factory(emulator_factory: Any) -> Iterator[Callable[..., Pool]]:
    threads: list[CoreThread] = []

    def make(
        loaded: dict[str, list[str]],
        *,
        emu_settings: dict[str, dict[str, Any]] | None = None,
        tokens: dict[str, str] | None = None,
        poll_interval: float = 1.0,
        fast_window: float = 10.0,
        extra_pools: list[dict[str, Any]] | None = None,
    ) -> Pool:
        emus: dict[str, Emulator] = {}
        for name, models in loaded.items():
            emu = emulator_factory(**(emu_settings or {}).get(name, {}))
            for key in models:
                emu.load(key)
            emus[name] = emu
        config = parse_config({
            "instances": [{"name": n, "url": e.api_url} for n, e in emus.items()],
            "pools": [{"name": "team", "instances": list(emus)}, *(extra_pools or [])],
            "endpoint": {"port": 0},
            "monitor": {"poll_interval": poll_interval, "fast_window": fast_window},
        })
        for name, token in (tokens or {}).items():
            keyring.set_password("lmstudio-tray", name, token)  # the test's in-memory keyring
        core = Core(config, lms_path=None)
        server = attach_endpoint(core)
        thread = CoreThread(core)
        thread.start()
        threads.append(thread)
        return Pool(emus, core, server, thread)

    yield make
    for thread in threads:
        thread.stop()
