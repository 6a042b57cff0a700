"""The loopback endpoint the OpenCode plugin talks to: routes over the core, answered from its cache.

`create_app` builds one `ApiContext` and hands it to each area's module, which adds its routes: `meta`
(health, status, metrics), `hooks` (validate with its fast path, ensure, events), `transforms`, `tools`
and `dashboard`; the pool router (`router.py`) is mounted under /v1/route. Plain functions add the routes
to the app (not `APIRouter`s: FastAPI includes those as nested routers, one more step for every request).
Handlers run on the core's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmstudio_tray import __version__
from lmstudio_tray.api.context import ERRORS, TOOL_ERRORS, ApiContext, ApiError, Metrics, error_response
from lmstudio_tray.api.dashboard import DashboardAuth, DashboardGate, add_dashboard_routes
from lmstudio_tray.api.hooks import ValidateFastPath, add_hook_routes
from lmstudio_tray.api.judge import Judge
from lmstudio_tray.api.meta import add_meta_routes
from lmstudio_tray.api.router import RouterApp, make_router
from lmstudio_tray.api.security import LoopbackGuard
from lmstudio_tray.api.tools import add_tool_routes
from lmstudio_tray.api.tools_advice import add_advice_tool_routes
from lmstudio_tray.api.transforms import add_transform_routes
from lmstudio_tray.core.control.routing import Router
from lmstudio_tray.core.errors import ActionError
from lmstudio_tray.core.hooks.sessions import SessionTracker
from lmstudio_tray.core.ports import Measurements, NoInsights, NoMeasurements, UsageInsights
from lmstudio_tray.core.runtime import Core

__all__ = ["ERRORS", "TOOL_ERRORS", "ApiContext", "ApiError", "Metrics", "create_app"]


def create_app(
    core: Core,
    *,
    token: str,
    port: Callable[[], int] | int,
    sessions: SessionTracker | None = None,
    router: Router | None = None,
    insights: UsageInsights | None = None,
    measurements: Measurements | None = None,
) -> LoopbackGuard:
    """The ASGI app: FastAPI routes behind the loopback guard (and the dashboard's gate in front of it).
    `.app` is the FastAPI instance (behind the validate fast path, which passes attribute access through).

    `sessions`, `router`: the endpoint server's (new ones without); `insights`: the analytics surface's tips,
    event sink and history, as the composition root passes them (none without); `measurements`: the analytics
    store for the advice tools (none without)."""
    ctx = ApiContext(
        core=core,
        sessions=sessions or SessionTracker(core.bus, invalidate=core.monitor.invalidate,
                                            instance_for_url=core.monitor.instance_for_url),
        router=router or make_router(core),
        insights=insights or NoInsights(),
        metrics=Metrics(),
        measurements=measurements or NoMeasurements(),
    )
    app = FastAPI(
        title="lmstudio-tray endpoint",
        version=__version__,
        description="Loopback API of lmstudio-tray for the OpenCode plugin. Every route but /v1/health needs "
        "`Authorization: Bearer <token>` (the token is in the endpoint.json discovery file).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, built off the loop
    )
    _install_handlers(app)
    judge = Judge(ctx)
    port_fn: Callable[[], int] = port if callable(port) else (lambda p=port: p)  # type: ignore[misc]
    # the fast path sits in front of FastAPI itself: its per-request telemetry and body-limit layers
    # cost more than the validation does
    guard = LoopbackGuard(ValidateFastPath(app, judge.validate), token=token, port=port_fn,
                          max_body_bytes=core.config.endpoint.max_body_bytes)
    add_meta_routes(app, ctx, refused=lambda: guard.refused)
    add_hook_routes(app, ctx, judge)
    add_transform_routes(app, ctx)
    add_tool_routes(app, ctx)
    add_advice_tool_routes(app, ctx)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        # walking every route's models takes ~0.1 s of CPU the first time (kept afterwards): not on the loop
        return JSONResponse(await asyncio.to_thread(app.openapi))

    app.mount("/v1/route", RouterApp(ctx.router))
    auth = DashboardAuth()
    add_dashboard_routes(app, ctx, auth, guard.allowed_hosts)
    return DashboardGate(guard, auth)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg', 'invalid')}")
        detail = jsonable_encoder(
            [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        )
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request body", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.message)

    @app.exception_handler(ActionError)
    async def action_error(_request: Request, exc: ActionError) -> JSONResponse:
        return error_response(409, exc.kind, str(exc))
