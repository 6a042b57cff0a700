"""Notification backends, picked by what actually answers on this machine.

Order: on Linux, freedesktop first (`org.freedesktop.Notifications` spoken directly over jeepney, see
`notify/freedesktop.py`: buttons, click callbacks, in-place updates, and ~3 MiB less than
desktop-notifier, which is then never imported); then desktop-notifier (the backend on macOS and
Windows, the second candidate on Linux); then plyer (plain bubbles through dbus-python or notify-send);
then a log-only backend. Each candidate is probed once; a probe that fails or hangs means "not here",
never an exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from lmstudio_tray.notify.base import LogNotifier, Message, Notifier, Urgency, guarded

log = logging.getLogger(__name__)

APP_TITLE = "LM Studio Tray"
NOTIFIER_ENV = "LMSTUDIO_TRAY_NOTIFIER"  # freedesktop | desktop-notifier | plyer | log: skip the probing
PROBE_TIMEOUT = 3.0


class DesktopNotifierBackend(Notifier):
    """desktop-notifier on its own asyncio loop thread, so callers never wait on D-Bus."""

    name = "desktop-notifier"

    def __init__(self, app_name: str = APP_TITLE, icon_path: str | None = None) -> None:
        super().__init__()
        self._app_name = app_name
        self._icon_path = icon_path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="notifier", daemon=True)
        self._thread.start()
        self._notifier: Any = None
        self._ids: dict[str, str] = {}  # replace_key -> identifier of the bubble on screen
        self._closed = False

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _ensure(self) -> Any:
        if self._notifier is None:
            from desktop_notifier import DesktopNotifier, Icon

            icon = Icon(path=self._icon_path) if self._icon_path else None  # type: ignore[arg-type]
            self._notifier = DesktopNotifier(app_name=self._app_name, app_icon=icon)
        return self._notifier

    async def _capabilities(self) -> frozenset[Any]:
        notifier = await self._ensure()
        caps: frozenset[Any] = await notifier.get_capabilities()
        return caps

    def probe(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """True when a notification server answered; sets `supports_buttons` from its capabilities."""
        try:
            caps = self._submit(self._capabilities()).result(timeout)
        except Exception as exc:
            log.debug("desktop-notifier probe failed: %r", exc)
            return False
        from desktop_notifier import Capability

        self.supports_buttons = Capability.BUTTONS in caps
        return Capability.TITLE in caps or Capability.MESSAGE in caps

    def _send(self, message: Message) -> None:
        if self._closed:
            raise RuntimeError("notifier closed")
        future = self._submit(self._send_async(message))
        future.add_done_callback(lambda f: self._done(f, message))

    async def _send_async(self, message: Message) -> None:
        from desktop_notifier import Button, Notification
        from desktop_notifier import Urgency as DnUrgency

        notifier = await self._ensure()
        if message.replace_key and message.replace_key in self._ids:
            # desktop-notifier always sends replaces_id=0, so replace = close the old bubble first.
            old = self._ids.pop(message.replace_key)
            try:
                await notifier.clear(old)
            except Exception as exc:
                log.debug("could not close the previous bubble: %r", exc)
        urgency = {
            Urgency.LOW: DnUrgency.Low,
            Urgency.NORMAL: DnUrgency.Normal,
            Urgency.CRITICAL: DnUrgency.Critical,
        }[message.urgency]
        buttons = tuple(Button(title=b.label, on_pressed=guarded(b.on_press, b.label)) for b in message.buttons)
        on_click = guarded(message.on_click, "click") if message.on_click else None
        notification = Notification(
            title=message.title, message=message.body, urgency=urgency, buttons=buttons, on_clicked=on_click
        )
        identifier = await notifier.send_notification(notification)
        if message.replace_key:
            self._ids[message.replace_key] = identifier

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Let bubbles already queued go out (quit right after "failed to load" still shows it).
        with contextlib.suppress(Exception):
            self._submit(self._drain()).result(2.5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)

    async def _drain(self) -> None:
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=2)
            for task in late:
                task.cancel()


class PlyerBackend(Notifier):
    """Plain bubbles, no buttons; the send runs in a worker thread because plyer blocks on D-Bus."""

    name = "plyer"

    def __init__(self, app_name: str = APP_TITLE) -> None:
        super().__init__()
        self._app_name = app_name
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="plyer")

    def probe(self) -> bool:
        try:
            from plyer import notification  # noqa: F401
        except Exception as exc:
            log.debug("plyer unavailable: %r", exc)
            return False
        if sys.platform.startswith("linux"):
            return _linux_daemon_present()
        return True

    def _send(self, message: Message) -> None:
        future = self._pool.submit(self._blocking_send, message)
        future.add_done_callback(lambda f: self._done(f, message))

    def _blocking_send(self, message: Message) -> None:
        from plyer import notification

        notification.notify(title=message.title, message=message.body, app_name=self._app_name, timeout=10)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _linux_daemon_present() -> bool:
    """Is there an org.freedesktop.Notifications to talk to (running or D-Bus-activatable)?"""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    try:
        import dbus  # type: ignore[import-untyped, import-not-found]

        bus = dbus.SessionBus()
        name = "org.freedesktop.Notifications"
        return bool(bus.name_has_owner(name)) or name in bus.list_activatable_names()
    except ImportError:
        # plyer falls back to notify-send; we cannot ask the bus, so trust the binary.
        return shutil.which("notify-send") is not None
    except Exception as exc:
        log.debug("D-Bus check failed: %r", exc)
        return False


def choose_notifier(app_name: str = APP_TITLE, icon_path: str | None = None) -> Notifier:
    """The most capable backend that answers here. Logs the choice once, in plain words."""
    wanted = os.environ.get(NOTIFIER_ENV, "").strip().lower()
    if wanted == "log":
        return LogNotifier()
    if (wanted == "" and sys.platform.startswith("linux")) or wanted == "freedesktop":
        from lmstudio_tray.notify.freedesktop import FreedesktopBackend

        fd = FreedesktopBackend(app_name, icon_path)
        if fd.probe():
            log.info("notifications: freedesktop D-Bus (buttons: %s)", "yes" if fd.supports_buttons else "no")
            return fd
        fd.close()
    if wanted in ("", "desktop-notifier"):
        dn = DesktopNotifierBackend(app_name, icon_path)
        if dn.probe():
            log.info("notifications: desktop-notifier (buttons: %s)", "yes" if dn.supports_buttons else "no")
            return dn
        dn.close()
    if wanted in ("", "plyer"):
        plyer_backend = PlyerBackend(app_name)
        if plyer_backend.probe():
            log.info("notifications: plyer (no buttons)")
            return plyer_backend
        plyer_backend.close()
    log.info("notifications: no notification service answers; messages go to the log only")
    return LogNotifier()
