"""Typed events and the in-process bus that carries them from the core to every surface.

Publishing never fails because of a subscriber: a broken tray callback must not stop the monitor.
Subscribers run synchronously in the publisher's thread (the core loop); a surface living in another
thread hands the event over itself (the tray does so through its own queue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    instance: str

    @property
    def kind(self) -> str:
        return _KIND_NAMES[type(self)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class InstanceOnline(Event):
    url: str = ""


@dataclass(frozen=True)
class InstanceOffline(Event):
    url: str = ""
    reason: str = ""


@dataclass(frozen=True)
class AuthFailed(Event):
    url: str = ""
    reason: str = ""


@dataclass(frozen=True)
class InstanceError(Event):
    reason: str = ""


@dataclass(frozen=True)
class StateChanged(Event):
    old: str | None = None
    new: str = ""


@dataclass(frozen=True)
class ModelLoaded(Event):
    model: str = ""
    instance_id: str = ""
    context_length: int | None = None


@dataclass(frozen=True)
class ModelUnloaded(Event):
    model: str = ""
    instance_id: str = ""


@dataclass(frozen=True)
class LoadStarted(Event):
    model: str = ""
    eta_seconds: float | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class LoadProgressed(Event):
    model: str = ""
    progress: float | None = None
    eta_seconds: float | None = None
    estimated: bool = True  # False: LM Studio reported this progress; True: our estimate from past loads


@dataclass(frozen=True)
class LoadFinished(Event):
    model: str = ""
    instance_id: str = ""
    seconds: float = 0.0
    size_bytes: int | None = None


@dataclass(frozen=True)
class LoadFailed(Event):
    model: str = ""
    reason: str = ""
    context_length: int | None = None


@dataclass(frozen=True)
class ServerStarted(Event):
    pass


@dataclass(frozen=True)
class ServerStopped(Event):
    pass


@dataclass(frozen=True)
class SessionFailing(Event):
    session_id: str = ""
    model: str = ""
    failures: int = 0
    reason: str = ""


@dataclass(frozen=True)
class VerdictGiven(Event):
    """One /v1/validate answer (`instance` is "" when no instance matched), for the analytics store."""

    model: str = ""
    model_key: str = ""
    category: str = ""
    ok: bool = True
    latency_ms: float = 0.0
    session_id: str = ""


_KIND_NAMES: dict[type[Event], str] = {
    InstanceOnline: "instance.online",
    InstanceOffline: "instance.offline",
    AuthFailed: "instance.auth_failed",
    InstanceError: "instance.error",
    StateChanged: "instance.state",
    ModelLoaded: "model.loaded",
    ModelUnloaded: "model.unloaded",
    LoadStarted: "load.started",
    LoadProgressed: "load.progress",
    LoadFinished: "load.finished",
    LoadFailed: "load.failed",
    ServerStarted: "server.started",
    ServerStopped: "server.stopped",
    SessionFailing: "session.failing",
    VerdictGiven: "validate.verdict",
}

E = TypeVar("E", bound=Event)
Handler = Callable[[Event], None]


@dataclass
class _Subscription:
    handler: Handler
    kinds: tuple[type[Event], ...] = field(default_factory=tuple)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[_Subscription] = []

    def subscribe(self, handler: Handler, *kinds: type[Event]) -> Callable[[], None]:
        """Call `handler` for every event (or only those of `kinds`). Returns an unsubscribe function."""
        sub = _Subscription(handler, kinds)
        self._subs.append(sub)

        def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for sub in list(self._subs):
            if sub.kinds and not isinstance(event, sub.kinds):
                continue
            try:
                sub.handler(event)
            except Exception:  # a subscriber's bug must never reach the monitor
                log.exception("event handler failed for %s", event.kind)

    def queue(self, *kinds: type[Event], maxsize: int = 1000) -> tuple[asyncio.Queue[Event], Callable[[], None]]:
        """An asyncio queue fed by the bus (for consumers that batch, like the analytics writer).

        When the consumer falls behind, the oldest events are dropped: the hook path must never block.
        """
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)

        def put(event: Event) -> None:
            if q.full():
                q.get_nowait()
            q.put_nowait(event)

        return q, self.subscribe(put, *kinds)
