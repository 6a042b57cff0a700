"""Linux notifications straight over D-Bus (`org.freedesktop.Notifications`) with jeepney.

Why not desktop-notifier on Linux: it brings dbus-fast, bidict, xml.etree and its own asyncio loop
thread: building it and sending one bubble adds 4.1 MiB to the tray against 1.0 MiB here
(`bench/notify_rss.py`), and jeepney (pure Python) is already loaded to read the Secret Service.
Talking to the spec directly also lets us use what desktop-notifier does not: `replaces_id` (an
update replaces the bubble on screen instead of close-then-send), the body markup capability, and one
match rule for the action/closed signals.

Threads: one daemon thread owns reading the bus connection and blocks in `select()` on its socket
(zero CPU while idle); it routes method replies to waiting calls and the `ActionInvoked` /
`NotificationClosed` signals to button callbacks. Sends go through a second daemon thread, started
on first use, so a hung daemon never blocks the caller, and so sends are serialised: an update
waits for the id of the bubble it replaces.
"""

from __future__ import annotations

import concurrent.futures
import html
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmstudio_tray.notify.base import Message, Notifier, Urgency, guarded

log = logging.getLogger(__name__)

BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"
INTERFACE = "org.freedesktop.Notifications"
DEFAULT_ACTION = "default"  # the spec's key for "the bubble itself was clicked"
PROBE_TIMEOUT = 3.0
CALL_TIMEOUT = 5.0  # one Notify; a daemon that takes longer is treated as gone for this message
CLOSE_FLUSH = 2.5  # how long close() lets queued bubbles go out
# The spec's urgency hint is a byte: 0 low, 1 normal, 2 critical.
URGENCY_BYTE = {Urgency.LOW: 0, Urgency.NORMAL: 1, Urgency.CRITICAL: 2}


def icon_argument(icon: str | None) -> str:
    """The spec's `app_icon`: a file:// URI for a file, else an icon-theme name (or nothing)."""
    if not icon:
        return ""
    path = Path(icon)
    return path.as_uri() if path.is_absolute() else icon


def notify_actions(message: Message) -> tuple[list[str], dict[str, Callable[[], None]]]:
    """The flat [key, label, ...] list for Notify, and what each key runs when invoked."""
    actions: list[str] = []
    callbacks: dict[str, Callable[[], None]] = {}
    if message.on_click is not None:
        actions += [DEFAULT_ACTION, ""]
        callbacks[DEFAULT_ACTION] = guarded(message.on_click, "click")
    for index, button in enumerate(message.buttons):
        key = f"button-{index}"
        actions += [key, button.label]
        callbacks[key] = guarded(button.on_press, button.label)
    return actions, callbacks


@dataclass
class _Call:
    """A method call waiting for its reply; `on_reply` runs in the listener thread, before any later
    message is read, so a bubble's callbacks are in place before its ActionInvoked can arrive."""

    future: concurrent.futures.Future[tuple[Any, ...]] = field(default_factory=concurrent.futures.Future)
    on_reply: Callable[[tuple[Any, ...]], None] | None = None


class _Bus:
    """One session-bus connection and the daemon thread that reads it."""

    def __init__(
        self, timeout: float, on_signal: Callable[[Any], None], on_lost: Callable[[_Bus], None]
    ) -> None:
        from jeepney.bus import get_bus  # type: ignore[import-untyped]
        from jeepney.io.blocking import prep_socket  # type: ignore[import-untyped]
        from jeepney.io.threading import DBusConnection  # type: ignore[import-untyped]

        # prep_socket bounds connect + authentication by `timeout` (jeepney's own open_dbus_connection
        # waits up to 10 s for Hello; here Hello is an ordinary call with our timeout).
        self._conn: Any = DBusConnection(prep_socket(get_bus("SESSION"), False, timeout=timeout))
        self._on_signal = on_signal
        self._on_lost = on_lost
        self._serials = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._listen, name="notify-dbus", daemon=True)
        self._thread.start()
        try:
            from jeepney.bus_messages import MatchRule, message_bus  # type: ignore[import-untyped]

            self.call(message_bus.Hello(), timeout)
            rule = MatchRule(type="signal", interface=INTERFACE, path=OBJECT_PATH)
            self.call(message_bus.AddMatch(rule), timeout)
        except BaseException:
            self.close()
            raise

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def call(self, msg: Any, timeout: float, on_reply: Callable[[tuple[Any, ...]], None] | None = None) -> Any:
        pending = _Call(on_reply=on_reply)
        with self._lock:
            serial = next(self._serials)
            self._calls[serial] = pending
        try:
            self._conn.send(msg, serial=serial)
            return pending.future.result(timeout)
        finally:
            with self._lock:
                self._calls.pop(serial, None)

    def _listen(self) -> None:
        from jeepney.io.threading import ReceiveStopped

        while True:
            try:
                msg = self._conn.receive()  # blocks in select() on the socket and the stop pipe
            except ReceiveStopped:
                break
            except Exception as exc:
                if not self._stopping:
                    log.debug("notification bus connection lost: %r", exc)
                    self._fail_all(ConnectionError(f"session bus connection lost: {exc}"))
                    self._on_lost(self)
                break
            try:
                self._dispatch(msg)
            except Exception:
                log.exception("could not handle a message from the notification daemon")

    def _dispatch(self, msg: Any) -> None:
        from jeepney import HeaderFields, MessageType  # type: ignore[import-untyped]
        from jeepney.wrappers import DBusErrorResponse  # type: ignore[import-untyped]

        kind = msg.header.message_type
        if kind == MessageType.signal:
            self._on_signal(msg)
            return
        if kind not in (MessageType.method_return, MessageType.error):
            return
        with self._lock:
            pending = self._calls.pop(msg.header.fields.get(HeaderFields.reply_serial, -1), None)
        if pending is None:
            return  # a reply that came after its caller gave up
        if kind == MessageType.error:
            pending.future.set_exception(DBusErrorResponse(msg))
            return
        if pending.on_reply is not None:
            pending.on_reply(msg.body)
        pending.future.set_result(msg.body)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            calls, self._calls = self._calls, {}
        for pending in calls.values():
            if not pending.future.done():
                pending.future.set_exception(exc)

    def close(self, join: float = 2.0) -> None:
        self._stopping = True
        try:
            self._conn.interrupt()
            if self._thread is not threading.current_thread():
                self._thread.join(join)
        finally:
            self._conn.close()
            self._fail_all(ConnectionError("notifier closed"))


_Item = tuple["Message | None", "concurrent.futures.Future[None]"]


class FreedesktopBackend(Notifier):
    """`org.freedesktop.Notifications` over jeepney: buttons, click callbacks, in-place updates."""

    name = "freedesktop"

    def __init__(self, app_name: str = "LM Studio Tray", icon_path: str | None = None) -> None:
        super().__init__()
        self._app_name = app_name
        self._icon = icon_argument(icon_path)
        self._bus: _Bus | None = None
        self._bus_lock = threading.Lock()
        self.body_markup = False
        self.capabilities: frozenset[str] = frozenset()
        # Bubble state, shared by the sender and the listener thread (guarded by _state_lock).
        self._state_lock = threading.Lock()
        self._ids: dict[str, int] = {}  # replace_key -> id of the bubble on screen
        self._actions: dict[int, dict[str, Callable[[], None]]] = {}  # id -> action key -> callback
        # (message, done) to send; (None, done) marks a flush point; None stops the sender.
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._closed = False  # no new sends
        self._shut = False  # no new connections either (set once queued sends had their chance)

    # ---- connection -----------------------------------------------------------------------------

    def _connect(self, timeout: float) -> _Bus:
        with self._bus_lock:
            if self._shut:
                raise RuntimeError("notifier closed")
            if self._bus is None:
                self._bus = _Bus(timeout, self._on_signal, self._on_lost)
            return self._bus

    def _on_lost(self, bus: _Bus) -> None:
        # The bus went away (session ended, dbus-daemon restarted): the next send connects again.
        with self._bus_lock:
            if self._bus is bus:
                self._bus = None
        bus.close()
        with self._state_lock:
            self._ids.clear()
            self._actions.clear()

    @property
    def listener(self) -> threading.Thread | None:
        """The thread reading the bus (None before the first connection); tests check it ends."""
        bus = self._bus
        return bus.thread if bus is not None else None

    def probe(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """True when a notification server answered GetCapabilities within `timeout`. Never raises."""
        deadline = time.monotonic() + timeout
        try:
            from jeepney import DBusAddress, new_method_call

            bus = self._connect(timeout)
            address = DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=INTERFACE)
            remaining = max(0.1, deadline - time.monotonic())
            (caps,) = bus.call(new_method_call(address, "GetCapabilities"), remaining)
        except Exception as exc:
            log.debug("freedesktop notification probe failed: %r", exc)
            self._drop_bus()
            return False
        self.capabilities = frozenset(str(c) for c in caps)
        self.supports_buttons = "actions" in self.capabilities
        self.body_markup = "body-markup" in self.capabilities
        return True

    def _drop_bus(self, shut: bool = False) -> None:
        with self._bus_lock:
            bus, self._bus = self._bus, None
            self._shut = self._shut or shut
        if bus is not None:
            bus.close()

    # ---- sending --------------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        if self._closed:
            raise RuntimeError("notifier closed")
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.add_done_callback(lambda f: self._done(f, message))
        self._queue.put((message, future))
        self._start_sender()

    def flush(self, timeout: float = CALL_TIMEOUT) -> bool:
        """Wait until every message sent so far reached the daemon (or failed). False on timeout."""
        if self._closed:
            return True
        marker: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((None, marker))
        self._start_sender()
        try:
            marker.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def _start_sender(self) -> None:
        with self._bus_lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="notify-send", daemon=True)
                self._sender.start()

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()  # blocks; no CPU while nothing is queued
            if item is None:
                return
            message, future = item
            if message is None:
                future.set_result(None)
                continue
            try:
                self._deliver(message)
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

    def _deliver(self, message: Message) -> None:
        from jeepney import DBusAddress, new_method_call

        bus = self._connect(CALL_TIMEOUT)
        actions, callbacks = notify_actions(message) if self.supports_buttons else ([], {})
        key = message.replace_key
        with self._state_lock:
            replaces = self._ids.get(key, 0) if key else 0
        body = html.escape(message.body, quote=False) if self.body_markup else message.body
        hints = {"urgency": ("y", URGENCY_BYTE[message.urgency])}
        address = DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=INTERFACE)
        msg = new_method_call(
            address, "Notify", "susssasa{sv}i",
            # -1: the server's default expiry, as desktop-notifier sends it.
            (self._app_name, replaces, self._icon, message.title, body, actions, hints, -1),
        )

        def shown(reply: tuple[Any, ...]) -> None:
            (bubble,) = reply
            with self._state_lock:
                if replaces and replaces != bubble:
                    self._actions.pop(replaces, None)
                if callbacks:
                    self._actions[bubble] = callbacks
                else:
                    self._actions.pop(bubble, None)  # an update without buttons drops the old ones
                if key:
                    self._ids[key] = bubble

        bus.call(msg, CALL_TIMEOUT, on_reply=shown)

    @property
    def bubbles_with_actions(self) -> int:
        """Bubbles whose button/click callbacks are still held (they are dropped when a bubble closes)."""
        with self._state_lock:
            return len(self._actions)

    # ---- signals (listener thread) --------------------------------------------------------------

    def _on_signal(self, msg: Any) -> None:
        from jeepney import HeaderFields

        if msg.header.fields.get(HeaderFields.interface) != INTERFACE:
            return
        member = msg.header.fields.get(HeaderFields.member)
        if member == "ActionInvoked":
            bubble, action = msg.body
            with self._state_lock:
                callback = self._actions.get(bubble, {}).get(action)
            if callback is not None:
                callback()
        elif member == "NotificationClosed":
            bubble = msg.body[0]
            with self._state_lock:
                self._actions.pop(bubble, None)
                for key in [k for k, v in self._ids.items() if v == bubble]:
                    del self._ids[key]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Let bubbles already queued go out (quit right after "failed to load" still shows it).
        sender = self._sender
        if sender is not None:
            self._queue.put(None)
            sender.join(CLOSE_FLUSH)
        self._drop_bus(shut=True)
        with self._state_lock:
            self._actions.clear()
            self._ids.clear()
