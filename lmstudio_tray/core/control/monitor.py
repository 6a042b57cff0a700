"""Instance monitor: one poll loop and state machine per LM Studio instance, and the status cache.

Each `InstanceMonitor` polls its server, turns the answer into an `InstanceSnapshot`, diffs it against
the previous one and publishes typed events. Polling is adaptive: fast while something changes or
loads, the normal interval when stable, exponential backoff while offline. The latest snapshot is the
status cache that validate requests, the tray and `status` read without touching LM Studio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from lmstudio_tray.core.clock import Clock, SystemClock
from lmstudio_tray.core.config.schema import InstanceConfig, MonitorConfig, normalize_url
from lmstudio_tray.core.errors import LMStudioError
from lmstudio_tray.core.events import (
    AuthFailed,
    EventBus,
    InstanceError,
    InstanceOffline,
    InstanceOnline,
    LoadProgressed,
    ModelLoaded,
    ModelUnloaded,
    StateChanged,
)
from lmstudio_tray.core.lmstudio.client import Listing, LMStudioClient
from lmstudio_tray.core.models import (
    ApiFlavor,
    FailureKind,
    InstanceSnapshot,
    InstanceState,
    LoadProgress,
    ModelInfo,
)
from lmstudio_tray.core.support.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Builds an instance's client with its API token: may block (the keyring), so a running monitor calls it
# in a worker thread.
ClientFactory = Callable[[InstanceConfig], LMStudioClient]
Settings = Callable[[], MonitorConfig]  # the poll settings in effect now (they change with the config)
_STATE_BY_FAILURE = {
    FailureKind.OFFLINE: InstanceState.OFFLINE,
    FailureKind.AUTH_FAILED: InstanceState.AUTH_FAILED,
    FailureKind.SERVER_ERROR: InstanceState.ERROR,
    FailureKind.BAD_RESPONSE: InstanceState.ERROR,
}


@dataclass
class CacheStats:
    """How the status cache did: reads it answered (hits) and reads that polled instead (misses; each one a refresh)."""

    hits: int = 0
    misses: int = 0
    refreshes: int = 0

    def to_json(self) -> dict[str, int]:
        """The counters as JSON data (`/v1/metrics`)."""
        return {"hits": self.hits, "misses": self.misses, "refreshes": self.refreshes}


def is_local_url(url: str) -> bool:
    """Whether `url`'s host is this machine (localhost, ::1, 127.x.x.x): where `lms` runs the server itself."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


class InstanceMonitor:
    """One watched LM Studio instance: its poll loop, its latest snapshot (the status cache entry) and the events its
    changes publish.

    It runs on the core's loop. The snapshot `snapshot()` returns is replaced on each change and never changed in
    place, so any thread may read it.
    """

    def __init__(
        self,
        config: InstanceConfig,
        client: LMStudioClient,
        bus: EventBus,
        clock: Clock,
        settings: Settings,
        *,
        can_control_server: bool = False,
    ) -> None:
        self.config = config
        self.client = client
        self.bus = bus
        self.clock = clock
        self._settings = settings
        self.can_control_server = can_control_server
        self._snapshot: InstanceSnapshot | None = None
        self.snapshot_at: float | None = None  # monotonic time of the poll behind `snapshot()`
        self.stale = True
        self._known_models: tuple[ModelInfo, ...] | None = None  # kept across offline spells for diffing
        self._last_change: float | None = None
        self._offline_streak = 0
        self._jit: bool | None = None
        self._jit_checked_at: float | None = None
        self._expected: dict[str, LoadProgress] = {}
        self._expected_deadline: dict[str, float] = {}
        self._owned: set[str] = set()  # loads an action drives: only the action ends them
        self._refreshing: asyncio.Task[InstanceSnapshot] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """The instance's name, from its config."""
        return self.config.name

    def snapshot(self) -> InstanceSnapshot | None:
        """The latest snapshot (None before the first poll), without I/O: as `Monitor.snapshot(name)`."""
        return self._snapshot

    def fresh_snapshot(self, max_age: float) -> InstanceSnapshot | None:
        """The latest snapshot if it is at most `max_age` seconds old and nothing invalidated it, else None."""
        snap, at = self._snapshot, self.snapshot_at
        if snap is None or self.stale or at is None or self.clock.monotonic() - at > max_age:
            return None
        return snap

    @property
    def settings(self) -> MonitorConfig:
        """The `[monitor]` settings in effect now (they change with the config)."""
        return self._settings()

    # ---- expected loads (the only source of `loading`: LM Studio lists no loading state) ----------

    def expect_load(
        self, model: str, *, eta_seconds: float | None, deadline: float | None = None, owned: bool = False
    ) -> None:
        """Show `model` as loading (LM Studio lists no loading state) with `eta_seconds`, and poll fast meanwhile.

        The load ends with `end_load`, or, unless `owned` (an action runs it and ends it), when the model shows up
        loaded or `deadline` (monotonic; default three times the ETA, at least 30 s) passes.
        """
        now = self.clock.monotonic()
        if owned:
            self._owned.add(model)
        self._expected[model] = LoadProgress(
            model=model, started_at=self.clock.wall(), progress=0.0, eta_seconds=eta_seconds, estimated=True
        )
        grace = max(30.0, (eta_seconds or 30.0) * 3)
        self._expected_deadline[model] = deadline if deadline is not None else now + grace
        self._publish_loads_changed()
        self.poke()

    def expects(self, model: str) -> bool:
        """Whether a load of `model` is expected (shown as loading) now."""
        return model in self._expected

    def update_load(self, model: str, *, progress: float | None, eta_seconds: float | None, estimated: bool) -> None:
        """New progress of an expected load: the snapshot shows it and `LoadProgressed` is published. Ignored when no
        load of `model` is expected."""
        current = self._expected.get(model)
        if current is None:
            return
        self._expected[model] = replace(current, progress=progress, eta_seconds=eta_seconds, estimated=estimated)
        self._publish_loads_changed()
        self.bus.publish(LoadProgressed(self.name, model=model, progress=progress, eta_seconds=eta_seconds,
                                       estimated=estimated))

    def end_load(self, model: str) -> None:
        """The load of `model` is over (done, failed or given up): drop it from the snapshot and poll at once."""
        self._owned.discard(model)
        if self._expected.pop(model, None) is not None:
            self._expected_deadline.pop(model, None)
            self._publish_loads_changed()
            self.poke()

    def _publish_loads_changed(self) -> None:
        if self._snapshot is None:
            return
        loads = tuple(self._expected.values())
        state = self._snapshot.state
        if state in (InstanceState.IDLE, InstanceState.READY, InstanceState.LOADING):
            state = self._healthy_state(self._snapshot.models)
        self._set_snapshot(replace(self._snapshot, loads=loads, state=state), keep_time=True)

    def _healthy_state(self, models: tuple[ModelInfo, ...]) -> InstanceState:
        if self._expected:
            return InstanceState.LOADING
        return InstanceState.READY if any(m.loaded for m in models) else InstanceState.IDLE

    # ---- polling ----------------------------------------------------------------------------------

    async def refresh(self) -> InstanceSnapshot:
        """Poll now. Concurrent callers share one request (single-flight)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> InstanceSnapshot:
        started = time.perf_counter()
        listing: Listing | None = None
        error: LMStudioError | None = None
        for attempt in range(self.settings.retries + 1):
            try:
                listing = await self.client.list_models()
                error = None
                break
            except LMStudioError as exc:
                error = exc
                # Auth does not heal by retrying; a refused port answers at once, so one quick retry
                # rides out a restart without costing the caller noticeable time.
                if exc.kind is FailureKind.AUTH_FAILED or attempt == self.settings.retries:
                    break
                await asyncio.sleep(0.05)
            except Exception as exc:  # never let a client bug kill the poll loop
                log.exception("unexpected error polling %s", self.name)
                error = LMStudioError(FailureKind.BAD_RESPONSE, f"unexpected error: {exc}")
                break
        latency = (time.perf_counter() - started) * 1000.0
        if listing is not None:
            await self._maybe_check_jit(listing)
        self._expire_expected(listing)
        snap = self._build(listing, error, latency)
        old = self._snapshot
        # the new snapshot first: a subscriber that reads the status on an event (the tray) sees it
        self._set_snapshot(snap)
        self._publish_diff(old, snap)
        return snap

    def _set_snapshot(self, snap: InstanceSnapshot, *, keep_time: bool = False) -> None:
        self._snapshot = snap
        if not keep_time or self.snapshot_at is None:
            self.snapshot_at = self.clock.monotonic()
            self.stale = False

    async def _maybe_check_jit(self, listing: Listing) -> None:
        if listing.jit is not None:
            self._jit = listing.jit
            self._jit_checked_at = self.clock.monotonic()
            return
        now = self.clock.monotonic()
        due = self._jit_checked_at is None or now - self._jit_checked_at >= self.settings.jit_check_interval
        if not due or listing.api is ApiFlavor.OPENAI:
            return
        self._jit_checked_at = now
        try:
            ids = set(await self.client.openai_model_ids())
        except LMStudioError:
            return
        loaded = {i.id for m in listing.models for i in m.instances}
        downloaded = {m.key for m in listing.models}
        # JIT on: /v1/models lists downloaded models that are not loaded. With everything loaded the
        # two settings look the same, so the previous answer stands.
        if (downloaded - loaded) & ids:
            self._jit = True
        elif downloaded - loaded:
            self._jit = False

    def _expire_expected(self, listing: Listing | None) -> None:
        now = self.clock.monotonic()
        loaded_keys = {m.key for m in listing.models if m.loaded} if listing else set()
        for model in list(self._expected):
            # An expected JIT load ends when the model shows up; a load we run ends in the action.
            if (model in loaded_keys and model not in self._owned) or now > self._expected_deadline.get(model, now):
                self._expected.pop(model, None)
                self._expected_deadline.pop(model, None)


    def _build(self, listing: Listing | None, error: LMStudioError | None, latency: float) -> InstanceSnapshot:
        base = InstanceSnapshot(
            name=self.name,
            url=self.config.url,
            state=InstanceState.OFFLINE,
            updated_at=self.clock.wall(),
            latency_ms=latency,
            remote=not is_local_url(self.config.url),
            can_control_server=self.can_control_server,
            jit=self._jit,
            loads=tuple(self._expected.values()),
        )
        if listing is None:
            assert error is not None
            return replace(
                base,
                state=_STATE_BY_FAILURE[error.kind],
                failure=error.kind,
                error=error.message,
                api=self.client.api,
                # keep what we knew so menus and suggestions still make sense while the server is away
                models=self._known_models or (),
                loads=() if error.kind is FailureKind.OFFLINE else base.loads,
            )
        return replace(base, state=self._healthy_state(listing.models), models=listing.models, api=listing.api)

    def _publish_diff(self, old: InstanceSnapshot | None, new: InstanceSnapshot) -> None:
        name, url = self.name, self.config.url
        old_state = old.state if old else None
        if old_state is not new.state:
            self._last_change = self.clock.monotonic()
            if new.state is InstanceState.OFFLINE:
                self._offline_streak = 0
            self.bus.publish(StateChanged(name, old=old_state.value if old_state else None, new=new.state.value))
            if new.state is InstanceState.OFFLINE and old_state is not None:
                self.bus.publish(InstanceOffline(name, url=url, reason=new.error or ""))
            elif new.state is InstanceState.AUTH_FAILED:
                self.bus.publish(AuthFailed(name, url=url, reason=new.error or ""))
            elif new.state is InstanceState.ERROR:
                self.bus.publish(InstanceError(name, reason=new.error or ""))
            if old_state in (InstanceState.OFFLINE, InstanceState.AUTH_FAILED, InstanceState.ERROR) and new.state in (
                InstanceState.IDLE,
                InstanceState.READY,
                InstanceState.LOADING,
            ):
                self.bus.publish(InstanceOnline(name, url=url))
        if new.failure is not None:
            if new.state is InstanceState.OFFLINE:
                self._offline_streak += 1
            return
        self._offline_streak = 0
        previous = self._known_models
        self._known_models = new.models
        if previous is None:
            return
        before = {i.id: (m, i) for m in previous for i in m.instances}
        after = {i.id: (m, i) for m in new.models for i in m.instances}
        for iid in after.keys() - before.keys():
            m, inst = after[iid]
            self._last_change = self.clock.monotonic()
            self.bus.publish(ModelLoaded(name, model=m.key, instance_id=iid, context_length=inst.context_length))
        for iid in before.keys() - after.keys():
            m, _ = before[iid]
            self._last_change = self.clock.monotonic()
            self.bus.publish(ModelUnloaded(name, model=m.key, instance_id=iid))

    def next_delay(self) -> float:
        """Seconds until the next poll: doubling from `poll_interval` up to `offline_backoff_max` while offline;
        `fast_poll_interval` while a load is expected or within `fast_window` of the last change; `poll_interval`
        otherwise."""
        s = self.settings
        snap = self._snapshot
        if snap is not None and snap.state is InstanceState.OFFLINE:
            return float(min(s.offline_backoff_max, s.poll_interval * (2 ** max(0, self._offline_streak - 1))))
        if self._expected:
            return s.fast_poll_interval
        if self._last_change is not None and self.clock.monotonic() - self._last_change < s.fast_window:
            return s.fast_poll_interval
        return s.poll_interval

    def poke(self) -> None:
        """Poll as soon as possible (after an action, or when a hook reports an error)."""
        self.stale = True
        self._wake.set()

    async def run(self) -> None:
        """The poll loop: sleep `next_delay()` (or until `poke`), poll, repeat. An error in one poll is logged and the
        loop goes on; it ends only when cancelled."""
        while True:
            # the warm-up already polled once: wait first, so a start costs one request, not two
            if self._snapshot is not None and not self._wake.is_set():
                await self._sleep_or_wake(self.next_delay())
            self._wake.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any bug in one poll
                log.exception("poll of %s failed", self.name)

    async def _sleep_or_wake(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            # Not `suppress(CancelledError): await task`: that also swallows a cancel of *this* task
            # arriving meanwhile (stop() right after a poke), and the poll loop would never end.
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    def start(self) -> None:
        """Start the poll loop as a task on the running loop; nothing happens while it runs already."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """Cancel the poll loop and any poll in flight, then close the client's connections."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refreshing
        await self.client.aclose()


MAX_AD_HOC = 8  # unknown base URLs monitored at once; the least recently asked-for is dropped first


class Monitor:
    """All instances, and the status cache in front of them."""

    def __init__(
        self,
        instances: list[InstanceConfig],
        settings: Settings,
        bus: EventBus,
        client_factory: ClientFactory,
        *,
        clock: Clock | None = None,
        server_control: Callable[[InstanceConfig], bool] | None = None,
    ) -> None:
        """Clients for `instances` are built here, on the caller's thread (before the loop runs)."""
        self._settings = settings
        self.bus = bus
        self.clock = clock or SystemClock()
        self._client_factory = client_factory
        self._server_control = server_control or (lambda _cfg: False)
        # Replaced, never changed in place: the tray's thread reads it (Core.status) while the loop adds and removes
        # instances, and iterating a dict that changes size raises.
        self._monitors: dict[str, InstanceMonitor] = {}
        self._ad_hoc: OrderedDict[str, None] = OrderedDict()  # least recently asked-for first
        self._adding: dict[str, asyncio.Future[str]] = {}  # ad-hoc instances whose client is being built
        self.stats = CacheStats()
        self._running = False
        for cfg in instances:
            if cfg.enabled:
                self._add(cfg, client_factory(cfg))

    @property
    def settings(self) -> MonitorConfig:
        """The `[monitor]` settings in effect now (they change with the config)."""
        return self._settings()

    def _add(self, cfg: InstanceConfig, client: LMStudioClient) -> InstanceMonitor:
        mon = InstanceMonitor(
            cfg,
            client,
            self.bus,
            self.clock,
            self._settings,
            can_control_server=self._server_control(cfg),
        )
        self._monitors = {**self._monitors, cfg.name: mon}
        if self._running:
            mon.start()
        return mon

    # ---- lookup -----------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """The monitored instances' names, in the order they were added."""
        return list(self._monitors)

    def instance(self, name: str) -> InstanceMonitor:
        """The `InstanceMonitor` of `name`; KeyError naming the monitored instances when there is none."""
        try:
            return self._monitors[name]
        except KeyError:
            known = ", ".join(self._monitors) or "none"
            raise KeyError(f"no monitored instance named {name!r} (monitored: {known})") from None

    def instance_for_url(self, url: str) -> str | None:
        """The monitored instance whose base URL is `url` (normalised; `localhost` and 127.0.0.1 count as the same
        host), or None, also for a URL that is not http(s)."""
        try:
            wanted = normalize_url(url)
        except ValueError:
            return None
        for name, mon in self._monitors.items():
            if mon.config.url == wanted:
                return name
        wanted_parts = urlsplit(wanted)
        for name, mon in self._monitors.items():
            parts = urlsplit(mon.config.url)
            # localhost and 127.0.0.1 are the same server to a person
            if (
                parts.port == wanted_parts.port
                and is_local_url(mon.config.url)
                and is_local_url(wanted)
                and parts.scheme == wanted_parts.scheme
            ):
                return name
        return None

    async def ensure_instance(self, url: str) -> str:
        """The instance serving `url`; an unknown URL becomes an ad-hoc monitored instance."""
        existing = self.instance_for_url(url)
        if existing is not None:
            if existing in self._ad_hoc:
                self._ad_hoc.move_to_end(existing)
            return existing
        normalized = normalize_url(url)
        pending = self._adding.get(normalized)
        if pending is None:  # concurrent requests for one new URL share one instance
            pending = self._adding[normalized] = asyncio.ensure_future(self._add_ad_hoc(normalized))
            pending.add_done_callback(lambda f: self._added(normalized, f))
        return await asyncio.shield(pending)

    def _added(self, url: str, future: asyncio.Future[str]) -> None:
        self._adding.pop(url, None)
        if not future.cancelled():
            future.exception()  # retrieved: the callers that waited got it, and one that gave up needs no log

    async def _add_ad_hoc(self, normalized: str) -> str:
        parts = urlsplit(normalized)
        base = f"{parts.hostname}-{parts.port or 80}".replace(":", "-")
        cfg = InstanceConfig(name=self._free_name(base), url=normalized)
        # its API token may be in the keyring (D-Bus, maybe an unlock prompt): not on the loop
        client = await asyncio.to_thread(self._client_factory, cfg)
        existing = self.instance_for_url(normalized)  # added meanwhile (localhost and 127.0.0.1 are one)
        if existing is not None:
            await client.aclose()
            return existing
        if cfg.name in self._monitors:  # the name was taken meanwhile
            cfg = InstanceConfig(name=self._free_name(base), url=normalized)
        # Each ad-hoc instance is polled for as long as the tray runs: a plugin (or anything holding the
        # token) naming ever new base URLs must not grow that without bound.
        while len(self._ad_hoc) >= MAX_AD_HOC:
            oldest = next(iter(self._ad_hoc))
            log.info("no longer monitoring ad-hoc instance %r: more than %d unknown URLs were asked for; "
                     "add the ones you use to the config", oldest, MAX_AD_HOC)
            await self.remove_instance(oldest)
        mon = self._add(cfg, client)
        self._ad_hoc[cfg.name] = None
        log.info("monitoring %s as ad-hoc instance %r", normalized, cfg.name)
        await mon.refresh()
        return cfg.name

    def _free_name(self, base: str) -> str:
        name, n = base, 2
        while name in self._monitors:
            name, n = f"{base}-{n}", n + 1
        return name

    def is_ad_hoc(self, name: str) -> bool:
        """Monitored because a request named its URL, not because the config lists it."""
        return name in self._ad_hoc

    def add_instance(self, cfg: InstanceConfig, client: LMStudioClient) -> None:
        """Watch `cfg` with `client` (built by the caller off the loop: it holds the API token)."""
        if cfg.name in self._monitors:
            raise ValueError(f"instance {cfg.name!r} is already monitored")
        self._add(cfg, client)

    async def remove_instance(self, name: str) -> None:
        """Stop watching `name` (its poll loop stopped, its client closed); an unknown name is ignored."""
        self._ad_hoc.pop(name, None)
        mon = self._monitors.get(name)
        self._monitors = {k: v for k, v in self._monitors.items() if k != name}
        if mon is not None:
            await mon.stop()

    # ---- cache ------------------------------------------------------------------------------------

    def snapshot(self, name: str) -> InstanceSnapshot | None:
        """The cached snapshot of `name`, without I/O; None before its first poll or for an unknown name."""
        mon = self._monitors.get(name)
        return mon.snapshot() if mon else None

    def snapshots(self) -> list[InstanceSnapshot]:
        """The cached snapshot of every instance polled at least once, without I/O."""
        return [snap for m in self._monitors.values() if (snap := m.snapshot()) is not None]

    async def get(self, name: str, *, max_age: float | None = None) -> InstanceSnapshot:
        """The cached snapshot when fresh enough (a hit costs no LM Studio call), else a refresh."""
        mon = self.instance(name)
        hit = mon.fresh_snapshot(self.settings.cache_max_age if max_age is None else max_age)
        if hit is not None:
            self.stats.hits += 1
            return hit
        self.stats.misses += 1
        self.stats.refreshes += 1
        return await mon.refresh()

    def invalidate(self, name: str) -> None:
        """Mark `name`'s snapshot stale and wake its poll loop, so it is polled now (an unknown name is ignored)."""
        mon = self._monitors.get(name)
        if mon is not None:
            mon.poke()

    def mark_expected_load(self, name: str, model: str, eta_seconds: float | None) -> None:
        """Show `model` as loading on `name` (a JIT load a request is about to start), unless a load of it is expected
        already."""
        mon = self._monitors.get(name)
        if mon is not None and not mon.expects(model):
            mon.expect_load(model, eta_seconds=eta_seconds)

    @property
    def lmstudio_calls(self) -> int:
        """HTTP requests every instance's client has sent to LM Studio so far: the cost the status cache is measured
        by."""
        return sum(m.client.calls for m in self._monitors.values())

    # ---- lifecycle --------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """First poll of every instance, concurrently, so the cache is full before anyone asks."""
        await asyncio.gather(*(m.refresh() for m in self._monitors.values()), return_exceptions=True)

    async def start(self) -> None:
        """Poll every instance once (`warm_up`), then start their poll loops; instances added later start at once."""
        await self.warm_up()
        self._running = True
        for mon in self._monitors.values():
            mon.start()

    async def stop(self) -> None:
        """Stop every poll loop and close every client."""
        self._running = False
        await asyncio.gather(*(m.stop() for m in self._monitors.values()), return_exceptions=True)
