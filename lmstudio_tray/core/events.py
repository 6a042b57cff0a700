"""Typed events and the in-process bus that carries them from the core to every surface.

Publishing never fails because of a subscriber: a broken tray callback must not stop the monitor.
Every subscriber names the kinds (event classes) it wants, and only those reach it. Subscribers run
synchronously in the publisher's thread (the core loop), so they only hand the event over: a surface with
work to do does it on its own thread (the tray marks itself dirty and redraws on its own thread).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lmstudio_tray.core.models import BenchPhase, DownloadFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of every bus event; `instance` names the LM Studio instance it is about, subclasses add their facts."""

    instance: str

    @property
    def kind(self) -> str:
        """The event's dotted name (`instance.online`, `model.loaded`, `load.progress`, ...), as logs and the analytics
        store spell it."""
        return _KIND_NAMES[type(self)]

    def to_json(self) -> dict[str, Any]:
        """The event's fields plus its `kind`, as plain JSON data."""
        data = asdict(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class InstanceOnline(Event):
    """An instance that was offline, refused our token or answered with errors answers normally again."""

    url: str = ""


@dataclass(frozen=True)
class InstanceOffline(Event):
    """An instance stopped answering (not published for an instance that is offline from its first poll on); `reason` is
    the client's message."""

    url: str = ""
    reason: str = ""


@dataclass(frozen=True)
class AuthFailed(Event):
    """An instance refuses our API token, or wants one we do not have."""

    url: str = ""
    reason: str = ""


@dataclass(frozen=True)
class InstanceError(Event):
    """An instance answers, but with errors or with a body the client cannot read."""

    reason: str = ""


@dataclass(frozen=True)
class StateChanged(Event):
    """An instance's `InstanceState` changed; `old` and `new` are state values (`old` is None for the first poll)."""

    old: str | None = None
    new: str = ""


@dataclass(frozen=True)
class ModelLoaded(Event):
    """A loaded copy (`instance_id`, e.g. `key:2`) of `model` appeared in an instance's listing, whoever loaded it."""

    model: str = ""
    instance_id: str = ""
    context_length: int | None = None


@dataclass(frozen=True)
class ModelUnloaded(Event):
    """A loaded copy (`instance_id`) of `model` disappeared from an instance's listing."""

    model: str = ""
    instance_id: str = ""


@dataclass(frozen=True)
class LoadStarted(Event):
    """`Actions.load` began loading `model`; `eta_seconds` is the estimate from earlier loads on that instance."""

    model: str = ""
    eta_seconds: float | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class LoadProgressed(Event):
    """New progress of a load the core runs or expects: `progress` 0..1 (None: unknown) and the seconds left."""

    model: str = ""
    progress: float | None = None
    eta_seconds: float | None = None
    estimated: bool = True  # False: LM Studio reported this progress; True: our estimate from past loads


@dataclass(frozen=True)
class LoadFinished(Event):
    """A load run by `Actions.load` finished after `seconds` (with the model's size, for load-time statistics)."""

    model: str = ""
    instance_id: str = ""
    seconds: float = 0.0
    size_bytes: int | None = None


@dataclass(frozen=True)
class LoadFailed(Event):
    """A load run by `Actions.load` failed or was cancelled; `reason` is LM Studio's or `lms`'s message."""

    model: str = ""
    reason: str = ""
    context_length: int | None = None


@dataclass(frozen=True)
class LoadWaiting(Event):
    """`Actions.load` waits for another lmstudio-tray process (`pid`) that loads `model` on the same server; its
    progress follows as `LoadProgressed` events."""

    model: str = ""
    pid: int = 0


@dataclass(frozen=True)
class LoadWarned(Event):
    """Something a person should know before a load runs: LM Studio's estimate says it will not fit, or no estimate is
    available there; `message` says it in words, `fits` is the estimate's verdict (None: no estimate)."""

    model: str = ""
    message: str = ""
    fits: bool | None = None


@dataclass(frozen=True)
class ServerStarted(Event):
    """`Actions.server_start` started an instance's LM Studio server through `lms`."""

    pass


@dataclass(frozen=True)
class ServerStopped(Event):
    """`Actions.server_stop` stopped an instance's LM Studio server through `lms`."""

    pass


@dataclass(frozen=True)
class ServerSettingsRead(Event):
    """`ServerControl.refresh` read this machine's LM Studio anew (its server's settings, whether its service
    runs); published for each local instance, so a status display redraws what it shows of them."""

    pass


@dataclass(frozen=True)
class DownloadStarted(Event):
    """The core started following a download of `model`: LM Studio's `job_id` (an `lms get` run: `via_lms`), its size
    when known; `attached` when the job was already running (asked for again)."""

    model: str = ""
    job_id: str = ""
    total_bytes: int | None = None
    via_lms: bool = False
    attached: bool = False


@dataclass(frozen=True)
class DownloadProgressed(Event):
    """New figures of a followed download: bytes so far, the size, LM Studio's speed (None: not said), paused in LM
    Studio."""

    model: str = ""
    job_id: str = ""
    downloaded_bytes: int | None = None
    total_bytes: int | None = None
    bytes_per_second: float | None = None
    paused: bool = False


@dataclass(frozen=True)
class DownloadCompleted(Event):
    """A followed download finished after `seconds`; the instance's model list was refreshed before this was
    published, so the model is in the status already."""

    model: str = ""
    job_id: str = ""
    total_bytes: int | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class DownloadFailed(Event):
    """A download failed (`cause` says why, as a kind); `reason` is LM Studio's or `lms`'s words."""

    model: str = ""
    job_id: str = ""
    reason: str = ""
    cause: DownloadFailure = DownloadFailure.FAILED
    downloaded_bytes: int | None = None
    total_bytes: int | None = None


@dataclass(frozen=True)
class DownloadAlreadyDownloaded(Event):
    """A download was asked for a model that is downloaded already: nothing was downloaded."""

    model: str = ""


@dataclass(frozen=True)
class SessionFailing(Event):
    """An OpenCode session failed against LM Studio `failures` times in a row; published once per streak by
    `SessionTracker`, and a success ends the streak."""

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


@dataclass(frozen=True)
class BenchStarted(Event):
    """A bench (`lmstudio-tray bench`, a tool) began on `instance`: the models it runs, the suite, its steps (`total`:
    models × runs); `pid` is the process that runs it (another process's when it runs in a terminal)."""

    models: tuple[str, ...] = ()
    suite: str = ""
    total: int = 0
    pid: int = 0


@dataclass(frozen=True)
class BenchProgressed(Event):
    """A bench moved on: `model` is being loaded, run (`step` of `total`, 1-based) or put back (`phase`; None: not
    known)."""

    model: str = ""
    step: int = 0
    total: int = 0
    phase: BenchPhase | None = None
    pid: int = 0


@dataclass(frozen=True)
class BenchFinished(Event):
    """A bench ended with results: the fastest model (generated tokens/s, its median over the runs), how many
    models, how long it took."""

    fastest: str = ""
    tokens_per_s: float | None = None
    models: int = 0
    seconds: float = 0.0
    pid: int = 0


@dataclass(frozen=True)
class BenchFailed(Event):
    """A bench stopped without results: `reason` says why; `cancelled` when a person stopped it (Ctrl-C)."""

    reason: str = ""
    cancelled: bool = False
    pid: int = 0


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
    LoadWaiting: "load.waiting",
    LoadWarned: "load.warned",
    ServerStarted: "server.started",
    ServerStopped: "server.stopped",
    ServerSettingsRead: "server.settings",
    DownloadStarted: "download.started",
    DownloadProgressed: "download.progress",
    DownloadCompleted: "download.completed",
    DownloadFailed: "download.failed",
    DownloadAlreadyDownloaded: "download.already_downloaded",
    SessionFailing: "session.failing",
    VerdictGiven: "validate.verdict",
    BenchStarted: "bench.started",
    BenchProgressed: "bench.progress",
    BenchFinished: "bench.finished",
    BenchFailed: "bench.failed",
}

# Groups subscribers name instead of spelling out every kind.
INSTANCE_KINDS: tuple[type[Event], ...] = (InstanceOnline, InstanceOffline, AuthFailed, InstanceError, StateChanged)
MODEL_KINDS: tuple[type[Event], ...] = (ModelLoaded, ModelUnloaded)
LOAD_KINDS: tuple[type[Event], ...] = (LoadStarted, LoadProgressed, LoadFinished, LoadFailed, LoadWaiting, LoadWarned)
SERVER_KINDS: tuple[type[Event], ...] = (ServerStarted, ServerStopped, ServerSettingsRead)
DOWNLOAD_KINDS: tuple[type[Event], ...] = (
    DownloadStarted, DownloadProgressed, DownloadCompleted, DownloadFailed, DownloadAlreadyDownloaded,
)
BENCH_KINDS: tuple[type[Event], ...] = (BenchStarted, BenchProgressed, BenchFinished, BenchFailed)
# Published with (right after) a change of what `Core.status()` reports: what a status display redraws on.
STATUS_KINDS: tuple[type[Event], ...] = INSTANCE_KINDS + MODEL_KINDS + LOAD_KINDS + SERVER_KINDS + DOWNLOAD_KINDS
STATUS_KINDS += BENCH_KINDS  # a bench in progress is a line of the status (`StatusReport.benches`)
ALL_KINDS: tuple[type[Event], ...] = tuple(_KIND_NAMES)

Handler = Callable[[Event], None]


@dataclass(eq=False)
class _Subscription:
    handler: Handler


class EventBus:
    """Dispatch by the event's class: publishing costs nothing for subscribers that did not ask for it
    (a `VerdictGiven` per hook call reaches the analytics writer, not the tray)."""

    def __init__(self) -> None:
        # kind -> its subscriptions in subscription order; replaced, never mutated, so that `publish`
        # (on the core loop) reads it without a lock while a surface's thread subscribes.
        self._subs: dict[type[Event], tuple[_Subscription, ...]] = {}
        self._lock = threading.Lock()

    def subscribe(self, handler: Handler, *kinds: type[Event]) -> Callable[[], None]:
        """Call `handler` for the events of `kinds` (event classes; `ALL_KINDS` for every one).

        Returns the unsubscribe function. Subscribers run synchronously on the publisher's thread (the
        core loop): a surface with work to do hands the event to its own thread.
        """
        wanted = _checked_kinds(kinds)
        sub = _Subscription(handler)
        with self._lock:
            subs = dict(self._subs)
            for kind in wanted:
                subs[kind] = (*subs.get(kind, ()), sub)
            self._subs = subs

        def unsubscribe() -> None:
            with self._lock:
                subs = dict(self._subs)
                for kind in wanted:
                    left = tuple(s for s in subs.get(kind, ()) if s is not sub)
                    if left:
                        subs[kind] = left
                    else:
                        subs.pop(kind, None)
                self._subs = subs

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Hand `event` to the subscribers of its class, synchronously on the calling thread (the core loop). A
        subscriber that raises is logged and skipped; the exception never reaches the caller."""
        for sub in self._subs.get(type(event), ()):
            try:
                sub.handler(event)
            except Exception:  # a subscriber's bug must never reach the monitor
                log.exception("event handler failed for %s", event.kind)

    def queue(self, *kinds: type[Event], maxsize: int = 1000) -> tuple[asyncio.Queue[Event], Callable[[], None]]:
        """An asyncio queue fed by the bus with the events of `kinds` (for consumers that batch).

        When the consumer falls behind, the oldest events are dropped: the hook path must never block.
        """
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)

        def put(event: Event) -> None:
            if q.full():
                q.get_nowait()
            q.put_nowait(event)

        return q, self.subscribe(put, *kinds)


def _checked_kinds(kinds: tuple[type[Event], ...]) -> tuple[type[Event], ...]:
    if not kinds:
        raise TypeError("EventBus.subscribe needs the event kinds to deliver (event classes, or ALL_KINDS)")
    unknown = [k for k in kinds if k not in _KIND_NAMES]
    if unknown:
        names = ", ".join(getattr(k, "__name__", repr(k)) for k in unknown)
        raise TypeError(f"not an event kind: {names} (subscribe to the classes in core/events.py)")
    return tuple(dict.fromkeys(kinds))
