"""The one notification interface every backend implements, and the message it carries.

Backends differ in what they can do (buttons, click callbacks, closing a bubble); callers ask through
`supports_buttons` instead of checking types. `Notifier.send` never raises: a notification is a
courtesy, and a dead daemon must not take the monitor or the tray down with it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)


def guarded(callback: Callable[[], None], what: str) -> Callable[[], None]:
    """`callback` for a backend's own thread: an exception is logged, and the thread lives on."""

    def run() -> None:
        try:
            callback()
        except Exception:
            log.exception("notification %s callback failed", what)

    return run


class Urgency(str, Enum):
    LOW = "low"
    NORMAL = "normal"
    CRITICAL = "critical"


@dataclass(frozen=True)
class NotifyButton:
    label: str
    on_press: Callable[[], None]


@dataclass(frozen=True)
class Message:
    """One bubble. Messages with the same `replace_key` replace each other instead of stacking."""

    title: str
    body: str
    replace_key: str | None = None
    urgency: Urgency = Urgency.NORMAL
    buttons: tuple[NotifyButton, ...] = ()
    on_click: Callable[[], None] | None = None
    category: str = ""
    # Free-form tag for logs and tests (event kind that produced the message).
    kind: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)


class Notifier(ABC):
    """Shows messages. Subclasses implement `_send`; `send` wraps it so that nothing escapes."""

    name: str = "notifier"
    supports_buttons: bool = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = 0

    def send(self, message: Message) -> None:
        try:
            self._send(message)
        except Exception as exc:
            self._failed(message, exc)

    def _done(self, future: concurrent.futures.Future[Any], message: Message) -> None:
        """Done-callback for backends that send in another thread: failures reach `_failed` too."""
        exc = future.exception()
        if exc is not None:
            self._failed(message, exc)

    def _failed(self, message: Message, exc: BaseException) -> None:
        # One line per failure would flood the log when the daemon is gone; say it once, then debug.
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        if first:
            log.warning("could not show a notification through %s: %s", self.name, exc)
        else:
            log.debug("notification through %s failed again: %s", self.name, exc)
        log.info("notification: %s: %s", message.title, message.body)

    @abstractmethod
    def _send(self, message: Message) -> None: ...

    def close(self) -> None:
        """Release resources (threads, bus connections). Safe to call twice."""
        return None


class LogNotifier(Notifier):
    """The backend of last resort: every message becomes one log line, so nothing is lost silently."""

    name = "log"

    def _send(self, message: Message) -> None:
        log.info("notification: %s: %s", message.title, message.body)


class RecordingNotifier(Notifier):
    """Keeps every message in memory; what tests and `--demo` diagnostics assert against."""

    name = "recording"
    supports_buttons = True

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    def _send(self, message: Message) -> None:
        self.messages.append(message)

    def press(self, label: str, index: int = -1) -> None:
        """Press the button `label` on message `index` (the last by default), as a user would."""
        for button in self.messages[index].buttons:
            if button.label == label:
                button.on_press()
                return
        raise KeyError(label)
