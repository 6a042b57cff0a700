"""Wiring: the `Core` object every surface holds, and `CoreThread` for GUIs that own the main thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lmstudio_tray.core.actions import Actions
from lmstudio_tray.core.client import LMStudioClient
from lmstudio_tray.core.clock import Clock, SystemClock
from lmstudio_tray.core.config import Config, InstanceConfig
from lmstudio_tray.core.eta import LoadEstimator
from lmstudio_tray.core.events import EventBus
from lmstudio_tray.core.lms import Lms, find_lms
from lmstudio_tray.core.models import StatusReport
from lmstudio_tray.core.monitor import InstanceMonitor, Monitor, is_local_url
from lmstudio_tray.core.secrets import SecretStore, open_store

log = logging.getLogger(__name__)
T = TypeVar("T")
Service = tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]


class Core:
    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        clock: Clock | None = None,
        secrets: SecretStore | None = None,
        lms_path: Path | bool | None = True,
    ) -> None:
        """`lms_path=True` finds `lms` the usual way; a Path uses that one; None/False: no `lms`."""
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.bus = EventBus()
        self._secrets = secrets
        self.lms_path: Path | None = find_lms() if lms_path is True else (lms_path or None)
        self.estimator = LoadEstimator()
        self.monitor = Monitor(
            config.instances,
            config.monitor,
            self.bus,
            self._make_client,
            clock=self.clock,
            server_control=self._can_control,
        )
        self.actions = Actions(self.monitor, self.bus, estimator=self.estimator, lms_factory=self._make_lms)
        self._services: list[Service] = []
        self._started: list[Service] = []

    @property
    def secrets(self) -> SecretStore:
        if self._secrets is None:
            self._secrets = open_store()
        return self._secrets

    def _make_client(self, cfg: InstanceConfig) -> LMStudioClient:
        try:
            token = self.secrets.get(cfg.name)
        except Exception as exc:  # a locked or broken keyring must not stop monitoring
            log.warning("could not read the API token of %s from %s: %s", cfg.name, self.secrets.backend, exc)
            token = None
        return LMStudioClient(cfg.url, token=token, timeout=cfg.timeout or self.config.monitor.request_timeout)

    def _can_control(self, cfg: InstanceConfig) -> bool:
        return self.lms_path is not None and (is_local_url(cfg.url) or bool(cfg.lms_host))

    def _make_lms(self, mon: InstanceMonitor) -> Lms | None:
        if self.lms_path is None:
            return None
        cfg = mon.config
        if is_local_url(cfg.url):
            return Lms(self.lms_path)
        if cfg.lms_host:
            return Lms(self.lms_path, host=cfg.lms_host, port=urlsplit(cfg.url).port)
        return None

    def set_token(self, instance: str, token: str | None) -> None:
        """Store (or delete) an instance's API token and use it from the next request on."""
        if token:
            self.secrets.set(instance, token)
        else:
            self.secrets.delete(instance)
        with contextlib.suppress(KeyError):
            mon = self.monitor.instance(instance)
            mon.client.token = token or None
            mon.poke()

    def add_service(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        """A surface (the endpoint, the analytics writer) that starts and stops with the core."""
        self._services.append((start, stop))

    def status(self) -> StatusReport:
        """Everything the cache knows, without asking LM Studio."""
        return StatusReport(
            instances=tuple(self.monitor.snapshots()),
            active=self.active_instance,
            profile=None,
        )

    @property
    def active_instance(self) -> str | None:
        active = self.config.active_instance
        if active and active in self.monitor.names:
            return active
        return self.monitor.names[0] if self.monitor.names else None

    async def start(self) -> None:
        await self.monitor.start()
        for service in self._services:
            await service[0]()
            self._started.append(service)

    async def stop(self) -> None:
        for _, stop in reversed(self._started):
            try:
                await stop()
            except Exception:
                log.exception("a service failed to stop cleanly")
        self._started.clear()
        await self.monitor.stop()


class CoreThread:
    """Runs a Core's asyncio loop in a daemon thread, for GUIs whose toolkit owns the main thread."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="lmstudio-tray-core", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.core.start())
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the core did not start within {timeout:.0f} s")
        if self._start_error is not None:
            raise self._start_error

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the core's thread and wait for its result."""

        async def wrapper() -> T:
            return fn()

        return self.submit(wrapper()).result()

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.submit(self.core.stop()).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
