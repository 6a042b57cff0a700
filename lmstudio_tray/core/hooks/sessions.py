"""Session health and model usage from the OpenCode events the plugin forwards.

A session that keeps failing against LM Studio raises one `SessionFailing` on the bus (with the reason),
not one per retry; a success clears it. An `APIError` from LM Studio means the cached status may be
wrong, so that instance's cache is invalidated. No IO here: the endpoint calls `record` on the core loop.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.core.events import EventBus, SessionFailing
from lmstudio_tray.core.hooks.transforms import ModelUse

log = logging.getLogger(__name__)

FAILURE_THRESHOLD = 3
MAX_SESSIONS = 1000
MAX_HISTORY = 50
# A user pressing Esc is not LM Studio failing.
_NOT_FAILURES = frozenset({"MessageAbortedError"})
# OpenCode's hidden helper agents that run on `small_model` (1.18.33: the session title and summary), not on
# the model the session runs on; their requests say nothing about which model that is.
HELPER_AGENTS = frozenset({"title", "summary"})

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ForwardedEvent:
    """One OpenCode event as the plugin forwards it, plus what the plugin knows about its provider."""

    type: str
    properties: Mapping[str, Any]
    instance: str | None = None  # resolved by the caller from base_url
    base_url: str | None = None
    provider_id: str | None = None
    model: str | None = None
    time: float = 0.0


@dataclass
class SessionHealth:
    """What the forwarded events told about one OpenCode session: its instance and model, the current failure streak
    (and whether it was reported), its messages and compactions, and the models it ran on."""

    session_id: str
    instance: str | None = None
    model: str | None = None
    failures: int = 0
    last_reason: str = ""
    alerted: bool = False
    messages: int = 0
    compactions: int = 0
    history: list[ModelUse] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The session as JSON data (part of `/v1/sessions`)."""
        return {
            "session_id": self.session_id,
            "instance": self.instance,
            "model": self.model,
            "failures": self.failures,
            "last_reason": self.last_reason,
            "alerted": self.alerted,
            "messages": self.messages,
            "compactions": self.compactions,
            "models": [u.model for u in self.history],
        }


@dataclass
class ModelUsage:
    """Per instance and model: completed assistant messages, their input and output tokens, and session errors."""

    messages: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: int = 0

    def to_json(self) -> dict[str, int]:
        """The counts as JSON data (part of `/v1/sessions`)."""
        return {
            "messages": self.messages,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "errors": self.errors,
        }


class SessionTracker:
    """Session health and model usage from the OpenCode events the plugin forwards, and the model each session runs on
    (from validate).

    It keeps the last MAX_SESSIONS sessions, does no I/O and runs on the core's loop; `bus` gets `SessionFailing`,
    `invalidate` is called with an instance whose cached status LM Studio contradicted.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        invalidate: Callable[[str], None] | None = None,
        instance_for_url: Callable[[str], str | None] | None = None,
        threshold: int = FAILURE_THRESHOLD,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        """`sinks` also get every recorded event (the analytics store's queue); see `add_sink`."""
        self.bus = bus
        self._invalidate = invalidate or (lambda _name: None)
        self._instance_for_url = instance_for_url or (lambda _url: None)
        self.threshold = threshold
        self.sessions: OrderedDict[str, SessionHealth] = OrderedDict()
        self.usage: dict[tuple[str, str], ModelUsage] = {}
        self.events_seen = 0
        self.invalidations = 0
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._sinks: list[EventSink] = list(sinks)

    def add_sink(self, sink: EventSink) -> Callable[[], None]:
        """Also hand every recorded event to `sink` (the analytics store). Returns a remover."""
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink) if sink in self._sinks else None

    def session(self, session_id: str) -> SessionHealth:
        """The record of `session_id`, created when new (beyond MAX_SESSIONS the least recently seen one is
        forgotten)."""
        health = self.sessions.get(session_id)
        if health is None:
            health = self.sessions[session_id] = SessionHealth(session_id)
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(session_id)
        return health

    def history(self, session_id: str) -> list[ModelUse]:
        """The models `session_id` ran on, oldest first (a copy; empty for an unknown session)."""
        health = self.sessions.get(session_id)
        return list(health.history) if health else []

    def current(self, session_id: str) -> ModelUse | None:
        """The model (and instance) a session runs on now, as far as validate and its events told; None for
        a session never seen (or forgotten: only the last MAX_SESSIONS are kept)."""
        health = self.sessions.get(session_id)
        if health is None or not health.model:
            return None
        return ModelUse(health.model, health.instance)

    def note_model(self, session_id: str, instance: str | None, model: str, context_length: int | None = None,
                   *, agent: str | None = None) -> None:
        """Remember which model a session used (validate calls this), for compaction notes and so the tools
        know which model they must not take from under the session that calls them. A request of a helper
        agent (a title on small_model) is not the session switching models: it is not noted."""
        if agent in HELPER_AGENTS:
            return
        health = self.session(session_id)
        health.instance = instance or health.instance
        health.model = model
        if not health.history or health.history[-1].model != model:
            health.history.append(ModelUse(model, instance, context_length))
            del health.history[:-MAX_HISTORY]

    def record(self, ev: ForwardedEvent) -> None:
        """Take one forwarded event. Errors and retries extend the session's failure streak (`SessionFailing` once it
        reaches the threshold); a completed assistant message ends it and counts usage; an `APIError` invalidates the
        instance's cached status. Each event is then handed to the sinks."""
        self.events_seen += 1
        props = ev.properties
        session_id = _str(props.get("sessionID")) or _str(_get(props, "info", "sessionID"))
        instance = ev.instance
        if ev.type == "session.error":
            self._on_error(session_id, instance, ev, props.get("error"))
        elif ev.type == "session.status":
            status = props.get("status")
            retrying = isinstance(status, Mapping) and status.get("type") == "retry"
            if retrying and session_id and instance is not None:
                assert isinstance(status, Mapping)
                self._failure(session_id, instance, ev.model, _str(status.get("message")) or "retrying")
        elif ev.type == "message.updated":
            self._on_message(session_id, instance, ev, props.get("info"))
        elif ev.type == "session.compacted" and session_id:
            self.session(session_id).compactions += 1
        for sink in list(self._sinks):
            try:
                sink(_record(ev, session_id))
            except Exception:  # the store is optional; a broken one must not fail the hook
                log.exception("event sink failed")

    # ---- internals --------------------------------------------------------------------------------

    def _on_error(self, session_id: str | None, instance: str | None, ev: ForwardedEvent, error: Any) -> None:
        if not isinstance(error, Mapping):
            return
        name = _str(error.get("name")) or "Error"
        data = error.get("data") if isinstance(error.get("data"), Mapping) else {}
        assert isinstance(data, Mapping)
        message = _str(data.get("message")) or name
        if name == "APIError":
            url = _str(_get(data, "metadata", "url"))
            target = instance or (self._instance_for_url(url) if url else None)
            if target is not None:
                # LM Studio said something the cache did not predict: look again now, not at the next poll.
                self._invalidate(target)
                self.invalidations += 1
                instance = target
        if name in _NOT_FAILURES or not session_id or instance is None:
            return
        model = ev.model or (self.sessions[session_id].model if session_id in self.sessions else None)
        if model:
            self._usage(instance, model).errors += 1
        self._failure(session_id, instance, model, message)

    def _failure(self, session_id: str, instance: str, model: str | None, reason: str) -> None:
        health = self.session(session_id)
        health.instance = instance
        health.model = model or health.model
        health.failures += 1
        health.last_reason = reason.splitlines()[0][:300] if reason else ""
        if health.failures >= self.threshold and not health.alerted:
            health.alerted = True
            self.bus.publish(
                SessionFailing(
                    instance,
                    session_id=session_id,
                    model=health.model or "",
                    failures=health.failures,
                    reason=health.last_reason,
                )
            )

    def _on_message(self, session_id: str | None, instance: str | None, ev: ForwardedEvent, info: Any) -> None:
        if not isinstance(info, Mapping) or info.get("role") != "assistant" or not session_id:
            return
        if instance is None:
            return
        completed = _get(info, "time", "completed")
        if not completed or info.get("error"):
            return
        msg_id = _str(info.get("id")) or ""
        if msg_id in self._counted:
            return  # OpenCode repeats message.updated for the same message
        self._counted[msg_id] = None
        if len(self._counted) > MAX_SESSIONS * 10:
            self._counted.popitem(last=False)
        model = _str(info.get("modelID")) or ev.model or ""
        health = self.session(session_id)
        health.instance = instance
        health.messages += 1
        health.failures = 0
        health.alerted = False
        if model:
            self.note_model(session_id, instance, model, agent=_str(info.get("agent")) or _str(info.get("mode")))
            usage = self._usage(instance, model)
            usage.messages += 1
            usage.input_tokens += _int(_get(info, "tokens", "input"))
            usage.output_tokens += _int(_get(info, "tokens", "output"))

    def _usage(self, instance: str, model: str) -> ModelUsage:
        return self.usage.setdefault((instance, model), ModelUsage())

    def to_json(self) -> dict[str, Any]:
        """Everything tracked as JSON data (`/v1/sessions`): counts of events and invalidations, the sessions, and usage
        per instance and model."""
        return {
            "events": self.events_seen,
            "invalidations": self.invalidations,
            "sessions": [s.to_json() for s in self.sessions.values()],
            "usage": [
                {"instance": inst, "model": model, **u.to_json()} for (inst, model), u in sorted(self.usage.items())
            ],
        }


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _record(ev: ForwardedEvent, session_id: str | None) -> dict[str, Any]:
    return {
        "type": ev.type,
        "time": ev.time,
        "session_id": session_id,
        "instance": ev.instance,
        "provider_id": ev.provider_id,
        "model": ev.model,
        "properties": dict(ev.properties),
    }
