"""The plugin's hook routes: `POST /v1/validate` (and its fast path), `/v1/ensure`, `/v1/events`.

The transforms (system, messages, compaction, text) are in `transforms.py`; what the verdicts are made
of in `judge.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.context import ERRORS, ApiContext, ApiError
from lmstudio_tray.api.judge import Judge
from lmstudio_tray.api.security import Message, Receive, Scope, Send
from lmstudio_tray.core.hooks.sessions import ForwardedEvent

ValidateHandler = Callable[[s.ValidateIn], Awaitable[dict[str, Any]]]


class ValidateFastPath:
    """`POST /v1/validate` straight to its handler: no route matching, dependency solving or exception
    middleware, which cost more than the validation itself on the hook path. The answer is the same as the
    route's; a body that is not JSON-typed or does not validate takes the normal route, for its standard
    answer (422)."""

    def __init__(self, app: FastAPI, validate: ValidateHandler) -> None:
        """`app`: where everything else goes; `validate`: the route's handler (`Judge.validate`)."""
        self.app = app
        self.validate = validate

    def __getattr__(self, name: str) -> Any:
        # stands where the FastAPI app stood (`guard.app`): openapi(), state, routes... are the app's
        if name == "app":  # not set yet (copy/pickle): no endless recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a validate here; pass anything else (and a body for the standard 422) to the app."""
        if scope["type"] != "http" or scope["path"] != "/v1/validate" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        message = await receive()  # the guard hands over the whole body in one message
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return message
            return await receive()

        json_body = any(k == b"content-type" and v.split(b";", 1)[0].strip().lower() == b"application/json"
                        for k, v in scope["headers"])
        if not json_body or message.get("type") != "http.request" or message.get("more_body"):
            await self.app(scope, replay, send)
            return
        try:
            body = s.ValidateIn.model_validate_json(message.get("body") or b"{}")
        except ValidationError:
            await self.app(scope, replay, send)
            return
        try:
            status, data = 200, await self.validate(body)
        except ApiError as exc:
            status, data = exc.status, {"error": {"kind": exc.kind, "message": exc.message}}
        payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def add_hook_routes(app: FastAPI, ctx: ApiContext, judge: Judge) -> None:
    """The routes the plugin's hooks call on every request: validate, ensure, events."""

    @app.post("/v1/validate", response_model=s.VerdictOut, responses=ERRORS, tags=["hooks"])
    async def validate(body: s.ValidateIn) -> JSONResponse:
        return JSONResponse(await judge.validate(body))

    @app.post("/v1/ensure", response_model=s.EnsureOut, responses=ERRORS, tags=["hooks"],
                 description="Load the model if needed (single-flight across sessions, with the context the request "
                 "plans for), or wait for the load already running, time-boxed by validation.ensure_timeout; then "
                 "answer whether the request may proceed.")
    async def ensure(body: s.ValidateIn) -> JSONResponse:
        return JSONResponse(await judge.ensure(body))

    @app.post("/v1/events", response_model=s.EventsOut, responses=ERRORS, tags=["hooks"])
    async def events(body: s.EventsIn) -> JSONResponse:
        monitor = ctx.core.monitor
        for e in body.events:
            instance = monitor.instance_for_url(e.base_url) if e.base_url else None
            ctx.sessions.record(ForwardedEvent(e.type, e.properties, instance=instance, base_url=e.base_url,
                                               provider_id=e.provider_id, model=e.model, time=e.time or time.time()))
        return JSONResponse({"accepted": len(body.events)})

