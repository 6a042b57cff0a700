"""Session health from forwarded OpenCode events."""

from __future__ import annotations

from typing import Any

from lmstudio_tray.core.events import Event, EventBus, SessionFailing
from lmstudio_tray.core.hooks.sessions import ForwardedEvent, SessionTracker


def tracker(threshold: int = 3) -> tuple[SessionTracker, list[Event], list[str]]:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append, SessionFailing)
    invalidated: list[str] = []
    t = SessionTracker(
        bus,
        invalidate=invalidated.append,
        instance_for_url=lambda url: "local" if "1234" in url else None,
        threshold=threshold,
    )
    return t, seen, invalidated


def api_error(message: str = "No models loaded", url: str = "http://127.0.0.1:1234/v1/chat/completions") -> Any:
    return {"name": "APIError", "data": {"message": message, "statusCode": 400, "isRetryable": False,
                                         "metadata": {"url": url}}}


def ev(type_: str, props: dict[str, Any], instance: str | None = "local", model: str | None = "m") -> ForwardedEvent:
    return ForwardedEvent(type_, props, instance=instance, model=model)


def done_message(mid: str, session: str = "s1", model: str = "m") -> dict[str, Any]:
    return {"sessionID": session, "info": {"id": mid, "sessionID": session, "role": "assistant", "modelID": model,
                                           "providerID": "lmstudio", "time": {"created": 1, "completed": 2},
                                           "tokens": {"input": 10, "output": 3}}}


def test_repeated_failures_raise_one_alert_with_reason() -> None:
    t, seen, _ = tracker()
    for _ in range(5):
        t.record(ev("session.status", {"sessionID": "s1", "status": {
            "type": "retry", "attempt": 1, "message": "Cannot connect to API", "next": 0}}))
    assert len(seen) == 1
    alert = seen[0]
    assert isinstance(alert, SessionFailing)
    assert (alert.instance, alert.session_id, alert.failures) == ("local", "s1", 3)
    assert alert.reason == "Cannot connect to API"


def test_success_resets_and_counts_usage_once() -> None:
    t, seen, _ = tracker(threshold=2)
    t.record(ev("session.error", {"sessionID": "s1", "error": api_error()}))
    for _ in range(3):  # OpenCode repeats message.updated for one message
        t.record(ev("message.updated", done_message("msg1")))
    assert t.sessions["s1"].failures == 0
    u = t.usage[("local", "m")]
    assert (u.messages, u.input_tokens, u.output_tokens, u.errors) == (1, 10, 3, 1)
    t.record(ev("session.error", {"sessionID": "s1", "error": api_error()}))
    assert seen == []


def test_api_error_invalidates_the_instance_from_its_url() -> None:
    t, _, invalidated = tracker()
    t.record(ev("session.error", {"sessionID": "s1", "error": api_error()}, instance=None))
    assert invalidated == ["local"] and t.invalidations == 1
    assert t.sessions["s1"].failures == 1  # the URL told us it was LM Studio


def test_abort_and_foreign_providers_are_not_failures() -> None:
    t, seen, invalidated = tracker(threshold=1)
    t.record(ev("session.error", {"sessionID": "s1", "error": {"name": "MessageAbortedError", "data": {}}}))
    t.record(ev("session.error", {"sessionID": "s2", "error": {"name": "UnknownError", "data": {"message": "x"}}},
                instance=None))
    t.record(ev("session.error", {"sessionID": "s3", "error": api_error(url="https://api.example.com/v1")},
                instance=None))
    assert seen == [] and invalidated == []


def test_guard_blocks_count_as_failures() -> None:
    t, seen, _ = tracker(threshold=2)
    for _ in range(2):
        t.record(ev("session.error", {"sessionID": "s1", "error": {"name": "UnknownError",
                                                                   "data": {"message": "not loaded\nsteps"}}}))
    assert len(seen) == 1 and isinstance(seen[0], SessionFailing) and seen[0].reason == "not loaded"


def test_history_compactions_and_sinks() -> None:
    t, _, _ = tracker()
    records: list[dict[str, Any]] = []
    remove = t.add_sink(records.append)
    t.note_model("s1", "local", "a", 4096)
    t.record(ev("message.updated", done_message("x1", model="b")))
    t.record(ev("session.compacted", {"sessionID": "s1"}))
    assert [u.model for u in t.history("s1")] == ["a", "b"]
    assert t.sessions["s1"].compactions == 1
    assert [r["type"] for r in records] == ["message.updated", "session.compacted"]
    assert records[0]["session_id"] == "s1"
    remove()
    t.record(ev("session.idle", {"sessionID": "s1"}))
    assert len(records) == 2
    data = t.to_json()
    assert data["events"] == 3 and data["usage"][0]["model"] == "b"


def test_broken_sink_and_garbage_do_not_raise() -> None:
    t, _, _ = tracker()

    def boom(_r: dict[str, Any]) -> None:
        raise RuntimeError("store down")

    t.add_sink(boom)
    for props in ({}, {"sessionID": 5}, {"error": "str"}, {"info": []}, {"status": None}):
        for kind in ("session.error", "session.status", "message.updated", "session.compacted", "x"):
            t.record(ev(kind, props))


def test_a_title_request_on_small_model_is_not_the_model_the_session_runs_on() -> None:
    t, _seen, _inv = tracker()
    assert t.current("s1") is None
    t.note_model("s1", "local", "qwen", 8192, agent="build")
    t.note_model("s1", "local", "gemma", 4096, agent="title")  # OpenCode's title, on small_model
    assert (t.current("s1").model, t.current("s1").instance) == ("qwen", "local")  # type: ignore[union-attr]
    assert [u.model for u in t.history("s1")] == ["qwen"]  # no "switch" for compaction notes
    # an assistant message of the title agent does not count either; one of the session's agent does
    t.record(ev("message.updated", {**done_message("m1", model="gemma"),
                                    "info": {**done_message("m1", model="gemma")["info"], "agent": "title"}}))
    t.record(ev("message.updated", done_message("m2", model="qwen2")))
    assert t.current("s1").model == "qwen2"  # type: ignore[union-attr]
