"""Things a person asks LM Studio to do: load, unload, switch, start/stop the server.

One implementation serves the tray, the CLI, the endpoint and the OpenCode tools. Loads are
single-flight per instance and model: concurrent callers share one load and its result. Unload, unload all
and switch take `keep`: models to leave loaded whatever else they do (the OpenCode tools keep the model
the calling session runs on, so a tool never cuts off the session that called it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from lmstudio_tray.core.config.team import TeamProfile
from lmstudio_tray.core.control.eta import LoadEstimator
from lmstudio_tray.core.control.loadmarks import LoadMark, LoadMarks
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.monitor import InstanceMonitor, Monitor, is_local_url
from lmstudio_tray.core.control.shared_guard import guard_change, models_affected, shares
from lmstudio_tray.core.control.team_sync import read_others
from lmstudio_tray.core.errors import (
    ActionError,
    ActionErrorKind,
    LmsError,
    LMStudioError,
    SharedBusyError,
    SharedInstanceBusy,
)
from lmstudio_tray.core.events import (
    EventBus,
    LoadFailed,
    LoadFinished,
    LoadStarted,
    ServerStarted,
    ServerStopped,
)
from lmstudio_tray.core.hooks.verdict import resolve_model
from lmstudio_tray.core.lmstudio.lms import LMS_MISSING, Lms
from lmstudio_tray.core.models import FailureKind, InstanceSnapshot, InstanceState, ModelInfo, ModelType
from lmstudio_tray.core.support import paths

log = logging.getLogger(__name__)
LmsFactory = Callable[[InstanceMonitor], "Lms | None"]
TeamSource = Callable[[], "TeamProfile | None"]
_TICK = 0.5


@dataclass(frozen=True)
class LoadResult:
    """What a load (or a switch) did: the loaded copy's instance id and context length, how long it took, whether the
    model was loaded already; a switch adds the chat models it unloaded and the ones `keep` saved."""

    instance: str
    model: str
    instance_id: str
    seconds: float
    context_length: int | None
    already_loaded: bool = False
    # a switch only: the other chat models it unloaded, and those it left loaded because `keep` named them
    unloaded: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The result as JSON data (the CLI's `--json` output, the endpoint's answers)."""
        return {
            "instance": self.instance,
            "model": self.model,
            "instance_id": self.instance_id,
            "seconds": round(self.seconds, 3),
            "context_length": self.context_length,
            "already_loaded": self.already_loaded,
            "unloaded": list(self.unloaded),
            "kept": list(self.kept),
        }


@dataclass(frozen=True)
class UnloadResult:
    """Instance ids unloaded, and the ones asked for but left loaded because `keep` named them."""

    unloaded: tuple[str, ...]
    kept: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The result as JSON data (the CLI's `--json` output, the endpoint's answers)."""
        return {"unloaded": list(self.unloaded), "kept": list(self.kept)}


def kept_ids(snap: InstanceSnapshot, keep: Collection[str]) -> frozenset[str]:
    """The loaded instance ids `keep` names: an instance id (`key:2`) names itself; a model key, variant or
    any other spelling LM Studio accepts names every loaded copy, since a request for it may go to any."""
    ids: set[str] = set()
    for name in keep:
        hit = None if snap.model(name) is not None else snap.find_instance(name)  # a key is never one copy
        if hit is not None:
            ids.add(hit[1].id)
            continue
        info = resolve_model(snap, name)
        if info is not None:
            ids.update(i.id for i in info.instances)
    return frozenset(ids)


def _all_kept(snap: InstanceSnapshot, key: str, protected: frozenset[str]) -> bool:
    info = snap.model(key)
    return info is not None and info.loaded and all(i.id in protected for i in info.instances)


@dataclass(frozen=True)
class _Flight:
    """A load in progress and the context length its first caller asked for (None: the default)."""

    task: asyncio.Task[LoadResult]
    context_length: int | None


class Actions:
    """Load, unload, switch and server start/stop, one implementation for the tray, the CLI, the endpoint and the
    OpenCode tools.

    The coroutines run on the core's loop. Failures are `ActionError`s with a message a person can act on; on an
    instance the team shares, taking away a model that served requests lately is refused (`SharedBusyError`) unless
    forced.
    """

    def __init__(
        self,
        monitor: Monitor,
        bus: EventBus,
        *,
        estimator: LoadEstimator | None = None,
        lms_factory: LmsFactory | None = None,
        team: TeamSource | None = None,
        uses: ModelUseLog | None = None,
        marks: LoadMarks | None = None,
        server_control: Callable[[], bool] | None = None,
        others: Path | None = None,
    ) -> None:
        """`team`: the team profile in effect; `uses`: the record of recent model use the shared-instance guard
        reads (the same one the endpoint's router writes); `others`: the other members' uses from the team hub
        (`team_sync.others_file()` by default); `server_control`: whether starting and stopping
        LM Studio's server is allowed now (asked at each start/stop)."""
        self.monitor = monitor
        self.bus = bus
        self.estimator = estimator or LoadEstimator()
        self._lms_factory = lms_factory or (lambda _mon: None)
        # The team profile in effect (shared instances, busy window, recommended contexts), given by whoever
        # knows the config (the `Core`), and the record of recent model use; both read at each action.
        self.team: TeamSource = team or (lambda: None)
        self.uses: ModelUseLog | None = uses
        self.others_path = others
        # asked at each start/stop, so a profile or preset switch applies without a restart
        self.server_control_enabled: Callable[[], bool] = server_control or (lambda: True)
        self._inflight: dict[tuple[str, str], _Flight] = {}
        # loads other lmstudio-tray processes run (a terminal's `lmstudio-tray load`, the tray, the endpoint)
        self.marks = marks if marks is not None else LoadMarks(paths.state_dir() / "loads")
        self._lms_in_use: dict[tuple[str, str], Lms] = {}

    # ---- helpers ----------------------------------------------------------------------------------

    async def _usable(self, instance: str) -> tuple[InstanceMonitor, InstanceSnapshot]:
        try:
            mon = self.monitor.instance(instance)
        except KeyError as exc:
            raise ActionError(str(exc.args[0]), kind=ActionErrorKind.UNKNOWN_INSTANCE) from None
        snap = await self.monitor.get(instance, max_age=2.0)
        if snap.state is InstanceState.OFFLINE:
            how = (f"start it with {self._command(instance, 'server', 'start')} or from LM Studio's Developer tab"
                   if is_local_url(snap.url) else "start it on that machine (`lms server start` or LM Studio's "
                   "Developer tab there)")
            raise ActionError(f"LM Studio at {snap.url} is not running: {how}.", kind=ActionErrorKind.OFFLINE)
        if snap.state is InstanceState.AUTH_FAILED:
            raise ActionError(
                f"LM Studio at {snap.url} needs an API token: create one in LM Studio (Developer → Server "
                f"Settings → Manage Tokens) and store it with `lmstudio-tray token set {instance}`.",
                kind=ActionErrorKind.AUTH_FAILED,
            )
        return mon, snap

    def _command(self, instance: str, *words: str) -> str:
        """A command for a message, naming the instance when there is more than one to choose from."""
        where = f" --instance {instance}" if len(self.monitor.names) > 1 else ""
        return f"`lmstudio-tray {' '.join(words)}{where}`"

    @staticmethod
    def _resolve(snap: InstanceSnapshot, target: str) -> ModelInfo | None:
        found = snap.model(target)
        if found is None:
            hit = snap.find_instance(target)
            found = hit[0] if hit else None
        return found

    def recommended_context(self, key: str, info: ModelInfo | None = None) -> int | None:
        """The team profile's default context length for `key` (capped at what the model supports)."""
        team = self.current_team()
        wanted = team.context_for(key) if team is not None else None
        if wanted is not None and info is not None and info.max_context_length:
            wanted = min(wanted, info.max_context_length)
        return wanted

    def current_team(self) -> TeamProfile | None:
        """The team profile in effect now, or None; a team source that raises is logged and counts as no profile, so no
        action fails for it."""
        try:
            return self.team()
        except Exception:  # a broken team source must not stop a load; the guard then has nothing to say
            log.warning("could not read the team profile", exc_info=True)
            return None

    async def _guard(self, snap: InstanceSnapshot, models: Iterable[str], *, force: bool = False) -> None:
        """Refuse cutting off people who use a model on a shared instance (see `shared_guard`): `models` are the
        keys the action would take away. The model-use file other processes write is read in a worker thread."""
        team = self.current_team()
        if force or not shares(team, snap.name):
            return
        uses = self.uses if self.uses is not None else ModelUseLog()
        recorded = await asyncio.to_thread(uses.read)
        others = await asyncio.to_thread(read_others, self.others_path)
        try:
            guard_change(team, snap.name, list(dict.fromkeys(models)), uses=uses, recorded=recorded, others=others)
        except SharedInstanceBusy as exc:
            raise SharedBusyError(exc) from None

    def is_shared(self, instance: str) -> bool:
        """Whether the team profile in effect shares `instance` (its unloads and switches are then guarded)."""
        team = self.current_team()
        return team is not None and instance in team.shared_instances

    def estimate_load_seconds(self, instance: str, model: str) -> float:
        """Expected seconds to load `model` on `instance`: its size from the cached snapshot over the throughput learned
        there (no I/O)."""
        snap = self.monitor.snapshot(instance)
        info = snap.model(model) if snap else None
        return self.estimator.estimate(instance, info.size_bytes if info else None)

    # ---- load -------------------------------------------------------------------------------------

    async def load(self, instance: str, model: str, *, context_length: int | None = None) -> LoadResult:
        """Load `model` (with `context_length`, else the team's recommended context or LM Studio's default).

        Single-flight per instance and model: a caller asking for the same context as the load in flight (or
        for none) shares it. A caller asking for another context waits for that load to end, then loads as
        asked, which is "already loaded" when the finished load has that context; it never gets a result
        for a context it did not ask for.
        """
        key = (instance, model)
        while True:
            flight = self._inflight.get(key)
            if flight is None or flight.task.done():
                flight = _Flight(asyncio.ensure_future(self._load(instance, model, context_length)), context_length)
                self._inflight[key] = flight
                flight.task.add_done_callback(lambda _t, k=key, f=flight: self._landed(k, f))  # type: ignore[misc]
            if context_length is None or flight.context_length == context_length:
                # shield: one caller giving up (a timed-out hook) must not cancel the load for everyone
                return await asyncio.shield(flight.task)
            with contextlib.suppress(ActionError):  # its failure is not this caller's: load as asked next
                await asyncio.shield(flight.task)

    def _landed(self, key: tuple[str, str], flight: _Flight) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]

    def loading(self, instance: str, model: str) -> bool:
        """Whether a load of `model` on `instance` that this process runs is in flight now (other processes' loads:
        `loading_elsewhere`)."""
        flight = self._inflight.get((instance, model))
        return flight is not None and not flight.task.done()

    async def wait_for_load(self, instance: str, model: str) -> LoadResult | None:
        """The result of the load of `model` in flight now (shared, not restarted); None when none is."""
        flight = self._inflight.get((instance, model))
        if flight is None or flight.task.done():
            return None
        return await asyncio.shield(flight.task)

    async def _load(self, instance: str, model: str, context_length: int | None) -> LoadResult:
        mon, snap = await self._usable(instance)
        info = self._resolve(snap, model)
        if info is None and snap.models:
            raise ActionError(
                f"{model!r} is not downloaded on {instance}; see {self._command(instance, 'models', 'list')} for "
                "what is.",
                kind=ActionErrorKind.UNKNOWN_MODEL,
            )
        key = info.key if info else model
        done = self._already_loaded(instance, info, context_length)
        if done is not None:
            return done
        if await self._wait_elsewhere(mon, key):
            # another lmstudio-tray process loaded it meanwhile: maybe just what was asked
            snap = await self.monitor.get(instance, max_age=0)
            info = self._resolve(snap, model)
            done = self._already_loaded(instance, info, context_length)
            if done is not None:
                return done
        if context_length is None:
            context_length = self.recommended_context(key, info)
        size = info.size_bytes if info else None
        eta = self.estimator.estimate(instance, size)
        mon.expect_load(key, eta_seconds=eta, owned=True)
        mark = await asyncio.to_thread(
            self.marks.add, LoadMark(mon.config.url, key, context_length, os.getpid(), time.time(), eta))
        self.bus.publish(LoadStarted(instance, model=key, eta_seconds=eta, size_bytes=size))
        started = time.monotonic()
        real_progress = asyncio.Event()

        def on_progress(fraction: float) -> None:
            real_progress.set()
            elapsed = time.monotonic() - started
            left = elapsed / fraction * (1 - fraction) if fraction > 0.02 else eta
            mon.update_load(key, progress=fraction, eta_seconds=left, estimated=False)

        ticker = asyncio.ensure_future(self._tick(mon, instance, key, size, started, real_progress))
        try:
            instance_id, ctx = await self._do_load(mon, snap, key, context_length, on_progress)
        except (LMStudioError, LmsError) as exc:
            reason = exc.message if isinstance(exc, LMStudioError) else str(exc)
            await self._end_load(mon, key, ticker)  # the status drops the load before anyone hears of it
            self.bus.publish(LoadFailed(instance, model=key, reason=reason, context_length=context_length))
            kind = ActionErrorKind.CANCELLED if exc.cancelled else ActionErrorKind.FAILED
            if isinstance(exc, LMStudioError) and exc.kind is FailureKind.OFFLINE:
                kind = ActionErrorKind.OFFLINE
            raise ActionError(f"Loading {key} on {instance} failed: {reason}", kind=kind) from None
        finally:
            await self._end_load(mon, key, ticker)
            await asyncio.to_thread(self.marks.remove, mark)
        seconds = time.monotonic() - started
        self.estimator.record(instance, size, seconds)
        with contextlib.suppress(Exception):
            await mon.refresh()
        self.bus.publish(LoadFinished(instance, model=key, instance_id=instance_id, seconds=seconds, size_bytes=size))
        return LoadResult(instance, key, instance_id, seconds, ctx)

    @staticmethod
    async def _end_load(mon: InstanceMonitor, key: str, ticker: asyncio.Future[None]) -> None:
        """Stop the progress ticker and drop the expected load (twice is harmless)."""
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        mon.end_load(key)

    @staticmethod
    def _already_loaded(instance: str, info: ModelInfo | None, context_length: int | None) -> LoadResult | None:
        """The loaded copy that answers a load asking for `context_length` (None: any copy), if there is one."""
        if info is None or not info.loaded:
            return None
        for inst in info.instances:
            if context_length is None or inst.context_length == context_length:
                return LoadResult(instance, info.key, inst.id, 0.0, inst.context_length, already_loaded=True)
        return None

    async def loading_elsewhere(self, instance: str, model: str) -> list[LoadMark]:
        """Loads of `model` (a key) on `instance` that other lmstudio-tray processes run now (see `loadmarks`)."""
        try:
            url = self.monitor.instance(instance).config.url
        except KeyError:
            return []
        return await self._marks_of(url, model)

    async def _marks_of(self, url: str, model: str) -> list[LoadMark]:
        if self.marks.none_elsewhere():  # the usual answer, from one stat: no thread hop on the hook path
            return []
        return await asyncio.to_thread(self.marks.others, url, model)

    async def _wait_elsewhere(self, mon: InstanceMonitor, key: str) -> bool:
        """Wait while another lmstudio-tray process loads `key` on this server: loading it here as well would
        end as a second copy. True if there was such a load."""
        marks = await self._marks_of(mon.config.url, key)
        if not marks:
            return False
        eta = marks[0].eta_seconds
        left = None if eta is None else max(0.0, eta - (time.time() - marks[0].started_at))
        log.info("waiting for lmstudio-tray (pid %d) to finish loading %s on %s", marks[0].pid, key, mon.name)
        mon.expect_load(key, eta_seconds=left, owned=True)  # shown as loading meanwhile
        try:
            while marks:
                await asyncio.sleep(_TICK)
                marks = await self._marks_of(mon.config.url, key)
        finally:
            mon.end_load(key)
        return True

    async def _tick(
        self, mon: InstanceMonitor, instance: str, key: str, size: int | None, started: float, real: asyncio.Event
    ) -> None:
        while not real.is_set():
            await asyncio.sleep(_TICK)
            if real.is_set():
                return
            fraction, left = self.estimator.progress(instance, size, time.monotonic() - started)
            mon.update_load(key, progress=fraction, eta_seconds=left, estimated=True)

    async def _do_load(
        self,
        mon: InstanceMonitor,
        snap: InstanceSnapshot,
        key: str,
        context_length: int | None,
        on_progress: Callable[[float], None],
    ) -> tuple[str, int | None]:
        lms = self._lms_factory(mon) if is_local_url(snap.url) else None
        if lms is not None:
            # `lms load` is the one path with LM Studio's own progress (and Ctrl-C cancellation).
            self._lms_in_use[(mon.name, key)] = lms
            try:
                instance_id = await lms.load(key, context_length=context_length, on_progress=on_progress)
            finally:
                self._lms_in_use.pop((mon.name, key), None)
            return instance_id, context_length
        resp = await mon.client.load(key, context_length=context_length)
        return resp.instance_id, resp.context_length

    async def cancel_load(self, instance: str, model: str) -> bool:
        """Cancel a running load. Only `lms` loads can be cancelled; REST loads cannot be stopped."""
        lms = self._lms_in_use.get((instance, model))
        return lms.cancel(model) if lms is not None else False

    def can_cancel(self, instance: str, model: str) -> bool:
        """Whether the load of `model` on `instance` runs through `lms` now, so that `cancel_load` can stop it. No I/O:
        the tray asks while it builds its menu."""
        return (instance, model) in self._lms_in_use

    # ---- unload / switch --------------------------------------------------------------------------

    async def unload(self, instance: str, target: str, *, force: bool = False,
                     keep: Collection[str] = ()) -> UnloadResult:
        """Unload an instance id, or every loaded instance of a model key, except what `keep` names. On a
        shared instance a model that served requests within the team's busy window is refused (kind
        `shared_busy`) unless `force`."""
        mon, snap = await self._usable(instance)
        hit = snap.find_instance(target)
        if hit is not None:
            ids = [hit[1].id]
        else:
            info = snap.model(target)
            if info is None or not info.loaded:
                loaded = ", ".join(i.id for m in snap.loaded_models for i in m.instances) or "nothing"
                raise ActionError(f"{target!r} is not loaded on {instance} (loaded: {loaded}).",
                                  kind=ActionErrorKind.NOT_LOADED)
            ids = [i.id for i in info.instances]
        return await self._unload_keeping(mon, snap, ids, keep, force)

    async def unload_all(self, instance: str, *, force: bool = False, keep: Collection[str] = ()) -> UnloadResult:
        """Unload every loaded copy on `instance` except what `keep` names; refused on a shared instance like `unload`,
        unless `force`."""
        mon, snap = await self._usable(instance)
        ids = [i.id for m in snap.loaded_models for i in m.instances]
        return await self._unload_keeping(mon, snap, ids, keep, force)

    async def _unload_keeping(self, mon: InstanceMonitor, snap: InstanceSnapshot, ids: list[str],
                              keep: Collection[str], force: bool) -> UnloadResult:
        protected = kept_ids(snap, keep)
        go = [i for i in ids if i not in protected]
        taken = [m.key for m in snap.loaded_models if any(i.id in go for i in m.instances)]
        await self._guard(snap, taken, force=force)
        done = await self._unload_ids(mon, go) if go else []
        return UnloadResult(tuple(done), tuple(i for i in ids if i in protected))

    async def _unload_ids(self, mon: InstanceMonitor, ids: list[str]) -> list[str]:
        done: list[str] = []
        try:
            for iid in ids:
                await mon.client.unload(iid)
                done.append(iid)
        except LMStudioError as exc:
            raise ActionError(f"Unloading {iid} on {mon.name} failed: {exc.message}") from None
        finally:
            with contextlib.suppress(Exception):
                await mon.refresh()
        return done

    async def switch(self, instance: str, model: str, *, context_length: int | None = None,
                     force: bool = False, keep: Collection[str] = ()) -> LoadResult:
        """Load `model`, then unload the other LLMs except what `keep` names. A failed load leaves the old
        model in place.

        Embedding models stay: they usually serve a different purpose (retrieval) than the chat model.
        On a shared instance the switch is refused before anything loads while a model it would unload
        served requests within the team's busy window, unless `force`.
        """
        _mon, before = await self._usable(instance)
        target = self._resolve(before, model)
        protected = kept_ids(before, keep)
        affected = models_affected(before, switch_to=target.key if target else model)
        await self._guard(before, [k for k in affected if not _all_kept(before, k, protected)], force=force)
        result = await self.load(instance, model, context_length=context_length)
        mon = self.monitor.instance(instance)
        snap = await self.monitor.get(instance, max_age=0)
        protected = kept_ids(snap, keep)
        others = [
            i.id
            for m in snap.loaded_models
            if m.type is not ModelType.EMBEDDING
            for i in m.instances
            if i.id != result.instance_id
        ]
        done = await self._unload_ids(mon, [i for i in others if i not in protected])
        return replace(result, unloaded=tuple(done), kept=tuple(i for i in others if i in protected))

    # ---- server -----------------------------------------------------------------------------------

    def _server_lms(self, instance: str) -> tuple[InstanceMonitor, Lms]:
        try:
            mon = self.monitor.instance(instance)
        except KeyError as exc:
            raise ActionError(str(exc.args[0]), kind=ActionErrorKind.UNKNOWN_INSTANCE) from None
        if not self.server_control_enabled():
            raise ActionError(
                "server start/stop is turned off in the config (actions.server_control = false, e.g. by the "
                "remote preset); set it to true to use it here.",
                kind=ActionErrorKind.NOT_SUPPORTED,
            )
        if not is_local_url(mon.config.url):
            # `lms server start|stop|status` have no --host option: they act on the LM Studio of the machine
            # they run on (lmstudio-ai/lms src/subcommands/server.ts).
            raise ActionError(
                f"{instance} is a remote server ({mon.config.url}): LM Studio starts and stops its server only "
                "on the machine it runs on (`lms server start|stop` have no --host option); run `lms server "
                "start` on that machine, or use the Developer tab of LM Studio there.",
                kind=ActionErrorKind.NOT_SUPPORTED,
            )
        lms = self._lms_factory(mon)
        if lms is None:
            raise ActionError(LMS_MISSING.format(home=paths.lmstudio_home()), kind=ActionErrorKind.LMS_MISSING)
        return mon, lms

    async def server_start(self, instance: str) -> str:
        """Start `instance`'s LM Studio server through `lms` (on the port of its URL), poll it and publish
        `ServerStarted`; returns `lms`'s message.

        ActionError when server control is off, the instance is remote (only that machine can start it), `lms` is
        missing, or the start fails.
        """
        mon, lms = self._server_lms(instance)
        port = urlsplit(mon.config.url).port
        try:
            result = await lms.server_start(port)
        except LmsError as exc:
            raise ActionError(f"Starting the server of {instance} failed: {exc}") from None
        if result.returncode != 0:
            raise ActionError(f"Starting the server of {instance} failed: {result.message}")
        mon.poke()
        with contextlib.suppress(Exception):
            await mon.refresh()
        self.bus.publish(ServerStarted(instance))
        return result.message

    async def server_stop(self, instance: str) -> str:
        """Stop `instance`'s LM Studio server through `lms`, poll it and publish `ServerStopped`; returns `lms`'s
        message.

        ActionError when server control is off, the instance is remote (only that machine can stop it), `lms` is
        missing, or the stop fails.
        """
        mon, lms = self._server_lms(instance)
        try:
            result = await lms.server_stop()
        except LmsError as exc:
            raise ActionError(f"Stopping the server of {instance} failed: {exc}") from None
        if result.returncode != 0:
            raise ActionError(f"Stopping the server of {instance} failed: {result.message}")
        with contextlib.suppress(Exception):
            await mon.refresh()
        self.bus.publish(ServerStopped(instance))
        return result.message

    async def server_status(self, instance: str) -> dict[str, object]:
        """Whether `instance`'s server answers (from a snapshot at most 1 s old), with its state, port and whether `lms`
        can start and stop it."""
        snap = await self.monitor.get(instance, max_age=1.0)
        running = snap.state is not InstanceState.OFFLINE
        return {
            "instance": instance,
            "url": snap.url,
            "running": running,
            "state": snap.state.value,
            "port": urlsplit(snap.url).port,
            "can_control": snap.can_control_server,
        }
