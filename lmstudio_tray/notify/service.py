"""Turns the core's events into desktop notifications, through the policy and one Notifier.

Runs wherever the core runs: inside the tray, or headless under `serve` (`attach_notifications`).
Event handlers run in the core loop's thread; everything here returns quickly (backends send in
their own threads) and nothing raises into the bus.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from lmstudio_tray.core.clock import Clock, SystemClock
from lmstudio_tray.core.config.schema import NotificationsConfig
from lmstudio_tray.core.events import Event, EventBus, LoadFailed
from lmstudio_tray.notify.base import Message, Notifier, NotifyButton, Urgency
from lmstudio_tray.notify.policy import NOTIFIED, Decision, NotificationPolicy

log = logging.getLogger(__name__)

RetryLoad = Callable[[str, str, "int | None"], Awaitable[Any]]


class _CoreLike(Protocol):
    """What `attach_notifications` needs from `core.runtime.Core` (kept structural to avoid a cycle)."""

    @property
    def bus(self) -> EventBus: ...

    @property
    def config(self) -> Any: ...

    @property
    def actions(self) -> Any: ...

    def on_config_change(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...


class NotificationService:
    def __init__(
        self,
        notifier: Notifier,
        config: NotificationsConfig,
        *,
        clock: Clock | None = None,
        retry_load: RetryLoad | None = None,
    ) -> None:
        self.notifier = notifier
        self.policy = NotificationPolicy(config, clock or SystemClock())
        self._retry_load = retry_load
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Buttons of the bubble each replace_key shows now: a report that replaces that bubble (the tray's
        # "Could not load" after the policy's own, Retry-carrying one) keeps them instead of dropping them.
        self._buttons: dict[str, tuple[NotifyButton, ...]] = {}
        self._buttons_lock = threading.Lock()

    # ---- wiring ---------------------------------------------------------------------------------

    def subscribe(self, bus: EventBus) -> Callable[[], None]:
        self._unsubscribe = bus.subscribe(self.handle, *NOTIFIED)
        return self.detach

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.notifier.close()

    @property
    def enabled(self) -> bool:
        return self.policy.config.enabled

    def set_enabled(self, enabled: bool) -> None:
        self.policy.set_enabled(enabled)

    # ---- events ---------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        # Remember the loop that publishes: a Retry press later comes from the notifier's thread.
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        try:
            decision = self.policy.decide(event)
            if decision is not None:
                self._send(self._message(decision))
        except Exception:
            log.exception("could not turn %s into a notification", event.kind)

    def _message(self, decision: Decision) -> Message:
        event = decision.event
        buttons: tuple[NotifyButton, ...] = ()
        if isinstance(event, LoadFailed) and self._retry_load is not None and self.notifier.supports_buttons:
            failed = event

            def press() -> None:
                self.retry(failed)

            buttons = (NotifyButton("Retry", press),)
        return Message(
            title=decision.title,
            body=decision.body,
            replace_key=decision.replace_key,
            urgency=decision.urgency,
            buttons=buttons,
            category=decision.category,
            kind=event.kind,
        )

    # ---- direct reports (user-initiated, so no dedupe: the person is waiting for an answer) -----

    def report(self, title: str, body: str, *, replace_key: str | None = None, failure: bool = True) -> None:
        if not self.policy.config.enabled:
            log.info("%s: %s", title, body)
            return
        urgency = Urgency.CRITICAL if failure else Urgency.NORMAL
        buttons: tuple[NotifyButton, ...] = ()
        if replace_key is not None and failure:
            with self._buttons_lock:
                buttons = self._buttons.get(replace_key, ())
        self._send(Message(title, body, replace_key=replace_key, urgency=urgency, buttons=buttons, kind="action"))

    def offer(self, title: str, body: str, *, button: str, on_press: Callable[[], None], replace_key: str) -> bool:
        """A message with one button (the tray's "do it anyway"); False, with nothing shown, when notifications
        are off or this backend has no buttons (the caller then says it in words)."""
        if not (self.notifier.supports_buttons and self.policy.config.enabled):
            return False
        self.notifier.send(Message(title, body, replace_key=replace_key, urgency=Urgency.CRITICAL,
                                   buttons=(NotifyButton(button, on_press),), kind="action"))
        return True

    def _send(self, message: Message) -> None:
        if message.replace_key is not None:
            with self._buttons_lock:
                if message.buttons:
                    self._buttons[message.replace_key] = message.buttons
                else:
                    self._buttons.pop(message.replace_key, None)
        self.notifier.send(message)

    def retry(self, event: LoadFailed) -> concurrent.futures.Future[Any] | None:
        """The Retry button: load the same model again in the core's loop; a failure is reported."""
        retry_load, loop = self._retry_load, self._loop
        if retry_load is None or loop is None or loop.is_closed():
            self.report(f"Could not retry {event.model}", "The monitor is not running.")
            return None
        log.info("retrying load of %s on %s", event.model, event.instance)

        async def run() -> Any:
            return await retry_load(event.instance, event.model, event.context_length)

        future = asyncio.run_coroutine_threadsafe(run(), loop)

        def done(f: concurrent.futures.Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                self.report(
                    f"Could not load {event.model}", f"{event.instance}: {exc}",
                    replace_key=f"load:{event.instance}:{event.model}",
                )

        future.add_done_callback(done)
        return future


def attach_notifications(
    core: _CoreLike, notifier: Notifier | None = None, *, clock: Clock | None = None
) -> Callable[[], None]:
    """Subscribe desktop notifications to `core`'s events. Returns the function that detaches them.

    Works without a display: with no notification service the messages go to the log.
    """
    service = make_service(core, notifier, clock=clock)
    return service.subscribe(core.bus)


def make_service(
    core: _CoreLike, notifier: Notifier | None = None, *, clock: Clock | None = None
) -> NotificationService:
    if notifier is None:
        from lmstudio_tray.notify.backends import choose_notifier

        notifier = choose_notifier()
    actions = core.actions

    async def retry_load(instance: str, model: str, context_length: int | None) -> Any:
        return await actions.load(instance, model, context_length=context_length)

    service = NotificationService(
        notifier, core.config.notifications, clock=clock or getattr(core, "clock", None), retry_load=retry_load
    )
    # the core replaces its config as a whole when settings change (a profile, a tray toggle, an edit)
    core.on_config_change(lambda config: service.policy.use(config.notifications))
    return service
