"""The dashboard: a local page on the endpoint with live instances and charts from the analytics store.

A browser cannot send the endpoint's bearer token, and the token must not go into a URL (history,
process lists). So `lmstudio-tray dashboard` asks `POST /v1/dashboard/code` (with the token) for a
single-use code that expires within a minute and opens `/dashboard?code=...`; the page exchanges it
for an HttpOnly, SameSite=Strict session cookie scoped to /dashboard and redirects to the clean URL.

`DashboardGate` sits in front of the loopback guard: /dashboard paths get the same Host check, refuse
foreign Origins, and need the cookie; every other path goes to the guard unchanged.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from lmstudio_tray.api.context import ApiContext
from lmstudio_tray.api.dashboard_page import APP_CSS, APP_JS, INDEX_HTML
from lmstudio_tray.api.security import LoopbackGuard, Receive, Scope, Send

PREFIX = "/dashboard"
COOKIE = "lmstudio_tray_dashboard"
CODE_TTL_S = 60.0
SESSION_TTL_S = 12 * 3600.0
_MAX_CODES = 32
_MAX_SESSIONS = 64
_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class DashboardCodeOut(BaseModel):
    """`POST /v1/dashboard/code`: the single-use code and the link that signs a browser in with it."""

    code: str
    url: str
    expires_in: float


class DashboardAuth:
    """Single-use codes and the browser sessions they start (in memory: a restart logs the page out)."""

    def __init__(self, code_ttl: float = CODE_TTL_S, session_ttl: float = SESSION_TTL_S) -> None:
        """A code is good for `code_ttl` seconds, a browser session for `session_ttl`."""
        self.code_ttl = code_ttl
        self.session_ttl = session_ttl
        self._codes: OrderedDict[str, float] = OrderedDict()
        self._sessions: OrderedDict[str, float] = OrderedDict()

    def issue_code(self) -> str:
        """A new single-use code (the oldest are dropped beyond a few dozen)."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = time.monotonic() + self.code_ttl
        while len(self._codes) > _MAX_CODES:
            self._codes.popitem(last=False)
        return code

    def redeem(self, code: str) -> str | None:
        """A new session id for a valid code; the code is gone either way."""
        expires = self._codes.pop(code, None)
        if expires is None or time.monotonic() > expires:
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = time.monotonic() + self.session_ttl
        while len(self._sessions) > _MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def valid(self, session: str | None) -> bool:
        """Is `session` (the cookie's value) a live browser session?"""
        if not session:
            return False
        expires = self._sessions.get(session)
        if expires is None:
            return False
        if time.monotonic() > expires:
            del self._sessions[session]
            return False
        return True


async def _send(send: Send, status: int, body: bytes, content_type: bytes,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *_SECURITY_HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _problem_page(title: str, text: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>{text}</p></body></html>").encode()


class DashboardGate(LoopbackGuard):
    """Cookie-authenticated /dashboard in front of the token-authenticated endpoint."""

    def __init__(self, inner: LoopbackGuard, auth: DashboardAuth) -> None:
        """In front of `inner` (the endpoint's guard), with its hosts and body limit; `auth` holds the codes
        and sessions."""
        super().__init__(inner.app, token=secrets.token_urlsafe(32), port=lambda: 0,
                         max_body_bytes=inner.max_body_bytes, refusals=inner.refusals)
        self.inner = inner
        self.auth = auth

    def allowed_hosts(self) -> frozenset[bytes]:
        """The inner guard's: 127.0.0.1 and localhost with the endpoint's port."""
        return self.inner.allowed_hosts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """/dashboard paths: Host, Origin, read-only method, then the code or the cookie; others go on."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.inner(scope, receive, send)
            return
        host, origin, cookie = b"", None, ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.lower()
            elif name == b"origin":
                origin = value
            elif name == b"cookie":
                cookie = value.decode("latin-1")
        if host not in self.allowed_hosts():
            self.refusals.add()
            await _send(send, 421, b'{"error":{"kind":"forbidden_host","message":"use 127.0.0.1 or localhost"}}',
                        b"application/json")
            return
        if origin is not None and origin != b"http://" + host:
            self.refusals.add()
            await _send(send, 403, b'{"error":{"kind":"forbidden_origin","message":"other sites may not call '
                                   b'the dashboard"}}', b"application/json")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, b'{"error":{"kind":"method_not_allowed","message":"the dashboard is read-only"}}',
                        b"application/json")
            return
        code = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("code", [None])[0]
        if path == PREFIX and code:
            session = self.auth.redeem(code)
            if session is None:
                await _send(send, 401, _problem_page(
                    "This dashboard link has expired",
                    "Links work once and for a minute. Run <code>lmstudio-tray dashboard</code> (or use the "
                    "tray menu) to open a new one."), b"text/html; charset=utf-8")
                return
            cookie_header = (f"{COOKIE}={session}; Path={PREFIX}; Max-Age={int(self.auth.session_ttl)}; HttpOnly; "
                             "SameSite=Strict").encode()
            await _send(send, 303, b"", b"text/plain", [(b"location", PREFIX.encode()), (b"set-cookie", cookie_header)])
            return
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie)
        except Exception:  # a malformed Cookie header is just no cookie
            jar = SimpleCookie()
        morsel = jar.get(COOKIE)
        if not self.auth.valid(morsel.value if morsel else None):
            if path == PREFIX:
                await _send(send, 401, _problem_page(
                    "Not signed in",
                    "Open the dashboard with <code>lmstudio-tray dashboard</code> or from the tray menu."),
                    b"text/html; charset=utf-8")
            else:
                await _send(send, 401, b'{"error":{"kind":"unauthorized","message":"open the dashboard with '
                                       b'lmstudio-tray dashboard"}}', b"application/json")
            return
        await self.app(scope, receive, send)


def add_dashboard_routes(app: FastAPI, ctx: ApiContext, auth: DashboardAuth,
                         hosts: Callable[[], frozenset[bytes]]) -> None:
    """The dashboard's routes: the code route (behind the token), the page and its data (behind the gate,
    see `DashboardGate`). `hosts` are the Host values the endpoint answers to (the link names one)."""
    core = ctx.core
    _add_team_route(app, ctx)

    @app.post("/v1/dashboard/code", response_model=DashboardCodeOut, tags=["meta"],
                 description="A single-use code (valid for a minute) that signs a browser in to /dashboard.")
    async def dashboard_code() -> JSONResponse:
        code = auth.issue_code()
        host = next((h.decode() for h in sorted(hosts()) if h.startswith(b"127.")), "127.0.0.1")
        return JSONResponse({"code": code, "url": f"http://{host}{PREFIX}?code={code}", "expires_in": auth.code_ttl})

    @app.get(PREFIX, include_in_schema=False)
    async def dashboard_page() -> Response:
        return _page(INDEX_HTML, "text/html; charset=utf-8")

    @app.get(PREFIX + "/app.js", include_in_schema=False)
    async def dashboard_js() -> Response:
        return _page(APP_JS, "text/javascript; charset=utf-8")

    @app.get(PREFIX + "/app.css", include_in_schema=False)
    async def dashboard_css() -> Response:
        return _page(APP_CSS, "text/css; charset=utf-8")

    @app.get(PREFIX + "/api/live", include_in_schema=False)
    async def dashboard_live() -> JSONResponse:
        return JSONResponse({
            "now": time.time(),
            "status": core.status().to_json(),
            "analytics": ctx.insights.recording_status().to_json(),
        })

    @app.get(PREFIX + "/api/history", include_in_schema=False)
    async def dashboard_history(since: str = Query("7d", max_length=16)) -> JSONResponse:
        known = {m.key for snap in core.monitor.snapshots() for m in snap.models}
        try:
            data = await asyncio.to_thread(ctx.insights.history, since, known)  # reads the store
        except ValueError as exc:
            return JSONResponse({"error": {"kind": "invalid_request", "message": str(exc)}}, status_code=422)
        return JSONResponse(json.loads(json.dumps(data, default=str)))



def _page(text: str, media: str) -> Response:
    return Response(text.encode(), media_type=media, headers={k.decode(): v.decode() for k, v in _SECURITY_HEADERS})


def _add_team_route(app: FastAPI, ctx: ApiContext) -> None:
    """`/dashboard/api/team`: the team hub's state and the team's merged usage as the hub last gave it (kept in
    memory by the core's `TeamSync`: nothing is read or fetched here)."""
    sync = ctx.core.team_sync

    @app.get(PREFIX + "/api/team", include_in_schema=False)
    async def dashboard_team() -> JSONResponse:
        status = ctx.core.status().team_hub
        return JSONResponse({"hub": status.to_json() if status is not None else None, "usage": sync.team_usage})
