"""The tray process: pystray on the main thread, the core's loop in a worker thread.

Thin on purpose: what the menu contains comes from `menu.build_menu`, what a click does from
`presenter.TrayPresenter`; this module renders and connects the view to the presenter (the endpoint,
analytics and notifications are attached by the composition root, `lmstudio_tray.wiring`). It also
decides, once and in plain words, whether this machine can show a real tray icon, and runs headless
(notifications only) when not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmstudio_tray import __version__
from lmstudio_tray.core.config.schema import Config, dump_config
from lmstudio_tray.core.errors import LockError
from lmstudio_tray.core.events import InstanceOffline, InstanceOnline, ServerStarted, ServerStopped
from lmstudio_tray.core.models import BenchFigures, InstanceState
from lmstudio_tray.core.ports import Reporter
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.core.support.lock import SingleInstance
from lmstudio_tray.platform.autostart import Autostart
from lmstudio_tray.platform.memory import release_free_memory
from lmstudio_tray.platform.x11 import system_tray_owned
from lmstudio_tray.tray.desktop import copy_to_clipboard, dump_menu, open_with_desktop
from lmstudio_tray.tray.icons import render_icon
from lmstudio_tray.tray.menu import APP_TITLE, ActionKind, MenuAction, MenuItem, MenuPrefs
from lmstudio_tray.tray.preferences import ConfigPreferences, menu_prefs
from lmstudio_tray.tray.presenter import TrayPresenter

if TYPE_CHECKING:
    from lmstudio_tray.tray.sni import SniView

log = logging.getLogger(__name__)

ICON_SIZE = 64  # trays scale down; 64 keeps HiDPI panels sharp
REFRESH_SECONDS = 5.0  # safety net for snapshot changes that publish no event (new downloads)
APP_ID = "lmstudio-tray"
SNI = "sni"  # our own backend (tray/sni.py), not one of pystray's
# pystray backends where a left click runs the menu's default item and cannot open the menu: there
# "Open dashboard" is that default, a clear action for the click people try first
DEFAULT_ITEM_BACKENDS = frozenset({"win32", "xorg"})


# ---- backend choice --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendChoice:
    backend: str | None  # "sni", a PYSTRAY_BACKEND value, or None for headless
    message: str  # the one line we log about it, in plain words
    has_menu: bool = True


def choose_backend(env: dict[str, str] | None = None, platform: str | None = None) -> BackendChoice:
    """Pick pystray's backend before pystray is imported (importing it picks one, or crashes)."""
    env = dict(os.environ if env is None else env)
    platform = platform or sys.platform
    forced = env.get("PYSTRAY_BACKEND")
    if forced:
        return BackendChoice(forced, f"tray: using the {forced} backend (PYSTRAY_BACKEND is set)")
    if platform == "darwin":
        return BackendChoice("darwin", "tray: macOS menu bar")
    if platform == "win32":
        return BackendChoice("win32", "tray: Windows notification area")
    # Asked first, over jeepney: the desktop's host then draws the icon and menu, and this process
    # never loads GTK (~27 MiB) nor needs DISPLAY (Wayland without XWayland works too).
    if sni_watcher_present(env):
        return BackendChoice(SNI, "tray: StatusNotifierItem icon with menu (no GTK)")
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return BackendChoice(
            None,
            "tray: no display (DISPLAY is not set), so there is no tray icon; running headless "
            "(monitoring and notifications keep working)",
        )
    if not env.get("DISPLAY"):
        return BackendChoice(
            None,
            "tray: Wayland without XWayland (DISPLAY is not set) and no StatusNotifierItem host on the "
            "session bus, so there is no tray icon; running headless (monitoring and notifications keep "
            "working)",
        )
    gtk = _gtk_usable()
    if gtk is not None:
        fix = (
            "Install it with: pip install 'lmstudio-tray[linux-tray]' (Debian: apt install python3-gi "
            "gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1)"
        )
        try:
            import Xlib  # noqa: F401
        except ImportError:
            return BackendChoice(None, f"tray: GTK is not usable ({gtk}); running headless. {fix}", False)
        return BackendChoice(
            "xorg",
            f"tray: GTK is not usable ({gtk}), so the icon shows the state but has no menu. {fix}",
            has_menu=False,
        )
    return BackendChoice("gtk", "tray: GTK status icon (XEmbed) with menu")


def _gtk_usable() -> str | None:
    """None when Gtk 3 imports and initialises; otherwise why not."""
    # A tray icon and its menu never draw with OpenGL, but GTK probes GL when it initialises and that maps
    # the GL driver into the process (Mesa's llvmpipe alone is ~50 MB of resident memory).
    os.environ.setdefault("GDK_GL", "disable")
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        ok, _ = Gtk.init_check(sys.argv[:1])
        return None if ok else "GTK could not open the display"
    except (ImportError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def sni_watcher_present(env: dict[str, str] | None = None, timeout: float = 0.5) -> bool:
    """Does a StatusNotifierWatcher (KDE, GNOME's AppIndicator extension, waybar, ...) own its name on
    the session bus? Asked over jeepney, so that the answer costs no GTK. Never raises."""
    env = dict(os.environ if env is None else env)
    try:
        from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
        from jeepney.io.blocking import DBusConnection, prep_socket  # type: ignore[import-untyped]

        from lmstudio_tray.tray.sni import session_bus_target

        with DBusConnection(prep_socket(session_bus_target(env), False, timeout=timeout)) as conn:
            bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                              interface="org.freedesktop.DBus")
            conn.send_and_get_reply(new_method_call(bus, "Hello"), timeout=timeout)
            reply = conn.send_and_get_reply(
                new_method_call(bus, "NameHasOwner", "s", ("org.kde.StatusNotifierWatcher",)), timeout=timeout
            )
            return bool(reply.body[0])
    except Exception as exc:  # no session bus, a hung daemon: no watcher as far as we can tell
        log.debug("no StatusNotifierWatcher: %r", exc)
        return False


# ---- the view --------------------------------------------------------------------------------------


class PystrayView:
    """TrayView over a pystray Icon. Methods may be called from any thread (pystray's GTK backend
    marshals updates to the GTK loop)."""

    def __init__(self, icon_factory: Callable[..., Any], pystray: Any, backend: str) -> None:
        self._pystray = pystray
        self.backend = backend
        self.on_click: Callable[[MenuAction], None] = lambda action: None
        self.icon = icon_factory(
            APP_ID, icon=render_icon(InstanceState.OFFLINE, ICON_SIZE), title=APP_TITLE, menu=None
        )
        if backend == "gtk":
            self._open_menu_on_left_click()

    def _open_menu_on_left_click(self) -> None:
        """pystray's GTK status icon shows the menu on a right click only and runs the (absent) default
        item on a left one, so a left click did nothing; people expect the menu on either click.

        `_status_icon` is pystray's own attribute (pyproject pins the pystray it was tested with); the
        `popup-menu` signal is GTK's, and pystray's handler of it opens the menu."""
        status_icon = getattr(self.icon, "_status_icon", None)
        if status_icon is None:
            log.warning("tray: this pystray has no GTK status icon to connect to; a left click opens nothing")
            return
        from gi.repository import Gtk

        status_icon.connect("activate", lambda icon: icon.emit("popup-menu", 1, Gtk.get_current_event_time()))

    def set_icon(self, state: InstanceState, progress: float | None) -> None:
        self.icon.icon = render_icon(state, ICON_SIZE, progress)

    def set_tooltip(self, text: str) -> None:
        self.icon.title = text

    def set_menu(self, items: tuple[MenuItem, ...]) -> None:
        self.icon.menu = self._pystray.Menu(*(self._item(i) for i in items))
        dump_menu(items)

    def _item(self, item: MenuItem) -> Any:
        p = self._pystray
        if item.separator:
            return p.Menu.SEPARATOR
        if item.children:
            # a model under "Load model" is a submenu of context sizes, still ticked when it is loaded
            ticked = None if item.checked is None else (lambda _item, value=item.checked: value)
            return p.MenuItem(item.label, p.Menu(*(self._item(c) for c in item.children)), checked=ticked,
                              enabled=item.enabled)
        action = item.action
        callback: Callable[[], None] = (lambda: self.on_click(action)) if action is not None else (lambda: None)
        checked = None if item.checked is None else (lambda _item, value=item.checked: value)
        default = (action is not None and action.kind is ActionKind.OPEN_DASHBOARD
                   and self.backend in DEFAULT_ITEM_BACKENDS)
        return p.MenuItem(item.label, callback, checked=checked, radio=item.radio,
                          enabled=item.enabled and action is not None, default=default)

    def copy_text(self, text: str) -> bool:
        return copy_to_clipboard(text)

    def open_path(self, path: str) -> bool:
        return open_with_desktop(path)

    def quit(self) -> None:
        self.icon.stop()


# ---- the app ---------------------------------------------------------------------------------------


class TrayApp:
    """The tray: its view on the main thread, the presenter's redraws on the tray's own thread, the core's
    loop in a `CoreThread`. The surfaces it shows come from the composition root (`lmstudio_tray.wiring`)."""

    def __init__(
        self,
        config: Config,
        *,
        core: Core,
        reporter: Reporter,
        tips: Callable[[], list[str]] = list,
        bench: Callable[[], Mapping[str, tuple[BenchFigures, ...]]] = dict,
        on_shutdown: Callable[[], None] = lambda: None,
        config_path: Path | None = None,
        backend: BackendChoice | None = None,
        about: str = "",
    ) -> None:
        """`reporter`: the notifications the tray's clicks report through; `tips`: the analytics tips (cached,
        non-blocking) for the Tips menu; `bench`: the latest bench figures per model (cached, non-blocking), for
        its "Fastest here for coding"; `on_shutdown`: detaches what the composition root attached, before
        the core stops."""
        self.config = config
        self.config_path = config_path
        self.core = core
        # the icon shows once the first status is known; the endpoint and analytics start right after it
        self.core_thread = CoreThread(self.core, defer_services=True)
        self._services_started = False
        self.reporter = reporter
        self._tips = tips
        self._bench = bench
        self._on_shutdown = on_shutdown
        self.backend = backend or choose_backend()
        self.about = about
        self.view: PystrayView | SniView | None = None
        self.presenter: TrayPresenter | None = None
        self._stop = threading.Event()
        self._unsubscribe: list[Callable[[], None]] = [on_shutdown]

    def _ensure_config(self) -> str | None:
        path = self.config_path or paths.config_file()
        if not path.exists():
            # Opening a missing file shows an error in most editors; give people the defaults to edit.
            try:
                atomic_write(path, dump_config(self.config))
            except OSError as exc:
                log.warning("could not create %s: %s", path, exc)
        return str(path)

    def _on_config_change(self, config: Config) -> None:
        """New settings (a tray click, `profile use`, an edited file): the menu follows (the notification
        service follows on its own)."""
        if self.presenter is not None:
            self.presenter.update_prefs(**menu_prefs(config, self.core.teams))

    def _about_text(self) -> str:
        names = ", ".join(s.name for s in self.core.status().instances) or "none"
        return self.about or f"Watching: {names}. Config: {self.config_path or paths.config_file()}"

    def run(self) -> int:
        """Start the core's thread, show the icon (or run headless), and return once the person quits."""
        # The one line about what kind of tray this is; louder when something is missing.
        nominal = self.backend.backend is not None and self.backend.has_menu
        log.log(logging.INFO if nominal else logging.WARNING, "%s", self.backend.message)
        self._unsubscribe.append(self.core.on_config_change(self._on_config_change))
        self.core_thread.start()
        try:
            if self.backend.backend is None:
                self._start_services()
                return self._run_headless()
            try:
                return self._run_tray(self.backend.backend)
            except Exception as exc:
                log.warning("tray: the %s backend failed (%s); running headless", self.backend.backend, exc)
                self._start_services()
                return self._run_headless()
        finally:
            self.shutdown()

    def _start_services(self) -> None:
        """The endpoint and analytics: after the icon, so that loading them does not delay it."""
        if not self._services_started:
            self._services_started = True
            self.core_thread.submit(self.core.start_services())

    def shutdown(self) -> None:
        """Stop the redraws, detach from the core (and `on_shutdown`), then stop the core's thread."""
        self._stop.set()
        if self.presenter is not None:
            self.presenter.stop_redraws()
        for unsubscribe in self._unsubscribe:
            try:
                unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        self._unsubscribe.clear()
        self.core_thread.stop()

    # ---- headless -------------------------------------------------------------------------------

    def _run_headless(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        while not self._stop.wait(3600):
            pass
        return 0

    # ---- tray -----------------------------------------------------------------------------------

    def _make_view(self, backend: str) -> PystrayView | SniView:
        if backend == SNI:
            from lmstudio_tray.tray.sni import SniView

            return SniView()
        os.environ["PYSTRAY_BACKEND"] = backend  # pystray reads it at import time
        import pystray

        x11 = backend in ("gtk", "xorg", "appindicator")
        if x11 and system_tray_owned(os.environ.get("DISPLAY")) is False and not sni_watcher_present():
            log.warning(
                "tray: no system tray is running on this desktop (GNOME needs the AppIndicator "
                "extension); the icon appears once one starts. Notifications keep working."
            )
        return PystrayView(pystray.Icon, pystray, backend)

    def _run_tray(self, backend: str) -> int:
        view = self._make_view(backend)
        # toggles are saved to the config file at once and applied by the running core
        preferences = ConfigPreferences(self.core, self.config_path or paths.config_file(), self.core_thread.submit)
        autostart, autostart_on = _autostart()
        presenter = TrayPresenter(
            view,
            status=self.core.status,
            actions=self.core.actions,
            submit=self.core_thread.submit,
            reporter=self.reporter,
            prefs=MenuPrefs(
                autostart=autostart_on,
                dashboard=True,
                config_path=str(self.config_path or paths.config_file()),
                logs_path=str(paths.log_dir()),
                **menu_prefs(self.core.config, self.core.teams),
            ),
            set_notifications=preferences.set_notifications,
            set_autostart=autostart.set_enabled if autostart is not None else None,
            ensure_config=self._ensure_config,
            about_text=self._about_text,
            preferences=preferences,
            tips=self._tips,
            bench=self._bench,
            open_dashboard=open_dashboard_in_browser,
            server=self.core.server_control,
        )
        view.on_click = presenter.on_click
        self.view, self.presenter = view, presenter
        # only what changes the tray, and the core loop only marks it dirty: the redraw runs in setup()
        self._unsubscribe.append(self.core.bus.subscribe(presenter.on_event, *presenter.EVENTS))
        # what the menu shows of this machine's LM Studio (server settings, "Start LM Studio"), read anew off
        # the menu's path whenever a local instance comes or goes
        self._unsubscribe.append(self.core.bus.subscribe(
            self.core.server_control.on_status_change, InstanceOnline, InstanceOffline, ServerStarted, ServerStopped))
        if self.core.local_instances():  # an instance offline from the start publishes no change: read it now
            self.core_thread.submit(self.core.server_control.refresh())
        presenter.refresh()
        self._install_signal_handlers(view, backend)

        def setup(icon: Any) -> None:
            """The tray's own thread (both views start it): it redraws what the events marked dirty."""
            if isinstance(view, PystrayView):
                icon.visible = True
                log.info("tray: icon shown")
            self._start_services()
            settled = False

            def tick() -> None:
                nonlocal settled
                if not settled:  # the endpoint and analytics have started by now
                    settled = True
                    release_free_memory()

            if not self._stop.is_set():
                presenter.run_redraws(every=REFRESH_SECONDS, on_every=tick)

        if isinstance(view, PystrayView):
            view.icon.run(setup=setup)
        else:
            view.run(setup=setup)
        return 0

    def _install_signal_handlers(self, view: PystrayView | SniView, backend: str) -> None:
        def stop(*_: Any) -> bool:
            self._stop.set()
            if self.presenter is not None:
                self.presenter.stop_redraws()  # ends setup(), which pystray's stop waits for
            view.quit()
            return False

        if backend in ("gtk", "appindicator"):
            # Python signal handlers only run between bytecodes, and GTK's loop sits in C: use GLib's.
            try:
                from gi.repository import GLib

                for sig in (signal.SIGINT, signal.SIGTERM):
                    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, stop)
                return
            except Exception:
                log.debug("GLib signal handlers unavailable", exc_info=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)


def open_dashboard_in_browser() -> str | None:
    """Sign the browser in to the running endpoint's dashboard (this tray's or `serve`'s); returns the
    link when no browser could be started. Blocking: the presenter calls it on a worker thread."""
    import webbrowser

    from lmstudio_tray.core.support.endpoint_file import dashboard_link

    url = dashboard_link()
    return None if webbrowser.open(url) else url


def _autostart() -> tuple[Autostart | None, bool | None]:
    """This platform's start-at-login switch and its state; (None, None) hides the menu item."""
    from lmstudio_tray.platform.autostart import AutostartError, for_platform

    try:
        autostart = for_platform()
        return autostart, autostart.status().enabled
    except (AutostartError, OSError) as exc:
        log.info("tray: no Start at login item: %s", exc)
        return None, None


@contextlib.contextmanager
def single_tray() -> Iterator[int | None]:
    """One tray per user: holds the tray lock while the block runs. Yields None when this process holds it;
    otherwise the exit code for `lmstudio-tray run`, the reason already printed."""
    lock = SingleInstance(paths.state_dir() / "tray.lock")
    try:
        other = lock.acquire()
    except LockError as exc:
        print(f"lmstudio-tray: {exc}", file=sys.stderr)
        yield 1
        return
    if other is not None:
        print(
            f"lmstudio-tray is already running{f' (pid {other})' if other else ''}; "
            "look for its icon in the system tray.",
            file=sys.stderr,
        )
        yield 0
        return
    try:
        yield None
    finally:
        lock.release()


__all__ = [
    "BackendChoice",
    "PystrayView",
    "TrayApp",
    "__version__",
    "choose_backend",
    "single_tray",
]
