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
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

from lmstudio_tray.core.config.schema import FitCheck
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
    LoadWaiting,
    LoadWarned,
    ServerStarted,
    ServerStopped,
)
from lmstudio_tray.core.hooks.verdict import resolve_model
from lmstudio_tray.core.lmstudio.lms import LMS_MISSING, Lms, LoadEstimate
from lmstudio_tray.core.lmstudio.load_options import LoadOptions, UnsupportedLoadOptions
from lmstudio_tray.core.models import FailureKind, InstanceSnapshot, InstanceState, ModelInfo, ModelType
from lmstudio_tray.core.support import paths

log = logging.getLogger(__name__)
LmsFactory = Callable[[InstanceMonitor], "Lms | None"]
TeamSource = Callable[[], "TeamProfile | None"]
_TICK = 0.5
# the load options as a person names them (CLI flags, tool parameters)
_OPTION_WORDS = {
    "context_length": "the context length", "gpu": "GPU offload", "ttl": "a TTL", "parallel": "parallel requests",
    "identifier": "an identifier",
}


class LoadPath(str, Enum):
    """How a load runs, and so where its progress comes from."""

    LMS = "lms"  # `lms load`: LM Studio's own progress; cancellable
    EVENTS = "events"  # the chat route's load events: LM Studio's progress over HTTP (remote instances)
    REST = "rest"  # REST v1 load: no progress from LM Studio, an estimate from past loads


@dataclass(frozen=True)
class _Route:
    path: LoadPath
    lms: Lms | None


@dataclass
class _LoadState:
    """What a running load's progress ticker and its progress callback share (both on the core's loop)."""

    started: float
    eta: float | None
    fraction: float | None = None
    real: bool = False  # LM Studio reported progress
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _left(mark: LoadMark) -> float | None:
    """Seconds left of another process's load, from its mark's ETA and start."""
    if mark.eta_seconds is None:
        return None
    return max(0.0, mark.eta_seconds - (time.time() - mark.started_at))


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
    warnings: tuple[str, ...] = ()  # said before the load: it will not fit, or no estimate is available
    via: LoadPath | None = None  # how it loaded (None: it was loaded already)
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
            "warnings": list(self.warnings),
            "via": self.via.value if self.via else None,
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
    """A load in progress and the options its first caller asked for (none: the defaults)."""

    task: asyncio.Task[LoadResult]
    options: LoadOptions


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
        fit_check: Callable[[], FitCheck] | None = None,
        others: Path | None = None,
    ) -> None:
        """`team`: the team profile in effect; `uses`: the record of recent model use the shared-instance guard
        reads (the same one the endpoint's router writes); `others`: the other members' uses from the team hub
        (`team_sync.others_file()` by default); `server_control`: whether starting and stopping
        LM Studio's server is allowed now (asked at each start/stop); `fit_check`: `[loads] fit_check` now
        (asked at each load)."""
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
        # `[loads] fit_check` in effect, asked at each load so a config change applies to the next one
        self._fit_mode: Callable[[], FitCheck] = fit_check or (lambda: FitCheck.WARN)

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

    async def load(self, instance: str, model: str, *, context_length: int | None = None,
                   options: LoadOptions | None = None) -> LoadResult:
        """Load `model` with `options` (`context_length` is short for its context length; neither: the team's
        recommended context or LM Studio's default).

        Single-flight per instance and model: a caller asking for the same options as the load in flight (or
        for none) shares it. A caller asking for others waits for that load to end, then loads as asked,
        which is "already loaded" when the finished load has that context; it never gets a result for options
        it did not ask for. Options the load path cannot apply are refused (`not_supported`) before anything
        runs; with `[loads] fit_check = "refuse"` so is a load LM Studio's estimate says will not fit (`wont_fit`).
        """
        asked = options or LoadOptions()
        if context_length is not None and asked.context_length is None:
            asked = replace(asked, context_length=context_length)
        key = (instance, model)
        while True:
            flight = self._inflight.get(key)
            if flight is None or flight.task.done():
                flight = _Flight(asyncio.ensure_future(self._load(instance, model, asked)), asked)
                self._inflight[key] = flight
                flight.task.add_done_callback(lambda _t, k=key, f=flight: self._landed(k, f))  # type: ignore[misc]
            if not asked.given() or flight.options == asked:
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

    async def _load(self, instance: str, model: str, asked: LoadOptions) -> LoadResult:
        mon, snap = await self._usable(instance)
        info = self._resolve(snap, model)
        if info is None and snap.models:
            raise ActionError(
                f"{model!r} is not downloaded on {instance}; see {self._command(instance, 'models', 'list')} for "
                "what is.",
                kind=ActionErrorKind.UNKNOWN_MODEL,
            )
        key = info.key if info else model
        done = self._already_loaded(instance, info, asked)
        if done is not None:
            return done
        if await self._wait_elsewhere(mon, key):
            # another lmstudio-tray process loaded it meanwhile: maybe just what was asked
            snap = await self.monitor.get(instance, max_age=0)
            info = self._resolve(snap, model)
            done = self._already_loaded(instance, info, asked)
            if done is not None:
                return done
        if asked.context_length is None:
            asked = replace(asked, context_length=self.recommended_context(key, info))
        lms = self._lms_factory(mon) if is_local_url(snap.url) else None
        path = self._load_path(mon, info, asked, lms)
        warnings = await self._fit_check(mon, key, asked, lms)
        return await self._run_load(mon, key, info, asked, _Route(path, lms), warnings)

    def _load_path(self, mon: InstanceMonitor, info: ModelInfo | None, asked: LoadOptions,
                   lms: Lms | None) -> LoadPath:
        """How this load runs: `lms load` where there is one (LM Studio's progress, every `lms` option); else the chat
        route's load events (LM Studio's progress over HTTP) for a remote model with nothing loaded and no option but
        the context; else the REST load (progress estimated). ActionError(NOT_SUPPORTED) for options the path
        cannot apply."""
        try:
            if lms is not None:
                asked.check_lms()
                return LoadPath.LMS
            asked.check_rest()
        except UnsupportedLoadOptions as exc:
            where = "`lms load`" if lms is not None else f"LM Studio's REST load ({mon.name} has no `lms`: " + (
                "it runs on another machine)" if not is_local_url(mon.config.url) else "install it with "
                "`npx lmstudio install-cli`)")
            names = ", ".join(_OPTION_WORDS.get(o, o) for o in exc.options)
            raise ActionError(f"Loading on {mon.name} goes through {where}, which cannot set {names}; leave "
                              f"{names} out.", kind=ActionErrorKind.NOT_SUPPORTED) from None
        current = mon.snapshot()
        nothing_loaded = current is None or not any(m.loaded for m in current.models)
        if (not is_local_url(mon.config.url) and set(asked.given()) <= {"context_length"} and nothing_loaded
                and (info is None or not info.loaded)):
            return LoadPath.EVENTS
        return LoadPath.REST

    async def _fit_check(self, mon: InstanceMonitor, key: str, asked: LoadOptions, lms: Lms | None) -> tuple[str, ...]:
        """Ask LM Studio's memory estimate before a load (`[loads] fit_check`): warnings for the result, or
        ActionError(WONT_FIT) when the check refuses a load that will not fit."""
        mode = self._fit_mode()
        if mode is FitCheck.OFF:
            return ()
        if lms is None:
            where = "runs on another machine" if not is_local_url(mon.config.url) else "has no `lms`"
            return self._warn(mon.name, key, f"No memory estimate for {key} on {mon.name}: it {where}, and LM Studio "
                              "estimates a load only through `lms` on its own machine.", None)
        try:
            est = await lms.estimate(key, context_length=asked.context_length, gpu=asked.gpu)
        except LmsError as exc:
            log.warning("could not estimate the load of %s on %s: %s", key, mon.name, exc)
            return self._warn(mon.name, key, f"No memory estimate for {key} on {mon.name}: {exc}", None)
        if est.fits:
            return ()
        need = f"about {est.total_memory_bytes / 1024**3:.1f} GiB"
        ctx = f" with context {est.context_length}" if est.context_length else ""
        text = (f"{key}{ctx} will not fit on {mon.name}: LM Studio estimates it needs {need}, more than its resource "
                "guardrails allow. Pick a smaller context (-c) or GPU offload, or unload another model")
        if mode is FitCheck.REFUSE:
            raise ActionError(f"{text}; `[loads] fit_check = \"warn\"` in the config loads it anyway.",
                              kind=ActionErrorKind.WONT_FIT)
        return self._warn(mon.name, key, f"{text}; loading it anyway.", False)

    def _warn(self, instance: str, key: str, message: str, fits: bool | None) -> tuple[str, ...]:
        self.bus.publish(LoadWarned(instance, model=key, message=message, fits=fits))
        return (message,)

    async def estimate(self, instance: str, model: str, *, options: LoadOptions | None = None) -> LoadEstimate:
        """LM Studio's memory estimate for loading `model` (`lms load --estimate-only`); loads nothing. ActionError
        (NOT_SUPPORTED) on a remote instance or without `lms`: LM Studio estimates only on its own machine."""
        mon, snap = await self._usable(instance)
        info = self._resolve(snap, model)
        key = info.key if info else model
        asked = options or LoadOptions()
        lms = self._lms_factory(mon) if is_local_url(snap.url) else None
        if lms is None:
            why = "it runs on another machine" if not is_local_url(snap.url) else "`lms` was not found"
            raise ActionError(f"No memory estimate for {instance}: {why}, and LM Studio estimates a load only "
                              "through `lms` on its own machine.", kind=ActionErrorKind.NOT_SUPPORTED)
        try:
            return await lms.estimate(key, context_length=asked.context_length, gpu=asked.gpu)
        except LmsError as exc:
            raise ActionError(f"Estimating {key} on {instance} failed: {exc}") from None

    async def _run_load(self, mon: InstanceMonitor, key: str, info: ModelInfo | None, asked: LoadOptions,
                        how: _Route, warnings: tuple[str, ...]) -> LoadResult:
        instance = mon.name
        size = info.size_bytes if info else None
        eta = self.estimator.estimate(instance, size)
        mon.expect_load(key, eta_seconds=eta, owned=True)
        mark = LoadMark(mon.config.url, key, asked.context_length, os.getpid(), time.time(), eta)
        mark_path = await asyncio.to_thread(self.marks.add, mark)
        self.bus.publish(LoadStarted(instance, model=key, eta_seconds=eta, size_bytes=size))
        state = _LoadState(started=time.monotonic(), eta=eta)

        def on_progress(fraction: float) -> None:
            elapsed = time.monotonic() - state.started
            left = elapsed / fraction * (1 - fraction) if fraction > 0.02 else eta
            state.real = True
            state.fraction = fraction
            mon.update_load(key, progress=fraction, eta_seconds=left, estimated=False)

        ticker = asyncio.ensure_future(self._tick(mon, key, size, state, mark, mark_path))
        try:
            instance_id, ctx = await self._do_load(mon, key, asked, how, on_progress)
        except (LMStudioError, LmsError) as exc:
            reason = exc.message if isinstance(exc, LMStudioError) else str(exc)
            await self._end_load(mon, key, ticker, state)  # the status drops the load before anyone hears of it
            self.bus.publish(LoadFailed(instance, model=key, reason=reason, context_length=asked.context_length))
            kind = ActionErrorKind.CANCELLED if exc.cancelled else ActionErrorKind.FAILED
            if isinstance(exc, LMStudioError) and exc.kind is FailureKind.OFFLINE:
                kind = ActionErrorKind.OFFLINE
            raise ActionError(f"Loading {key} on {instance} failed: {reason}", kind=kind) from None
        finally:
            await self._end_load(mon, key, ticker, state)
            await asyncio.to_thread(self.marks.remove, mark_path)
        seconds = time.monotonic() - state.started
        self.estimator.record(instance, size, seconds)
        with contextlib.suppress(Exception):
            await mon.refresh()
        self.bus.publish(LoadFinished(instance, model=key, instance_id=instance_id, seconds=seconds, size_bytes=size))
        return LoadResult(instance, key, instance_id, seconds, ctx, warnings=warnings, via=how.path)

    @staticmethod
    async def _end_load(mon: InstanceMonitor, key: str, ticker: asyncio.Future[None], state: _LoadState) -> None:
        """Stop the progress ticker (letting a mark update it is writing finish, so no mark outlives its load) and drop
        the expected load (twice is harmless)."""
        state.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        mon.end_load(key)

    @staticmethod
    def _already_loaded(instance: str, info: ModelInfo | None, asked: LoadOptions) -> LoadResult | None:
        """The loaded copy that answers a load asking for `asked` (nothing: any copy), if there is one. Options
        beyond the context (GPU, TTL, parallel) are not listed by LM Studio, so they always load a copy; an
        identifier is answered by the copy of that id."""
        if info is None or not info.loaded:
            return None
        if asked.identifier is not None:
            found = [i for i in info.instances if i.id == asked.identifier]
        elif set(asked.given()) <= {"context_length"}:
            found = [i for i in info.instances if asked.context_length in (None, i.context_length)]
        else:
            found = []
        if found:
            return LoadResult(instance, info.key, found[0].id, 0.0, found[0].context_length, already_loaded=True)
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
        """Wait while another lmstudio-tray process loads `key` on this server, following the progress its mark shows:
        loading it here as well would end as a second copy. True if there was such a load."""
        marks = await self._marks_of(mon.config.url, key)
        if not marks:
            return False
        log.info("waiting for lmstudio-tray (pid %d) to finish loading %s on %s", marks[0].pid, key, mon.name)
        mon.expect_load(key, eta_seconds=_left(marks[0]), owned=True)  # shown as loading meanwhile
        self.bus.publish(LoadWaiting(mon.name, model=key, pid=marks[0].pid))
        seen: tuple[float | None, bool] | None = None
        try:
            while marks:
                mark = marks[0]
                if mark.progress is not None and (mark.progress, mark.estimated) != seen:
                    seen = (mark.progress, mark.estimated)
                    mon.update_load(key, progress=mark.progress, eta_seconds=_left(mark), estimated=mark.estimated)
                await asyncio.sleep(_TICK)
                marks = await self._marks_of(mon.config.url, key)
        finally:
            mon.end_load(key)
        return True

    async def _tick(self, mon: InstanceMonitor, key: str, size: int | None, state: _LoadState, mark: LoadMark,
                    mark_path: Path | None) -> None:
        """Until the load ends: estimated progress while LM Studio reports none, and the progress written to the load's
        mark for other processes."""
        written: float | None = None
        while not state.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.stop.wait(), _TICK)
            if state.stop.is_set():
                return
            if not state.real:
                state.fraction, left = self.estimator.progress(mon.name, size, time.monotonic() - state.started)
                mon.update_load(key, progress=state.fraction, eta_seconds=left, estimated=True)
            if state.fraction is not None and state.fraction != written:
                written = state.fraction
                elapsed = time.monotonic() - state.started
                eta = elapsed / written if written > 0.02 else state.eta
                await asyncio.to_thread(self.marks.update, mark_path,
                                        replace(mark, progress=written, estimated=not state.real, eta_seconds=eta))

    async def _do_load(self, mon: InstanceMonitor, key: str, asked: LoadOptions, how: _Route,
                       on_progress: Callable[[float], None]) -> tuple[str, int | None]:
        if how.path is LoadPath.LMS and how.lms is not None:
            # `lms load` is the one path with LM Studio's own progress (and Ctrl-C cancellation).
            self._lms_in_use[(mon.name, key)] = how.lms
            try:
                instance_id = await how.lms.load(key, context_length=asked.context_length, on_progress=on_progress,
                                                 options=asked)
            finally:
                self._lms_in_use.pop((mon.name, key), None)
            return instance_id, asked.context_length
        if how.path is LoadPath.EVENTS:
            return await self._load_by_events(mon, key, asked, on_progress)
        resp = await mon.client.load(key, options=asked)
        return resp.instance_id, resp.context_length

    @staticmethod
    async def _load_by_events(mon: InstanceMonitor, key: str, asked: LoadOptions,
                              on_progress: Callable[[float], None]) -> tuple[str, int | None]:
        """Load through the chat route, the one HTTP route with LM Studio's load progress; the loaded copy is then read
        from the listing."""
        async for fraction in mon.client.chat_load_events(key, context_length=asked.context_length):
            on_progress(fraction)
        snap = await mon.refresh()
        info = snap.model(key)
        if info is None or not info.loaded:
            raise LMStudioError(FailureKind.BAD_RESPONSE, f"LM Studio did not list {key} as loaded after its load")
        found = [i for i in info.instances if asked.context_length in (None, i.context_length)] or list(info.instances)
        return found[0].id, found[0].context_length

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
                     force: bool = False, keep: Collection[str] = (),
                     options: LoadOptions | None = None) -> LoadResult:
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
        result = await self.load(instance, model, context_length=context_length, options=options)
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
