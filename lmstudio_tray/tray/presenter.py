"""Connects status snapshots and menu clicks to the core, without knowing any toolkit.

The view (the pystray adapter, or a mock in tests) only draws what it is told and reports clicks.
Clicks never block: core actions are submitted to the core's loop and their failures come back as
notifications, because a menu callback that waits on LM Studio freezes the whole tray.

Threads: the presenter hears from the bus only the events that change what the tray shows
(`TrayPresenter.EVENTS`), on the core loop, and there it only marks itself dirty. The menu, tooltip and
icon are rebuilt on the tray's side: by `run_redraws()` on the tray's own thread (bursts such as load
progress coalesce into one redraw per `REDRAW_INTERVAL`), or at once for a click, which arrives on the
view's thread. `refresh()` is serialised, so two tray threads never draw an older state over a newer one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from lmstudio_tray import __version__
from lmstudio_tray.core.control.search import coding_pick_line, fastest_for_coding
from lmstudio_tray.core.errors import ActionError, SharedBusyError
from lmstudio_tray.core.events import STATUS_KINDS, Event
from lmstudio_tray.core.models import BenchFigures, InstanceState, StatusReport
from lmstudio_tray.core.ports import Reporter
from lmstudio_tray.core.threads import not_on_event_loop
from lmstudio_tray.tray.icons import aggregate, quantize

if TYPE_CHECKING:  # types only: the tray imports no `lms` code until a core hands it one
    from lmstudio_tray.core.control.server_control import ServerSettings
    from lmstudio_tray.core.lmstudio.lms import DaemonStatus
from lmstudio_tray.tray.menu import (
    APP_TITLE,
    ActionKind,
    MenuAction,
    MenuContext,
    MenuItem,
    MenuPrefs,
    TeamUses,
    build_menu,
    in_use_by_others,
    tooltip,
)

log = logging.getLogger(__name__)

Submit = Callable[[Coroutine[Any, Any, Any]], "concurrent.futures.Future[Any]"]

# At most this many redraws per second come from events: a load reports progress many times a second,
# and each menu revision makes a StatusNotifierItem host fetch the whole layout again.
REDRAW_INTERVAL = 0.25


class Redraws:
    """A dirty flag that any thread may set, and the loop that redraws on the tray's own thread.

    `request()` is what the core loop pays per event: a lock and a notify, no drawing. `run()` redraws
    at once after a quiet spell, and at most once per `interval` during a burst; the flag is cleared
    before each redraw reads the status, so the latest state is always drawn in the end.
    """

    def __init__(self, redraw: Callable[[], None], *, interval: float = REDRAW_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redraw = redraw
        self._interval = interval
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._dirty = False
        self._stopped = False

    def request(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def run(self, every: float | None = None, on_every: Callable[[], None] | None = None) -> None:
        """Redraw when asked until `stop()`; also every `every` seconds even when nobody asked (then
        `on_every` runs too), for changes that publish no event."""
        last_redraw = -self._interval
        next_tick = None if every is None else self._clock() + every
        while True:
            with self._cond:
                self._wait(next_tick)
                if self._stopped:
                    return
                ticked = next_tick is not None and self._clock() >= next_tick
                # a burst: let the rest of it arrive, then draw it all at once
                due = last_redraw + self._interval - self._clock()
                if due > 0 and self._cond.wait_for(lambda: self._stopped, due):
                    return
                self._dirty = False
            try:
                self._redraw()
            except Exception:  # the loop outlives a broken redraw: the next event may draw fine
                log.exception("tray: redraw failed")
            last_redraw = self._clock()
            if ticked and every is not None:  # a redraw asked for when the tick was due counts as the tick
                next_tick = last_redraw + every
                if on_every is not None:
                    on_every()

    def _wait(self, next_tick: float | None) -> None:
        """Under the lock: wait until asked, stopped, or the tick is due."""
        while not (self._dirty or self._stopped):
            if next_tick is None:
                self._cond.wait()
                continue
            left = next_tick - self._clock()
            if left <= 0:
                return
            self._cond.wait(left)


class TrayView(Protocol):
    def set_icon(self, state: InstanceState, progress: float | None) -> None: ...

    def set_tooltip(self, text: str) -> None: ...

    def set_menu(self, items: tuple[MenuItem, ...]) -> None: ...

    def copy_text(self, text: str) -> bool: ...

    def open_path(self, path: str) -> bool: ...

    def quit(self) -> None: ...


class ActionsLike(Protocol):
    async def load(self, instance: str, model: str, *, context_length: int | None = None) -> Any: ...

    async def switch(self, instance: str, model: str, *, context_length: int | None = None) -> Any: ...

    async def unload(self, instance: str, target: str) -> Any: ...

    async def unload_all(self, instance: str) -> Any: ...

    async def server_start(self, instance: str) -> Any: ...

    async def server_stop(self, instance: str) -> Any: ...

    async def cancel_load(self, instance: str, model: str) -> bool: ...

    def can_cancel(self, instance: str, model: str) -> bool: ...


class ServerControlLike(Protocol):
    """This machine's LM Studio (core.control.server_control.ServerControl): what the menu shows of it, read
    without waiting, and "Start LM Studio"."""

    @property
    def last(self) -> ServerSettings | None: ...

    @property
    def service(self) -> DaemonStatus | None: ...

    async def start_lmstudio(self, port: int | None = None) -> str: ...


class ForcibleActions(Protocol):
    """The forced variants (core.actions.Actions): for "Unload anyway" after a shared-instance refusal."""

    async def switch(self, instance: str, model: str, *, context_length: int | None = None,
                     force: bool = False) -> Any: ...

    async def unload(self, instance: str, target: str, *, force: bool = False) -> Any: ...

    async def unload_all(self, instance: str, *, force: bool = False) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Anyway:
    """How to repeat a refused change on a shared instance: a notification button, or a command."""

    label: str  # "Unload anyway"
    retry: Callable[[], Coroutine[Any, Any, Any]]
    command: str  # the same from a terminal, for notification backends without buttons


class PreferencesLike(Protocol):
    """Saves a preference to the config file and applies it; returns the MenuPrefs fields that changed."""

    def use_instance(self, name: str) -> dict[str, Any]: ...

    def use_profile(self, name: str | None) -> dict[str, Any]: ...

    def set_notification_category(self, category: str, enabled: bool) -> dict[str, Any]: ...

    def set_validation(self, choice: str) -> dict[str, Any]: ...


class TrayPresenter:
    # What changes the status the tray shows. Not VerdictGiven (one per hook call; it changes nothing
    # here) nor SessionFailing (a notification, not a menu entry).
    EVENTS: tuple[type[Event], ...] = STATUS_KINDS

    def __init__(
        self,
        view: TrayView,
        *,
        status: Callable[[], StatusReport],
        actions: ActionsLike,
        submit: Submit,
        reporter: Reporter,
        prefs: MenuPrefs | None = None,
        set_notifications: Callable[[bool], None] | None = None,
        set_autostart: Callable[[bool], object] | None = None,
        ensure_config: Callable[[], str | None] | None = None,
        about_text: Callable[[], str] | None = None,
        preferences: PreferencesLike | None = None,
        tips: Callable[[], Sequence[str]] | None = None,
        bench: Callable[[], Mapping[str, tuple[BenchFigures, ...]]] | None = None,
        open_dashboard: Callable[[], str | None] | None = None,
        redraw_interval: float = REDRAW_INTERVAL,
        server: ServerControlLike | None = None,
        team_uses: Callable[[], Mapping[str, Mapping[str, list[tuple[str, float]]]]] | None = None,
    ) -> None:
        """`open_dashboard` opens the local dashboard in a browser (blocking; it runs on a worker thread)
        and returns None, or the single-use link when no browser could be started. `bench`: the latest bench
        figures per model (the analytics' cache, non-blocking), for the Tips menu's "Fastest here for coding".
        `team_uses`: the other members' uses as the team hub last said (`TeamSync.others`, kept in memory: reading
        it never blocks)."""
        self.view = view
        self._status = status
        self._actions = actions
        self._submit = submit
        self._reporter = reporter
        self.prefs = prefs or MenuPrefs()
        self._set_notifications = set_notifications
        self._set_autostart = set_autostart
        self._ensure_config = ensure_config
        self._about_text = about_text
        self._preferences = preferences
        self._tips = tips
        self._bench = bench
        self._open_dashboard = open_dashboard
        self._server = server
        self._team_uses = team_uses
        self._lock = threading.RLock()
        self._draw_lock = threading.Lock()  # one refresh at a time: read the status, then push it
        self._redraws = Redraws(self.refresh, interval=redraw_interval)
        self._busy: set[tuple[str, str]] = set()
        self._shown_icon: tuple[InstanceState, float | None] | None = None
        self._shown_menu: tuple[MenuItem, ...] | None = None
        self._shown_tooltip: str | None = None
        self.pending: list[concurrent.futures.Future[Any]] = []  # in-flight actions (tests wait on them)

    # ---- model -> view --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the cached status and push only what changed (redrawing menus makes them flicker).

        Runs on the tray's side (its redraw thread, or the view's thread for a click), never on the core
        loop (`WrongThread`): building the menu and drawing the icon cost far more than a validate does."""
        not_on_event_loop("the tray's redraw")
        with self._draw_lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            report = self._status()
        except Exception:
            log.exception("could not read the status")
            return
        with self._lock:
            state, progress = aggregate(report)
            icon = (state, quantize(progress))
            settings = self._server.last if self._server is not None else None
            service = self._server.service if self._server is not None else None
            ctx = MenuContext(prefs=self.prefs, can_cancel=self._can_cancel, busy=frozenset(self._busy),
                              tips=self._current_tips(), coding_pick=self._coding_pick(report),
                              server_line=settings.describe() if settings is not None else None,
                              lmstudio_running=service.running if service is not None else None,
                              team_uses=self._current_team_uses())
            menu = build_menu(report, ctx)
            tip = tooltip(report)
            if icon != self._shown_icon:
                self._shown_icon = icon
                self.view.set_icon(state, icon[1])
            if tip != self._shown_tooltip:
                self._shown_tooltip = tip
                self.view.set_tooltip(tip)
            if menu != self._shown_menu:
                self._shown_menu = menu
                self.view.set_menu(menu)

    def _current_team_uses(self) -> TeamUses:
        """Other members' models in use on the shared instances, within the team's busy window."""
        if self._team_uses is None or not self.prefs.shared_instances:
            return {}
        try:
            others = self._team_uses()
        except Exception:  # an extra, like the tips: never a reason for the menu not to draw
            log.debug("no team uses", exc_info=True)
            return {}
        return in_use_by_others(others, self.prefs.shared_instances, self.prefs.busy_minutes * 60, time.time())

    def _current_tips(self) -> tuple[str, ...]:
        try:
            return tuple(self._tips()) if self._tips else ()
        except Exception:  # tips are an extra: a broken store must not break the menu
            log.debug("no tips", exc_info=True)
            return ()

    def _coding_pick(self, report: StatusReport) -> str | None:
        try:
            figures = self._bench() if self._bench else {}
        except Exception:  # like the tips, an extra
            log.debug("no bench figures", exc_info=True)
            return None
        names = [s.name for s in report.instances]  # this machine's view (the report this redraw read): its figures
        pick = fastest_for_coding((b for per_model in figures.values() for b in per_model), names)
        return coding_pick_line(pick, instance=len(names) > 1) if pick is not None else None

    def on_event(self, event: Event) -> None:
        """Bus subscriber for `EVENTS` (runs on the core loop): mark the tray dirty, draw nothing here."""
        self._redraws.request()

    def request_refresh(self) -> None:
        """Redraw soon, on the tray's thread (from any thread; never blocks)."""
        self._redraws.request()

    def run_redraws(self, every: float | None = None, on_every: Callable[[], None] | None = None) -> None:
        """The tray's redraw loop: blocks the calling (tray) thread until `stop_redraws()`."""
        self._redraws.run(every, on_every)

    def stop_redraws(self) -> None:
        self._redraws.stop()

    def _can_cancel(self, instance: str, model: str) -> bool:
        try:
            return bool(self._actions.can_cancel(instance, model))
        except Exception:
            return False

    # ---- view -> core ---------------------------------------------------------------------------

    def on_click(self, action: MenuAction) -> None:
        try:
            self._dispatch(action)
        except Exception as exc:  # a menu callback must never take the tray down
            log.exception("menu action %s failed", action.kind.value)
            self._reporter.report(f"{APP_TITLE}: {action.kind.value} failed", str(exc))

    def _dispatch(self, action: MenuAction) -> None:
        kind, inst, target = action.kind, action.instance or "", action.target or ""
        acts = self._actions
        forced: ForcibleActions = acts  # type: ignore[assignment]
        where = f" --instance {inst}"
        if kind is ActionKind.LOAD:
            self._run(acts.load(inst, target, context_length=action.context_length), f"Could not load {target}",
                      inst, target)
        elif kind is ActionKind.SWITCH:
            self._run(acts.switch(inst, target), f"Could not switch to {target}", inst, target,
                      anyway=Anyway("Switch anyway", lambda: forced.switch(inst, target, force=True),
                                    f"lmstudio-tray switch {target}{where} --force"))
        elif kind is ActionKind.UNLOAD:
            self._run(acts.unload(inst, target), f"Could not unload {target}", inst, target,
                      anyway=Anyway("Unload anyway", lambda: forced.unload(inst, target, force=True),
                                    f"lmstudio-tray unload {target}{where} --force"))
        elif kind is ActionKind.UNLOAD_ALL:
            self._run(acts.unload_all(inst), f"Could not unload the models of {inst}", inst,
                      anyway=Anyway("Unload anyway", lambda: forced.unload_all(inst, force=True),
                                    f"lmstudio-tray unload --all{where} --force"))
        elif kind is ActionKind.USE_INSTANCE:
            self._prefer(lambda p: p.use_instance(target), "Could not change the active instance")
        elif kind is ActionKind.SERVER_START:
            self._run(acts.server_start(inst), f"Could not start the server of {inst}", inst)
        elif kind is ActionKind.SERVER_STOP:
            self._run(acts.server_stop(inst), f"Could not stop the server of {inst}", inst)
        elif kind is ActionKind.START_LMSTUDIO and self._server is not None:
            self._start_lmstudio(self._server, inst)
        elif kind is ActionKind.CANCEL_LOAD:
            self._run(acts.cancel_load(inst, target), f"Could not cancel loading {target}", inst, target,
                      falsy_means=f"{inst} cannot cancel this load; it will finish or fail by itself.")
        elif kind is ActionKind.COPY_ID:
            if not self.view.copy_text(target):
                # No clipboard tool: the id in a bubble is the next best thing.
                self._reporter.report("Model id", target, failure=False)
        elif kind is ActionKind.TOGGLE_NOTIFICATIONS:
            self._toggle("notifications", self._set_notifications)
        elif kind is ActionKind.TOGGLE_AUTOSTART:
            self._toggle("autostart", self._set_autostart)
        elif kind is ActionKind.USE_PROFILE:
            self._prefer(lambda p: p.use_profile(target or None), "Could not switch the profile")
        elif kind is ActionKind.TOGGLE_NOTIFY_CATEGORY:
            current = dict(self.prefs.notify_categories).get(target)
            if current is not None:
                self._prefer(lambda p: p.set_notification_category(target, not current),
                             "Could not change the notification types")
        elif kind is ActionKind.SET_VALIDATION:
            self._prefer(lambda p: p.set_validation(target), "Could not change the validation policy")
        elif kind is ActionKind.SHOW_TIP:
            self._reporter.report("Tip", target, failure=False)
        elif kind is ActionKind.OPEN_DASHBOARD:
            self._open_dashboard_later()
        elif kind is ActionKind.OPEN_CONFIG:
            path = self._ensure_config() if self._ensure_config else self.prefs.config_path
            if not path or not self.view.open_path(path):
                self._reporter.report("Could not open the config file", f"Edit it by hand: {path}")
        elif kind is ActionKind.OPEN_LOGS:
            path = self.prefs.logs_path
            if not path or not self.view.open_path(path):
                self._reporter.report("Could not open the logs folder", f"The logs are in {path}")
        elif kind is ActionKind.ABOUT:
            text = self._about_text() if self._about_text else ""
            self._reporter.report(f"{APP_TITLE} {__version__}", text or "A tray companion for LM Studio.",
                                  failure=False)
        elif kind is ActionKind.QUIT:
            self.stop_redraws()  # first: pystray's stop waits (up to 5 s) for the thread they run on
            self.view.quit()

    def _open_dashboard_later(self) -> None:
        """A loopback request and a browser start: off the tray's thread, so the menu never freezes."""
        opener = self._open_dashboard
        if opener is None:
            return

        def work() -> None:
            try:
                link = opener()
            except Exception as exc:  # no endpoint, a refused code: the message says what to do
                self._reporter.report("Could not open the dashboard", str(exc) or type(exc).__name__)
                return
            if link:
                self._reporter.report("Open the dashboard", f"Open this link within a minute (it works once): "
                                      f"{link}", failure=False)

        threading.Thread(target=work, name="open-dashboard", daemon=True).start()

    def _toggle(self, name: str, setter: Callable[[bool], object] | None) -> None:
        current = getattr(self.prefs, name)
        if current is None or setter is None:
            return
        new = not current
        try:
            setter(new)
        except Exception as exc:
            self._reporter.report(f"Could not change {name}", str(exc))
            return
        with self._lock:
            self.prefs = _replace(self.prefs, **{name: new})
        self.refresh()

    def _prefer(self, change: Callable[[PreferencesLike], dict[str, Any]], failure_title: str) -> None:
        if self._preferences is None:
            return
        try:
            changed = change(self._preferences)
        except Exception as exc:  # a config problem: the file is unchanged, say why
            self._reporter.report(failure_title, str(exc))
            return
        with self._lock:
            self.prefs = _replace(self.prefs, **changed)
        self.refresh()  # a click: on the view's thread, and the person waits for the tick

    def _start_lmstudio(self, server: ServerControlLike, instance: str) -> None:
        """Say that LM Studio is starting (it may take a minute), then what came of it, in the same bubble."""
        snap = next((s for s in self._status().instances if s.name == instance), None)
        port = urlsplit(snap.url).port if snap is not None else None
        key = f"action:{instance}"
        self._reporter.report("Starting LM Studio", "Starting LM Studio and its server…", replace_key=key,
                              failure=False)

        async def start_and_tell() -> None:
            said = await server.start_lmstudio(port)
            self._reporter.report("LM Studio started", said, replace_key=key, failure=False)

        self._run(start_and_tell(), "Could not start LM Studio", instance)

    def update_prefs(self, **changes: Any) -> None:
        """New preference values when the config changed under us (called on the core loop)."""
        with self._lock:
            self.prefs = _replace(self.prefs, **changes)
        self.request_refresh()

    def _run(
        self,
        coro: Coroutine[Any, Any, Any],
        failure_title: str,
        instance: str,
        model: str | None = None,
        *,
        falsy_means: str | None = None,
        anyway: Anyway | None = None,
    ) -> None:
        key = (instance, model) if model else None
        if key is not None:
            with self._lock:
                self._busy.add(key)
        try:
            future = self._submit(coro)
        except Exception as exc:
            coro.close()
            self._finish(key)
            self._reporter.report(failure_title, f"The monitor is not running ({exc}).")
            return
        self.pending.append(future)
        self.refresh()

        def done(f: concurrent.futures.Future[Any]) -> None:
            self._finish(key)
            try:
                report_outcome(f)
            finally:
                # last, so whoever waits for `pending` to empty also sees the report
                self.pending = [p for p in self.pending if not p.done()]

        def report_outcome(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if isinstance(exc, SharedBusyError) and anyway is not None:
                self._offer_anyway(failure_title, str(exc), anyway, instance, model)
            elif exc is not None:
                # ActionError carries a message written for people; anything else is our bug.
                if not isinstance(exc, ActionError):
                    log.error("%s", failure_title, exc_info=exc)
                self._reporter.report(failure_title, str(exc) or type(exc).__name__,
                                      replace_key=f"load:{instance}:{model}" if model else f"action:{instance}")
            elif falsy_means is not None and not f.result():
                self._reporter.report(failure_title, falsy_means)
            self.request_refresh()  # done callbacks run on the core loop

        future.add_done_callback(done)

    def _offer_anyway(self, title: str, reason: str, anyway: Anyway, instance: str, model: str | None) -> None:
        """A change refused on a shared instance: say why, and let the person confirm it with a button (or,
        where notifications have none, tell them the command that forces it)."""
        replace_key = f"load:{instance}:{model}" if model else f"action:{instance}"

        def press() -> None:
            self._run(anyway.retry(), title, instance, model)

        if self._reporter.offer(title, reason, button=anyway.label, on_press=press, replace_key=replace_key):
            return
        self._reporter.report(title, f"{reason}\nTo do it anyway: {anyway.command}", replace_key=replace_key)

    def _finish(self, key: tuple[str, str] | None) -> None:
        if key is not None:
            with self._lock:
                self._busy.discard(key)


def _replace(prefs: MenuPrefs, **changes: Any) -> MenuPrefs:
    return dataclasses.replace(prefs, **changes)
