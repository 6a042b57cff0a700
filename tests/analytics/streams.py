"""Recorded event streams, shaped exactly as the plugin forwards OpenCode's events to /v1/events.

`opencode_run` replays what a real `opencode run "say hi"` produced in the endpoint issue's end-to-end
test (docs in the OpenCode reference, section 4.1): a title turn and a build turn, each assistant
`message.updated` repeated once more when `time.completed` is set, then `session.status idle` and
`session.idle`. The other builders vary the numbers for reports and suggestions.
"""

from __future__ import annotations

from typing import Any

PROVIDER = "lmstudio"


def event(type_: str, props: dict[str, Any], base_url: str, model: str | None, t: float) -> dict[str, Any]:
    return {"type": type_, "properties": props, "base_url": base_url, "provider_id": PROVIDER, "model": model,
            "time": t * 1000}


def assistant(msg_id: str, session: str, model: str, *, created: float, completed: float | None,
              tokens: tuple[int, int, int] = (10, 3, 0), cache_read: int = 0, agent: str = "build",
              error: dict[str, Any] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": msg_id, "sessionID": session, "role": "assistant", "parentID": "u" + msg_id, "modelID": model,
        "providerID": PROVIDER, "mode": agent, "agent": agent, "path": {"cwd": "/w", "root": "/w"}, "cost": 0,
        "tokens": {"total": sum(tokens) + cache_read, "input": tokens[0], "output": tokens[1],
                   "reasoning": tokens[2], "cache": {"read": cache_read, "write": 0}},
        "time": {"created": int(created * 1000)},
    }
    if completed is not None:
        info["time"]["completed"] = int(completed * 1000)
        info["finish"] = "stop"
    if error is not None:
        info["error"] = error
    return {"sessionID": session, "info": info}


def opencode_run(base_url: str, model: str, t0: float, session: str = "ses_run1") -> list[dict[str, Any]]:
    title = assistant("msg_title", session, model, created=t0 + 0.1, completed=t0 + 0.6, tokens=(40, 6, 0),
                      agent="title")
    build = assistant("msg_build", session, model, created=t0 + 0.2, completed=t0 + 1.2, tokens=(10, 3, 0))
    return [
        event("message.updated", title, base_url, model, t0 + 0.6),
        event("message.updated", build, base_url, model, t0 + 1.2),
        event("message.updated", build, base_url, model, t0 + 1.21),  # OpenCode repeats the final update
        event("session.status", {"sessionID": session, "status": {"type": "idle"}}, base_url, model, t0 + 1.3),
        event("session.idle", {"sessionID": session}, base_url, model, t0 + 1.3),
    ]


def turns(base_url: str, model: str, t0: float, n: int, *, session: str, seconds: float, output: int,
          input_tokens: int = 1000, prefix: str = "m") -> list[dict[str, Any]]:
    """`n` successful turns of `seconds` each producing `output` tokens (so output/seconds tokens/s)."""
    out = []
    for i in range(n):
        start = t0 + i * (seconds + 1)
        msg = assistant(f"{prefix}{session}{i}", session, model, created=start, completed=start + seconds,
                        tokens=(input_tokens, output, 0))
        out.append(event("message.updated", msg, base_url, model, start + seconds))
    return out


def api_error(message: str, url: str) -> dict[str, Any]:
    return {"name": "APIError", "data": {"message": message, "statusCode": 400, "isRetryable": False,
                                         "metadata": {"url": url}}}


def failed_turn(base_url: str, model: str, t: float, session: str, msg_id: str,
                error: dict[str, Any]) -> list[dict[str, Any]]:
    """What OpenCode sends when a turn fails: session.error, idle, then the assistant message with `error`."""
    return [
        event("session.error", {"sessionID": session, "error": error}, base_url, model, t),
        event("session.status", {"sessionID": session, "status": {"type": "idle"}}, base_url, model, t),
        event("session.idle", {"sessionID": session}, base_url, model, t),
        event("message.updated", assistant(msg_id, session, model, created=t - 0.5, completed=t, tokens=(0, 0, 0),
                                           error=error), base_url, model, t),
    ]


def retrying(base_url: str, model: str, t: float, session: str, attempts: int = 3) -> list[dict[str, Any]]:
    return [event("session.status", {"sessionID": session, "status": {
        "type": "retry", "attempt": i + 1, "message": "Cannot connect to API: Unable to connect.", "next": 0}},
        base_url, model, t + i) for i in range(attempts)]
