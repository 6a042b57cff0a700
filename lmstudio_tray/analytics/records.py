"""Turning what the store is fed (bus events, forwarded OpenCode events, resource samples) into rows.

Pure functions, run on the writer's thread: the hook path only appends the raw item to a queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lmstudio_tray.analytics.store import Row
from lmstudio_tray.core import events as ev

# (instance, model) -> the context length it is loaded with now, if known
ContextLookup = Callable[[str, str], "int | None"]
# A user pressing Esc is not the model failing.
ABORTED = frozenset({"MessageAbortedError"})


@dataclass(frozen=True)
class ResourceSample:
    instance: str
    rss_bytes: int | None
    cpu_percent: float | None
    processes: int
    loaded_bytes: int
    loaded_models: int


@dataclass(frozen=True)
class ModelPresent:
    """A model seen loaded when recording starts (it was loaded before, so no `model.loaded` came)."""

    instance: str
    model: str
    instance_id: str
    context_length: int | None


_INSERT_VERDICT = ("INSERT INTO verdicts(ts, instance, model, model_key, category, ok, latency_ms, session_id) "
                   "VALUES (?,?,?,?,?,?,?,?)")
_INSERT_MODEL_EVENT = ("INSERT INTO model_events(ts, instance, model, instance_id, kind, context_length) "
                       "VALUES (?,?,?,?,?,?)")
_INSERT_LOAD = ("INSERT INTO loads(ts, instance, model, instance_id, size_bytes, seconds, ok, reason, context_length) "
                "VALUES (?,?,?,?,?,?,?,?,?)")
_INSERT_HEALTH = "INSERT INTO health(ts, instance, kind, old, new, reason) VALUES (?,?,?,?,?,?)"
_INSERT_RESOURCE = ("INSERT INTO resources(ts, instance, rss_bytes, cpu_percent, processes, loaded_bytes, "
                    "loaded_models) VALUES (?,?,?,?,?,?,?)")
_INSERT_SESSION_EVENT = ("INSERT INTO session_events(ts, session_id, instance, model, kind, error_name, message) "
                         "VALUES (?,?,?,?,?,?,?)")
_UPSERT_SESSION = (
    "INSERT INTO sessions(session_id, ts, last_seen, instance, model, agent, outcome, last_error, ended) "
    "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(session_id) DO UPDATE SET "
    "last_seen=max(last_seen, excluded.last_seen), instance=coalesce(excluded.instance, instance), "
    "model=coalesce(excluded.model, model), agent=coalesce(excluded.agent, agent), "
    "outcome=coalesce(excluded.outcome, outcome), last_error=coalesce(excluded.last_error, last_error), "
    "ended=coalesce(excluded.ended, ended)"
)
# OpenCode repeats message.updated for one message: the last version wins
_UPSERT_TURN = (
    "INSERT INTO turns(ts, message_id, session_id, instance, model, agent, provider, input_tokens, output_tokens, "
    "reasoning_tokens, cache_read_tokens, duration_s, tokens_per_s, loaded_context, error) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(message_id) DO UPDATE SET ts=excluded.ts, "
    "input_tokens=excluded.input_tokens, output_tokens=excluded.output_tokens, "
    "reasoning_tokens=excluded.reasoning_tokens, cache_read_tokens=excluded.cache_read_tokens, "
    "duration_s=excluded.duration_s, tokens_per_s=excluded.tokens_per_s, error=excluded.error, "
    "loaded_context=coalesce(loaded_context, excluded.loaded_context)"
)


def event_rows(ts: float, event: ev.Event) -> list[Row]:
    """Rows for one core bus event (events the store does not keep give none)."""
    i = event.instance
    if isinstance(event, ev.VerdictGiven):
        return [(_INSERT_VERDICT, (ts, i or None, event.model, event.model_key or None, event.category,
                                   int(event.ok), event.latency_ms, event.session_id or None))]
    if isinstance(event, ev.ModelLoaded):
        return [(_INSERT_MODEL_EVENT, (ts, i, event.model, event.instance_id, "loaded", event.context_length))]
    if isinstance(event, ev.ModelUnloaded):
        return [(_INSERT_MODEL_EVENT, (ts, i, event.model, event.instance_id, "unloaded", None))]
    if isinstance(event, ev.LoadFinished):
        return [(_INSERT_LOAD, (ts, i, event.model, event.instance_id, event.size_bytes, event.seconds, 1, None,
                                None))]
    if isinstance(event, ev.LoadFailed):
        return [(_INSERT_LOAD, (ts, i, event.model, None, None, None, 0, event.reason[:500], event.context_length))]
    if isinstance(event, ev.StateChanged):
        return [(_INSERT_HEALTH, (ts, i, "state", event.old, event.new, None))]
    if isinstance(event, (ev.InstanceOffline, ev.AuthFailed, ev.InstanceError)):
        return [(_INSERT_HEALTH, (ts, i, event.kind.split(".", 1)[1], None, None, event.reason[:500]))]
    if isinstance(event, ev.InstanceOnline):
        return [(_INSERT_HEALTH, (ts, i, "online", None, None, None))]
    return []


def resource_rows(ts: float, sample: ResourceSample) -> list[Row]:
    return [(_INSERT_RESOURCE, (ts, sample.instance, sample.rss_bytes, sample.cpu_percent, sample.processes,
                                sample.loaded_bytes, sample.loaded_models))]


def present_rows(ts: float, p: ModelPresent) -> list[Row]:
    return [(_INSERT_MODEL_EVENT, (ts, p.instance, p.model, p.instance_id, "present", p.context_length))]


def forwarded_rows(received: float, record: Mapping[str, Any], context_of: ContextLookup | None = None) -> list[Row]:
    """Rows for one OpenCode event as `SessionTracker` hands it to its sinks."""
    kind = record.get("type")
    props = record.get("properties")
    if not isinstance(props, Mapping):
        return []
    ts = _seconds(record.get("time")) or received
    session_id = _str(record.get("session_id"))
    instance = _str(record.get("instance"))
    model = _str(record.get("model"))
    if kind == "message.updated":
        return _turn_rows(ts, props.get("info"), session_id, instance, model, record, context_of)
    if not session_id:
        return []
    if kind == "session.error":
        error = props.get("error")
        name, message = _error_text(error)
        if name in ABORTED:
            return [_session(session_id, ts, instance, model, outcome="aborted"),
                    (_INSERT_SESSION_EVENT, (ts, session_id, instance, model, "aborted", name, message))]
        return [_session(session_id, ts, instance, model, outcome="error", last_error=message or name),
                (_INSERT_SESSION_EVENT, (ts, session_id, instance, model, "error", name, message))]
    if kind == "session.status":
        status = props.get("status")
        if isinstance(status, Mapping) and status.get("type") == "retry":
            message = (_str(status.get("message")) or "retrying").splitlines()[0][:300]
            return [_session(session_id, ts, instance, model, outcome="retrying", last_error=message),
                    (_INSERT_SESSION_EVENT, (ts, session_id, instance, model, "retry", None, message))]
        return [_session(session_id, ts, instance, model)]
    if kind == "session.idle":
        return [_session(session_id, ts, instance, model, ended=ts)]
    if kind == "session.compacted":
        return [_session(session_id, ts, instance, model),
                (_INSERT_SESSION_EVENT, (ts, session_id, instance, model, "compacted", None, None))]
    return []


def _turn_rows(ts: float, info: Any, session_id: str | None, instance: str | None, model: str | None,
               record: Mapping[str, Any], context_of: ContextLookup | None) -> list[Row]:
    if not isinstance(info, Mapping) or info.get("role") != "assistant":
        return []
    times = info.get("time") if isinstance(info.get("time"), Mapping) else {}
    assert isinstance(times, Mapping)
    created, completed = _seconds(times.get("created")), _seconds(times.get("completed"))
    error = info.get("error")
    if not completed and not error:
        return []  # still streaming: the final update carries the numbers
    session_id = session_id or _str(info.get("sessionID"))
    model = _str(info.get("modelID")) or model
    agent = _str(info.get("agent")) or _str(info.get("mode"))
    tokens = info.get("tokens") if isinstance(info.get("tokens"), Mapping) else {}
    assert isinstance(tokens, Mapping)
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), Mapping) else {}
    assert isinstance(cache, Mapping)
    t_in, t_out, t_reason = _int(tokens.get("input")), _int(tokens.get("output")), _int(tokens.get("reasoning"))
    t_cache = _int(cache.get("read"))
    duration = (completed - created) if completed and created and completed >= created else None
    tps = (t_out + t_reason) / duration if duration and (t_out + t_reason) else None
    error_name = _error_text(error)[0] if error else None
    loaded = context_of(instance, model) if context_of and instance and model else None
    end = completed or ts
    rows: list[Row] = [(_UPSERT_TURN, (end, _str(info.get("id")), session_id, instance, model, agent,
                                       _str(info.get("providerID")) or _str(record.get("provider_id")), t_in, t_out,
                                       t_reason, t_cache, duration, tps, loaded, error_name))]
    if session_id:
        outcome = "aborted" if error_name in ABORTED else "error" if error_name else "ok"
        rows.insert(0, _session(session_id, created or end, instance, model, agent=agent, outcome=outcome,
                                last_error=_error_text(error)[1] if error else None))
    return rows


def _session(session_id: str, ts: float, instance: str | None, model: str | None, *, agent: str | None = None,
             outcome: str | None = None, last_error: str | None = None, ended: float | None = None) -> Row:
    return (_UPSERT_SESSION, (session_id, ts, ts, instance, model, agent, outcome, last_error, ended))


def _error_text(error: Any) -> tuple[str, str]:
    if not isinstance(error, Mapping):
        return "Error", ""
    name = _str(error.get("name")) or "Error"
    data = error.get("data")
    message = _str(data.get("message")) if isinstance(data, Mapping) else None
    return name, (message or name).splitlines()[0][:300]


def _seconds(value: Any) -> float | None:
    """OpenCode stamps milliseconds since the epoch; accept seconds too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return value / 1000.0 if value > 1e11 else float(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0
