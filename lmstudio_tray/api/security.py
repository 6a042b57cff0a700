"""Loopback-only guard in front of every route, as plain ASGI (the hook path has a 1 ms budget).

Refuses: a Host other than 127.0.0.1/localhost with our port (DNS rebinding), any Origin header (a web
page in a browser; OpenCode's plugin sends none), bodies over the limit, and a missing or wrong bearer
token (constant-time compare) on everything but the health route.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/v1/health"})


async def _reject(
    send: Send, status: int, kind: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": {"kind": kind, "message": message}}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


@dataclass
class Refusals:
    """How many requests were turned away: one counter shared by the endpoint's guard and the dashboard's
    gate (`GET /v1/metrics`). Touched on the core loop only."""

    count: int = 0

    def add(self) -> None:
        """One more refusal."""
        self.count += 1


class LoopbackGuard:
    """ASGI middleware in front of the whole endpoint: refuses what did not come from a local program that
    read the token (see the module's docstring), counting each refusal in `refusals`."""

    def __init__(self, app: ASGIApp, *, token: str, port: Callable[[], int], max_body_bytes: int,
                 refusals: Refusals | None = None) -> None:
        """`app`: what a request that passes goes to; `token`: the bearer token; `port`: the port the endpoint
        listens on (asked at each request); `max_body_bytes`: the body limit; `refusals`: the counter to add
        to (a new one without)."""
        self.app = app
        self._token = f"Bearer {token}".encode()
        self._port = port  # a callable: with port 0 the real port is known only after binding
        self.max_body_bytes = max_body_bytes
        self.refusals = refusals if refusals is not None else Refusals()

    @property
    def refused(self) -> int:
        """Requests turned away so far (by every guard sharing `refusals`)."""
        return self.refusals.count

    def allowed_hosts(self) -> frozenset[bytes]:
        """The Host values a request may carry: 127.0.0.1 and localhost with the endpoint's port."""
        port = self._port()
        return frozenset({f"127.0.0.1:{port}".encode(), f"localhost:{port}".encode()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, read its whole body, then hand it on (the body replayed in one message)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets here
        host = b""
        origin = False
        auth = b""
        length: int | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.lower()
            elif name == b"origin":
                origin = True
            elif name == b"authorization":
                auth = value
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
        if host not in self.allowed_hosts():
            self.refusals.add()
            await _reject(send, 421, "forbidden_host", "this endpoint only answers to 127.0.0.1 or localhost")
            return
        if origin:
            self.refusals.add()
            await _reject(send, 403, "forbidden_origin", "requests from web pages (with an Origin header) are refused")
            return
        if scope["path"] not in PUBLIC_PATHS and not hmac.compare_digest(auth, self._token):
            self.refusals.add()
            await _reject(send, 401, "unauthorized",
                          "missing or wrong bearer token; read it from the endpoint.json discovery file",
                          [(b"www-authenticate", b"Bearer")])
            return
        if length is not None and (length < 0 or length > self.max_body_bytes):
            self.refusals.add()
            await _reject(send, 413, "body_too_large", f"request bodies are limited to {self.max_body_bytes} bytes")
            return

        # Read the (small) body here so an over-long chunked upload is refused before any route runs.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                self.refusals.add()
                await _reject(send, 413, "body_too_large", f"request bodies are limited to {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
