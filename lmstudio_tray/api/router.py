"""The router's OpenAI-compatible address on the endpoint: `/v1/route/{pool}/v1/...`.

Plain ASGI mounted under the FastAPI app, so it sits behind the same loopback guard (Host, Origin,
bearer token, body limit) and adds as little as possible to the time to first byte: the request body
the guard already read goes to `core.control.routing.Router`, and the chosen instance's response is streamed
back chunk by chunk as it arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from lmstudio_tray.api.security import Message, Receive, Scope, Send
from lmstudio_tray.core.control.routing import INSTANCE_HEADER, Router
from lmstudio_tray.core.errors import RoutingError
from lmstudio_tray.core.runtime import Core

log = logging.getLogger(__name__)
PREFIX = "/v1/route"


async def _json(send: Send, status: int, data: Any) -> None:
    body = json.dumps(data).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class RouterApp:
    """The ASGI app under /v1/route: the router's figures at the root, a pool's OpenAI-compatible API below."""

    def __init__(self, router: Router) -> None:
        """Serves `router`'s pools."""
        self.router = router

    def _split(self, scope: Scope) -> tuple[str, str]:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        rest = path[len(root):] if root and path.startswith(root) else path.removeprefix(PREFIX)
        pool, _, sub = rest.lstrip("/").partition("/")
        return pool, sub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request to a pool's instance and stream its answer back."""
        if scope["type"] != "http":
            return
        received_at = time.perf_counter()
        pool, sub = self._split(scope)
        try:
            if not pool:
                if scope["method"] == "GET":  # the router's own figures: pools, load, failures, overhead
                    await _json(send, 200, self.router.to_json())
                    return
                self.router.pool("")  # raises with the list of configured pools
            if not sub.startswith("v1/"):
                self.router.pool(pool)
                raise RoutingError(404, "not_found", f"use {PREFIX}/{pool}/v1/chat/completions (or completions, "
                                                     "embeddings, models) as the OpenAI base URL + path")
            sub = sub[len("v1/"):].rstrip("/")
            method: str = scope["method"]
            if sub == "models":
                if method != "GET":
                    raise RoutingError(405, "method_not_allowed", "v1/models answers GET only")
                await _json(send, 200, self.router.models(pool))
                return
            if method != "POST":
                self.router.pool(pool)
                raise RoutingError(405, "method_not_allowed", f"v1/{sub} answers POST only")
            body = await _read_body(receive)
            if body is None:
                return
            upstream = await self.router.open(pool, method, sub, scope["headers"], body,
                                              scope.get("query_string", b""), received_at)
        except RoutingError as exc:
            await _json(send, exc.status, exc.to_json())
            return
        # After the body, receive() only returns when the client disconnects: watch it, so a cancelled
        # generation is cancelled on the instance too (closing its connection stops LM Studio's work).
        gone = asyncio.ensure_future(receive())
        try:
            await send({"type": "http.response.start", "status": upstream.status, "headers": upstream.headers})
            async for chunk in upstream.body():
                if gone.done():
                    log.debug("router: client of %s went away mid-stream", upstream.instance)
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError as exc:
            log.debug("router: client of %s went away: %s", upstream.instance, exc)
        except Exception as exc:
            # bytes may already have gone out: all that can be done is to end the response early
            log.warning("router: the stream from %s broke: %s", upstream.instance, exc)
        finally:
            gone.cancel()
            await upstream.close()


def make_router(core: Core) -> Router:
    """The pool router over `core`'s instances, for the config's pools in effect at each request. It records
    model use in the core's `model_uses`, the record the shared-instance guard of `core.actions` reads."""
    return Router(lambda: core.config.pools, core.monitor, connect_timeout=core.config.monitor.request_timeout,
                  uses=core.model_uses)


__all__ = ["INSTANCE_HEADER", "PREFIX", "RouterApp", "make_router"]
