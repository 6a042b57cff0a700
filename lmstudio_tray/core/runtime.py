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

from lmstudio_tray.core.clock import Clock, SystemClock
from lmstudio_tray.core.config.loader import TeamProfiles, load_config
from lmstudio_tray.core.config.schema import Config, InstanceConfig
from lmstudio_tray.core.control.actions import Actions
from lmstudio_tray.core.control.bench_marks import Benches
from lmstudio_tray.core.control.downloads import Downloads
from lmstudio_tray.core.control.eta import LoadEstimator
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.monitor import InstanceMonitor, Monitor, is_local_url
from lmstudio_tray.core.control.server_control import ServerControl
from lmstudio_tray.core.control.team_sync import HUB_TOKEN, TeamSync
from lmstudio_tray.core.errors import ConfigError
from lmstudio_tray.core.events import EventBus
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.lmstudio.lms import Lms, find_lms
from lmstudio_tray.core.models import HubState, StatusReport
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.logs import register_secret
from lmstudio_tray.core.support.secrets import SecretStore, open_store
from lmstudio_tray.core.threads import WrongThread

log = logging.getLogger(__name__)
T = TypeVar("T")
Service = tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]
CONFIG_WATCH_SECONDS = 1.0  # how soon a running core notices `profile use` or an edited config file


class Core:
    """The core one process runs: the config in effect, the event bus, the monitor with its status cache, the actions
    and the services (surfaces) that start and stop with it.

    Surfaces hold the `Core` and read `core.config`, `core.status()`, `core.monitor` and `core.actions`; the coroutines
    run on the core's loop (its own thread under `CoreThread`).
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        clock: Clock | None = None,
        secrets: SecretStore | None = None,
        lms_path: Path | bool | None = True,
        model_uses: ModelUseLog | None = None,
        teams: TeamProfiles | None = None,
    ) -> None:
        """`lms_path=True` finds `lms` the usual way; a Path uses that one; None/False: no `lms`.
        `model_uses`: the record of recent model use (default: the state dir's file), which the actions'
        shared-instance guard reads and the endpoint's router writes. `teams`: the team profiles the load of
        `config` found (see `load_config`), so that the core does not load its team profile again.

        Construction may block (the API tokens come from the keyring, a team profile may be fetched): build
        the core before its loop runs. Once it runs, all of that happens in worker threads.
        """
        # The settings in effect: replaced as a whole by `apply_config`, never changed in place, so that a
        # reader on any thread sees one consistent config. Read `core.config.<section>` when needed.
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.bus = EventBus()
        self._secrets = secrets
        self._secrets_lock = threading.Lock()  # opened by whichever worker thread asks first
        self.lms_path: Path | None = find_lms() if lms_path is True else (lms_path or None)
        self.estimator = LoadEstimator()
        self.teams = teams if teams is not None else TeamProfiles()
        self.teams.for_config(config)  # the team profile it names, so that reading it later never fetches
        self.monitor = Monitor(
            config.instances,
            lambda: self.config.monitor,
            self.bus,
            self._make_client,
            clock=self.clock,
            server_control=lambda cfg: self._can_control(cfg, self.config),
        )
        # one record of model use: the endpoint's router writes it (`make_router`), the guard below reads it
        self.model_uses = model_uses if model_uses is not None else ModelUseLog()
        # every surface (tray, CLI, tools) gets the team's shared-instance guard and default context lengths
        self.actions = Actions(self.monitor, self.bus, estimator=self.estimator, lms_factory=self._make_lms,
                               team=self.teams.known_source(lambda: self.config), uses=self.model_uses,
                               server_control=lambda: self.config.actions.server_control,
                               fit_check=lambda: self.config.loads.fit_check)
        # the member side of the team hub (a service the composition root starts for `serve` and the tray)
        self.team_sync = TeamSync(self.teams.known_source(lambda: self.config), self.model_uses,
                                  lambda: self._read_token(HUB_TOKEN))
        # this machine's LM Studio: its server's settings and the service itself (llmster or the desktop app)
        self.server_control = ServerControl(
            lambda: Lms(self.lms_path) if self.lms_path is not None else None,
            self.bus,
            local_instances=self.local_instances,
            poke=lambda name: self.monitor.instance(name).poke(),
            enabled=lambda: self.config.actions.server_control,
        )
        self.downloads = Downloads(self.monitor, self.bus, lms_factory=self._make_lms)
        # benches of this process and, while its service runs (the tray, `serve`), of the others of this user
        self.benches = Benches(self.bus, paths.state_dir() / "benches")
        self._services: list[Service] = []
        self._started: list[Service] = []
        self._config_listeners: list[Callable[[Config], None]] = []
        self._apply_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._services_task: asyncio.Task[Any] | None = None
        self._shutdown: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False

    @property
    def secrets(self) -> SecretStore:
        """The token store; opening it probes the keyring over D-Bus (blocking: not on the loop)."""
        with self._secrets_lock:
            if self._secrets is None:
                self._secrets = open_store()
            return self._secrets

    def _read_token(self, name: str) -> str | None:
        try:
            token = self.secrets.get(name)
        except Exception as exc:  # a locked or broken keyring must not stop monitoring
            log.warning("could not read the API token of %s from %s: %s", name, self.secrets.backend, exc)
            token = None
        register_secret(token)  # whatever store it came from, it never reaches a log line
        return token

    def _make_client(self, cfg: InstanceConfig, config: Config | None = None) -> LMStudioClient:
        """A client with the instance's API token. Blocking (the keyring may take seconds over D-Bus, or ask
        to unlock): the monitor calls it in a worker thread once the loop runs."""
        timeout = _request_timeout(cfg, config or self.config)
        return LMStudioClient(cfg.url, token=self._read_token(cfg.name), timeout=timeout)

    def _can_control(self, cfg: InstanceConfig, config: Config) -> bool:
        if not config.actions.server_control:
            return False
        # `lms server start|stop` act only on this machine's LM Studio: a remote server is started over there
        return self.lms_path is not None and is_local_url(cfg.url)

    def local_instances(self) -> list[tuple[str, str]]:
        """(name, url) of the monitored instances on this machine: the ones this machine's LM Studio serves."""
        urls = ((name, self.monitor.instance(name).config.url) for name in self.monitor.names)
        return [(name, url) for name, url in urls if is_local_url(url)]

    def _make_lms(self, mon: InstanceMonitor) -> Lms | None:
        if self.lms_path is None or not is_local_url(mon.config.url):
            return None
        return Lms(self.lms_path)

    async def set_token(self, instance: str, token: str | None) -> None:
        """Store (or delete) an instance's API token and use it from the next request on."""
        await asyncio.to_thread(self._store_token, instance, token)  # the keyring: D-Bus, maybe a prompt
        self._use_token(instance, token)

    async def reload_token(self, name: str) -> bool:
        """Read `name`'s token again from the store, which another process changed (`lmstudio-tray token set`), and
        use it from the next request on; False when nothing here uses a token of that name."""
        token = await asyncio.to_thread(self._read_token, name)  # the keyring: D-Bus, maybe a prompt
        return self._use_token(name, token)

    def _use_token(self, name: str, token: str | None) -> bool:
        used = False
        if name == HUB_TOKEN:
            self.team_sync.forget_token()  # it keeps the token it read until told, or until the hub refuses it
            used = True
        with contextlib.suppress(KeyError):
            mon = self.monitor.instance(name)
            mon.client.use_token(token or None)
            mon.poke()
            used = True
        return used

    def _store_token(self, instance: str, token: str | None) -> None:
        if token:
            self.secrets.set(instance, token)
        else:
            self.secrets.delete(instance)

    def add_service(self, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
        """A surface (the endpoint, the analytics writer) that starts and stops with the core.

        Services start in the order they were added and stop in reverse; when one fails to start, those
        already started are stopped again. A `start` that raises must leave nothing held behind itself.
        """
        self._services.append((start, stop))

    def status(self) -> StatusReport:
        """Everything the cache knows, without asking LM Studio."""
        return StatusReport(
            instances=tuple(self.monitor.snapshots()),
            active=self.active_instance,
            profile=self.config.active_profile,
            downloads=self.downloads.active(),
            team_hub=self.team_sync.status if self.team_sync.status.state is not HubState.OFF else None,
            benches=self.benches.active(),
        )

    @property
    def active_instance(self) -> str | None:
        """The instance commands act on by default: the config's `active_instance` when it is monitored, else the first
        monitored one, None when nothing is."""
        active = self.config.active_instance
        if active and active in self.monitor.names:
            return active
        return self.monitor.names[0] if self.monitor.names else None

    # ---- settings changes without a restart ----------------------------------------------------

    def on_config_change(self, listener: Callable[[Config], None]) -> Callable[[], None]:
        """Call `listener(config)` (on the core's loop) after new settings were applied."""
        self._config_listeners.append(listener)
        return lambda: self._config_listeners.remove(listener) if listener in self._config_listeners else None

    async def apply_config(self, new: Config) -> list[str]:
        """Switch to `new` (an effective config, e.g. after `profile use`) while running.

        Instance monitors are added, removed or rebuilt as the instance list changed; then `new` replaces
        the config in one assignment, so whoever reads `core.config` (the endpoint's validation policy, the
        monitors' poll settings, the router's pools) sees either the old settings or the new ones, never a
        mix. Listeners (`on_config_change`) get the new config afterwards. Returns what changed, in words.
        """
        async with self._apply_lock:
            old = self.config
            if new == old or self._stopping:
                return []
            # the team profile it names may have to be fetched: not on the loop (validate must keep answering)
            await asyncio.to_thread(self.teams.for_config, new)
            changes = await self._switch_monitors(old, new)
            self.config = new  # the switch itself: status shows the new profile once its instances are watched
            for name in self.monitor.names:
                self.monitor.instance(name).poke()  # new intervals and timeouts apply now, not after the old sleep
            changes.append("settings applied")
            if old.endpoint != new.endpoint:
                changes.append("the [endpoint] change takes effect after a restart")
        log.info("config: %s", "; ".join(changes))
        for listener in list(self._config_listeners):
            try:
                listener(new)
            except Exception:
                log.exception("a config listener failed")
        return changes

    async def _switch_monitors(self, old: Config, new: Config) -> list[str]:
        """Watch the instances of `new`: changed ones are rebuilt, new ones polled once before this returns."""
        old_clients = _client_settings(old)
        new_clients = _client_settings(new)
        changes: list[str] = []
        if old.active_profile != new.active_profile:
            changes.append(f"profile {old.active_profile or '(none)'} -> {new.active_profile or '(none)'}")
        added = [cfg for name, (cfg, timeout) in new_clients.items() if old_clients.get(name) != (cfg, timeout)]
        # Each new client needs its API token from the keyring (D-Bus, maybe an unlock prompt): in worker
        # threads, all at once, and before anything changes, so that the old instances are watched meanwhile.
        clients = await asyncio.gather(*(asyncio.to_thread(self._make_client, cfg, new) for cfg in added))
        for name, settings in old_clients.items():
            if new_clients.get(name) != settings:
                await self.monitor.remove_instance(name)
                changes.append(f"stopped watching {name}")
        for cfg, client in zip(added, clients, strict=True):
            if cfg.name in self.monitor.names:  # an ad-hoc instance now configured under its name
                await self.monitor.remove_instance(cfg.name)
            self.monitor.add_instance(cfg, client)
            changes.append(f"watching {cfg.name} ({cfg.url})")
        for name in self.monitor.names:
            mon = self.monitor.instance(name)
            mon.can_control_server = self._can_control(mon.config, new)
        # Fresh snapshots of new instances before anyone is told, so the first answer is real.
        await asyncio.gather(*(self.monitor.instance(cfg.name).refresh() for cfg in added), return_exceptions=True)
        return changes

    async def reload_config(self) -> list[str]:
        """Re-read the config file and apply it; a bad file is reported and the running settings stay."""
        if self.config_path is None:
            return []
        try:
            # a file of any size, and the team profile it names (HTTPS, 3 s timeout): off the loop
            new = await asyncio.to_thread(load_config, self.config_path, self.teams)
        except ConfigError as exc:
            log.warning("the config file changed but has problems, so the running settings stay: %s", exc)
            return []
        return await self.apply_config(new)

    async def _watch_config(self, path: Path, last: tuple[int, int, int] | None) -> None:
        while True:
            await asyncio.sleep(CONFIG_WATCH_SECONDS)
            current = _file_signature(path)
            if current == last:
                continue
            last = current
            try:
                await self.reload_config()
            except Exception:
                log.exception("applying the changed config failed")

    async def start(self, *, defer_services: bool = False) -> None:
        """Watch the instances (the first poll done), then start the services.

        `defer_services`: leave the services (the endpoint, analytics) to a later `start_services()`. The
        tray shows its icon first: loading the web stack meanwhile would hold the GIL it needs.
        A service that fails to start raises here, after the ones started before it were stopped again.
        """
        self._stopping = self._stopped = False
        self._shutdown = None
        await self.monitor.start()
        if self.config_path is not None and self._watcher is None:
            # the file as it is now (the task itself starts later, after changes it must not miss)
            self._watcher = asyncio.ensure_future(
                self._watch_config(self.config_path, _file_signature(self.config_path))
            )
        if not defer_services:
            await self._start_services()

    async def _start_services(self) -> None:
        for service in self._services:
            if service in self._started or self._stopped:
                continue
            try:
                await service[0]()
            except BaseException:
                # all or nothing: no endpoint lock, port or writer stays held for a core that did not start
                await self._stop_services()
                raise
            self._started.append(service)

    async def start_services(self) -> None:
        """Start the services a `start(defer_services=True)` left out; a failure is logged (and every
        service stopped again), not raised: the tray's icon and notifications go on without them."""
        self._services_task = asyncio.current_task()
        try:
            await self._start_services()
        except Exception:
            log.exception("a service failed to start, so the endpoint and analytics are off")
        finally:
            self._services_task = None

    async def _stop_services(self) -> None:
        while self._started:
            _, stop = self._started.pop()
            try:
                await stop()
            except Exception:
                log.exception("a service failed to stop cleanly")

    async def stop(self) -> None:
        """Stop the services, the config watcher and the monitors.

        The cleanup runs to its end even when the task calling this is cancelled meanwhile (ports, locks
        and the discovery file must not stay behind); the cancellation is raised once it is done.
        """
        self._stopped = True
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._stop(asyncio.current_task()))
        shutdown = self._shutdown
        cancelled = False
        while True:
            try:
                await asyncio.shield(shutdown)
                break
            except asyncio.CancelledError:
                if shutdown.done():
                    raise  # the cleanup itself was cancelled (its loop is closing)
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _stop(self, caller: asyncio.Task[Any] | None) -> None:
        starting = self._services_task
        if starting is not None and starting is not caller:
            # let the starts in flight finish, so that each started service is also stopped
            await asyncio.gather(asyncio.shield(starting), return_exceptions=True)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        await self._stop_services()
        # no settings switch may add a monitor behind the stop's back
        async with self._apply_lock:
            self._stopping = True
            await self.downloads.aclose()  # `lms get` runs stop; REST downloads go on inside LM Studio
            await self.server_control.aclose()
            await self.monitor.stop()


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    # The save API replaces the file (new inode); editors may rewrite it in place (new mtime/size).
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _request_timeout(cfg: InstanceConfig, config: Config) -> float:
    return cfg.timeout or config.monitor.request_timeout


def _client_settings(config: Config) -> dict[str, tuple[InstanceConfig, float]]:
    """What a monitor's client is built from, per enabled instance: a change means a new client."""
    return {i.name: (i, _request_timeout(i, config)) for i in config.instances if i.enabled}


class CoreThread:
    """Runs a Core's asyncio loop in a daemon thread, for GUIs whose toolkit owns the main thread."""

    def __init__(self, core: Core, *, defer_services: bool = False) -> None:
        """`defer_services`: start them later with `submit(core.start_services())` (see `Core.start`)."""
        self.core = core
        self.defer_services = defer_services
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="lmstudio-tray-core", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.core.start(defer_services=self.defer_services))
        except BaseException as exc:
            self._start_error = exc
            with contextlib.suppress(Exception):  # the monitors polled already: stop them too
                self.loop.run_until_complete(self.core.stop())
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self._close_loop()

    def _close_loop(self) -> None:
        # End the loop the way asyncio.run does: work still pending (a surface's task, a stop that timed out) is
        # cancelled and awaited here rather than destroyed with the loop later, which leaves its child processes
        # and their pipes to a closed loop.
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self, timeout: float = 15.0) -> None:
        """Start the loop thread and wait until the core has started (its first poll done). Raises TimeoutError after
        `timeout` s, or what the core's start raised (the core is stopped again then)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the core did not start within {timeout:.0f} s")
        if self._start_error is not None:
            raise self._start_error

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the core's loop from any thread (never waiting): how a surface's thread hands work
        to the core; the future gives its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def _not_on_core_thread(self, what: str) -> None:
        if threading.get_ident() == self._thread.ident:
            raise WrongThread(f"{what} waits for the core's loop and was called on it: it would wait for "
                              "itself; on the loop, await the coroutine instead")

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the core's thread and wait for its result (from another thread only:
        `WrongThread` on the core's own)."""
        self._not_on_core_thread("CoreThread.call")

        async def wrapper() -> T:
            return fn()

        return self.submit(wrapper()).result()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the core (waiting up to `timeout` s for it), then the loop and the thread; nothing happens when the
        thread is not running. From another thread only (`WrongThread` on the core's own)."""
        if not self._thread.is_alive():
            return
        self._not_on_core_thread("CoreThread.stop")
        with contextlib.suppress(Exception):
            self.submit(self.core.stop()).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
