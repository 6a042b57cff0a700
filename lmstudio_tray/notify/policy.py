"""Which core events become a bubble, with what words, and which bubble they replace.

Pure: no IO, no threads, time from an injected clock, so every rule is tested with `FakeClock`.

Rules, in the order they apply:
- bookkeeping first (loads in flight, connection history), so switching notifications off and on
  again does not leave the policy with a wrong picture;
- notifications off → nothing; category off → nothing; quiet → failures only;
- a load raises a "loading" bubble only when it is expected to take (or has taken) longer than
  `loading_threshold`; "loaded"/"failed" replace that bubble;
- offline/online changes that come back and forth inside `flap_window` collapse into one
  "keeps dropping" bubble instead of one per change;
- the same news (kind, instance, subject) is shown once per `window`, and no kind/instance pair gets
  more than `max_per_window` bubbles per window (a load retry loop must not flood the desktop).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from lmstudio_tray.core.clock import Clock
from lmstudio_tray.core.config.schema import NotificationsConfig
from lmstudio_tray.core.events import (
    AuthFailed,
    BenchFailed,
    BenchFinished,
    DownloadCompleted,
    DownloadFailed,
    Event,
    InstanceError,
    InstanceOffline,
    InstanceOnline,
    LoadFailed,
    LoadFinished,
    LoadProgressed,
    LoadStarted,
    ModelLoaded,
    ServerStarted,
    ServerStopped,
    SessionFailing,
    StateChanged,
)
from lmstudio_tray.core.support.units import format_duration, format_size
from lmstudio_tray.notify.base import Urgency

# What quiet mode still lets through: things that need a person to act.
FAILURE_CATEGORIES = frozenset({"load_failed", "offline", "auth", "session", "download_failed"})
_ONLINE_STATES = frozenset({"idle", "ready", "loading"})
# The events `decide` looks at (the bus delivers only these; never the per-hook `VerdictGiven`).
NOTIFIED: tuple[type[Event], ...] = (
    StateChanged, LoadStarted, LoadProgressed, LoadFinished, ModelLoaded, LoadFailed, InstanceOffline,
    InstanceOnline, InstanceError, AuthFailed, ServerStarted, ServerStopped, SessionFailing, DownloadCompleted,
    DownloadFailed, BenchFinished, BenchFailed,
)
FLAP_TRANSITIONS = 3  # offline, online, offline inside flap_window = flapping


@dataclass(frozen=True)
class Decision:
    """A bubble the policy wants shown. `group` is the rate-limit family (kind without variants)."""

    event: Event
    category: str
    group: str
    title: str
    body: str
    replace_key: str
    urgency: Urgency = Urgency.NORMAL


@dataclass
class _Load:
    started: float
    eta: float | None
    shown: bool = False


class NotificationPolicy:
    def __init__(self, config: NotificationsConfig, clock: Clock, *, max_per_window: int = 3) -> None:
        self.config = config
        self._clock = clock
        self._max = max_per_window
        self._loads: dict[tuple[str, str], _Load] = {}
        self._seen_online: set[str] = set()
        self._offline_since: dict[str, float] = {}
        self._transitions: dict[str, deque[float]] = {}
        self._flap_told: dict[str, float] = {}
        self._last_news: dict[tuple[str, str, str], float] = {}
        self._history: dict[tuple[str, str], deque[float]] = {}

    # ---- public --------------------------------------------------------------------------------

    def decide(self, event: Event) -> Decision | None:
        now = self._clock.monotonic()
        candidate = self._candidate(event, now)
        if candidate is None:
            return None
        decision, subject = candidate
        if not self._allowed(decision.category):
            return None
        key = (decision.group, event.instance, subject)
        last = self._last_news.get(key)
        if last is not None and now - last < self.config.window:
            return None
        history = self._history.setdefault((decision.group, event.instance), deque())
        while history and now - history[0] >= self.config.window:
            history.popleft()
        if len(history) >= self._max:
            return None
        history.append(now)
        self._last_news[key] = now
        return decision

    def set_enabled(self, enabled: bool) -> None:
        self.config = self.config.model_copy(update={"enabled": enabled})

    def use(self, config: NotificationsConfig) -> None:
        """New settings (the config changed): one assignment, so a decision sees the old or the new ones."""
        self.config = config

    # ---- rules ---------------------------------------------------------------------------------

    def _allowed(self, category: str) -> bool:
        cfg = self.config
        if not cfg.enabled or not cfg.categories.get(category, True):
            return False
        return not (cfg.quiet and category not in FAILURE_CATEGORIES)

    def _candidate(self, event: Event, now: float) -> tuple[Decision, str] | None:
        """Bookkeeping plus wording. Returns the decision and the subject that identifies the news."""
        name = event.instance
        if isinstance(event, (DownloadCompleted, DownloadFailed)):
            return _download(event)
        if isinstance(event, (BenchFinished, BenchFailed)):
            return _bench(event)
        if isinstance(event, StateChanged):
            # The monitor says "online" only after an outage; the first poll shows up as a state change.
            if event.new in _ONLINE_STATES:
                self._seen_online.add(name)
            return None
        if isinstance(event, LoadStarted):
            load = self._loads[(name, event.model)] = _Load(now, event.eta_seconds)
            if event.eta_seconds is not None and event.eta_seconds > self.config.loading_threshold:
                load.shown = True
                return self._loading(event, event.model, None, event.eta_seconds, event.size_bytes), event.model
            return None
        if isinstance(event, LoadProgressed):
            load = self._loads.setdefault((name, event.model), _Load(now, event.eta_seconds))
            if load.shown:
                return None
            elapsed = now - load.started
            expected = elapsed + (event.eta_seconds or 0.0)
            if elapsed >= self.config.loading_threshold or expected > self.config.loading_threshold:
                load.shown = True
                return self._loading(event, event.model, event.progress, event.eta_seconds, None), event.model
            return None
        if isinstance(event, LoadFinished):
            self._loads.pop((name, event.model), None)
            took = f" in {format_duration(event.seconds)}" if event.seconds >= 1 else ""
            return (
                Decision(
                    event, "loaded", "loaded", f"{event.model} is ready",
                    f"Loaded on {name}{took}.", _load_key(name, event.model),
                ),
                event.model,
            )
        if isinstance(event, ModelLoaded):
            ctx = f" with a {event.context_length:,}-token context" if event.context_length else ""
            return (
                Decision(
                    event, "loaded", "loaded", f"{event.model} is ready",
                    f"Loaded on {name}{ctx}.", _load_key(name, event.model),
                ),
                event.model,
            )
        if isinstance(event, LoadFailed):
            self._loads.pop((name, event.model), None)
            reason = event.reason or "LM Studio gave no reason"
            return (
                Decision(
                    event, "load_failed", "load_failed", f"Could not load {event.model}",
                    f"{name}: {reason}", _load_key(name, event.model), Urgency.CRITICAL,
                ),
                f"{event.model}\n{reason}",
            )
        if isinstance(event, (InstanceOffline, InstanceOnline)):
            return self._connection(event, now)
        if isinstance(event, InstanceError):
            if name not in self._seen_online:
                return None
            return (
                Decision(
                    event, "offline", "instance.error", f"{name} is answering with errors",
                    event.reason or "LM Studio answers, but not the way it should.",
                    f"conn:{name}", Urgency.CRITICAL,
                ),
                event.reason,
            )
        if isinstance(event, AuthFailed):
            where = f" at {event.url}" if event.url else ""
            reason = event.reason.rstrip(". ") if event.reason else ""
            body = (
                f"LM Studio{where} wants an API token, or refused ours{': ' + reason if reason else ''}. Create a "
                f"token in LM Studio (Developer → Server Settings → Manage Tokens), then store it with "
                f"`lmstudio-tray token set {name}`."
            )
            return (
                Decision(event, "auth", "auth", f"{name}: API token needed", body, f"auth:{name}",
                         Urgency.CRITICAL),
                event.reason,
            )
        if isinstance(event, (ServerStarted, ServerStopped)):
            started = isinstance(event, ServerStarted)
            title = f"{name}: server {'started' if started else 'stopped'}"
            body = "LM Studio's API server is up." if started else "LM Studio's API server was stopped."
            return Decision(event, "server", event.kind, title, body, f"server:{name}"), ""
        if isinstance(event, SessionFailing):
            model = f" with {event.model}" if event.model else ""
            body = f"{event.failures} requests{model} failed in a row"
            body += f": {event.reason}" if event.reason else "."
            return (
                Decision(
                    event, "session", "session", "An OpenCode session keeps failing", body,
                    f"session:{name}:{event.session_id}", Urgency.CRITICAL,
                ),
                event.session_id,
            )
        return None

    def _connection(self, event: InstanceOffline | InstanceOnline, now: float) -> tuple[Decision, str] | None:
        name = event.instance
        offline = isinstance(event, InstanceOffline)
        if offline:
            if name not in self._seen_online:
                # Offline at start-up is the normal state of a closed LM Studio, not news.
                return None
            if name in self._offline_since:
                return None
            self._offline_since[name] = now
        else:
            first = name not in self._seen_online
            self._seen_online.add(name)
            since = self._offline_since.pop(name, None)
            if first or since is None:
                return None
        transitions = self._transitions.setdefault(name, deque())
        transitions.append(now)
        while transitions and now - transitions[0] > self.config.flap_window:
            transitions.popleft()
        key = f"conn:{name}"
        if len(transitions) >= FLAP_TRANSITIONS:
            told = self._flap_told.get(name)
            if told is not None and now - told < self.config.flap_window:
                return None
            self._flap_told[name] = now
            body = (
                f"It switched between offline and online {len(transitions)} times "
                f"in {format_duration(now - transitions[0])}. Further changes stay quiet for "
                f"{format_duration(self.config.flap_window)}."
            )
            decision = Decision(event, "offline", "instance.flapping", f"{name} keeps dropping", body,
                                key, Urgency.CRITICAL)
            return decision, "flapping"
        if offline:
            assert isinstance(event, InstanceOffline)
            reason = f" ({event.reason})" if event.reason else ""
            body = f"LM Studio at {event.url or name} does not answer{reason}."
            return Decision(event, "offline", "instance.offline", f"{name} is offline", body, key,
                            Urgency.CRITICAL), "offline"
        assert since is not None
        body = f"Back after {format_duration(now - since)}."
        return Decision(event, "online", "instance.online", f"{name} is back online", body, key), "online"

    def _loading(
        self, event: Event, model: str, progress: float | None, eta: float | None, size: int | None
    ) -> Decision:
        parts = []
        if progress is not None:
            parts.append(f"{progress * 100:.0f} %")
        if eta is not None:
            parts.append(f"about {format_duration(eta)} left")
        if size:
            parts.append(format_size(size))
        detail = f" ({', '.join(parts)})" if parts else ""
        return Decision(
            event, "loading", "loading", f"Loading {model}",
            f"On {event.instance}{detail}.", _load_key(event.instance, model), Urgency.LOW,
        )


def _download(event: DownloadCompleted | DownloadFailed) -> tuple[Decision, str]:
    """A download's end: completed (with how to load it) or failed (with LM Studio's reason)."""
    key = f"download:{event.instance}:{event.model}"
    if isinstance(event, DownloadCompleted):
        size = format_size(event.total_bytes)
        detail = ", ".join(p for p in (size, f"in {format_duration(event.seconds)}" if event.seconds >= 1 else "") if p)
        body = (f"On {event.instance}{f' ({detail})' if detail else ''}. Load it with "
                f"`lmstudio-tray load {event.model}`.")
        return Decision(event, "downloaded", "downloaded", f"{event.model} downloaded", body, key), event.model
    reason = event.reason or "LM Studio gave no reason"
    body = f"{event.instance}: {reason.rstrip('. ')}. Try again with `lmstudio-tray get {event.model}`."
    return (Decision(event, "download_failed", "download_failed", f"Could not download {event.model}", body, key,
                     Urgency.CRITICAL), f"{event.model}\n{reason}")


def _bench(event: BenchFinished | BenchFailed) -> tuple[Decision, str] | None:
    """A bench's end: the fastest model and its speed, or why it stopped (nothing when a person stopped it)."""
    key = f"bench:{event.instance}:{event.pid}"
    if isinstance(event, BenchFailed):
        if event.cancelled:
            return None  # the person who pressed Ctrl-C knows
        body = f"On {event.instance}: {event.reason.rstrip('. ') or 'no reason given'}. What was loaded is put back."
        return Decision(event, "bench", "bench", "Benchmark stopped", body, key), f"{event.pid}\n{event.reason}"
    speed = f", {event.tokens_per_s:.1f} tok/s" if event.tokens_per_s is not None else ""
    others = f" of {event.models} models" if event.models > 1 else ""
    body = (f"Fastest{others} on {event.instance}: {event.fastest}{speed}. "
            "The figures are in `lmstudio-tray stats`.")
    # each bench is news of its own: a second one of the same process within the window says something else
    return Decision(event, "bench", "bench", "Benchmark done", body, key), f"{event.pid}\n{event.seconds}"


def _load_key(instance: str, model: str) -> str:
    return f"load:{instance}:{model}"
