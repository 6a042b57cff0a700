"""The endpoint's own routes: health, status, the plugin's settings, token reloads, metrics, sessions."""

from __future__ import annotations

import os
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lmstudio_tray import __version__
from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.context import ERRORS, ApiContext


def add_meta_routes(app: FastAPI, ctx: ApiContext, refused: Callable[[], int]) -> None:
    """`/v1/health`, `/v1/status`, `/v1/plugin`, `/v1/tokens/reload`, `/v1/metrics`, `/v1/sessions`. `refused`
    counts the requests the loopback guard turned away (for the metrics)."""
    core = ctx.core
    monitor = core.monitor

    @app.get("/v1/health", response_model=s.HealthOut, tags=["meta"])
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True, "version": __version__, "pid": os.getpid()})

    @app.get("/v1/status", responses=ERRORS, tags=["meta"],
                description="All instances from the status cache; the same shape as `lmstudio-tray status --json`.")
    async def status() -> JSONResponse:
        ctx.metrics.requests["status"] += 1
        data = core.status().to_json()
        data["router"] = ctx.router.to_json()
        return JSONResponse(data)

    @app.get("/v1/plugin", response_model=s.PluginSettingsOut, responses=ERRORS, tags=["meta"])
    async def plugin_settings() -> JSONResponse:
        cfg = core.config
        return JSONResponse({
            "hook_timeout_ms": cfg.validation.hook_timeout_ms,
            "ensure_timeout_ms": int(cfg.validation.ensure_timeout * 1000),
            "instances": [{"name": name, "url": monitor.instance(name).config.url} for name in monitor.names],
            "toasts": cfg.opencode.toasts.effective(cfg.notifications),
            "policy": {k: v.value for k, v in cfg.validation.policy.items()},
        })

    @app.post("/v1/tokens/reload", response_model=s.TokenReloadOut, responses=ERRORS, tags=["meta"],
              description="Read a token again from the keyring after `lmstudio-tray token set` or `token delete` "
              "changed it in another process; the token itself never travels here.")
    async def token_reload(body: s.TokenReloadIn) -> JSONResponse:
        return JSONResponse({"name": body.name, "used": await core.reload_token(body.name)})

    @app.get("/v1/metrics", responses=ERRORS, tags=["meta"])
    async def metrics() -> JSONResponse:
        m = ctx.metrics
        p50, p99 = m.percentile(0.5), m.percentile(0.99)
        return JSONResponse({
            "cache": monitor.stats.to_json(),
            "lmstudio_calls": monitor.lmstudio_calls,
            "validate": {
                "count": m.validate_count,
                "p50_ms": None if p50 is None else round(p50, 4),
                "p99_ms": None if p99 is None else round(p99, 4),
                "categories": dict(m.categories),
                "answered_from_stale_cache": m.fail_open_refreshes,
            },
            "ensures": m.ensures,
            "ensures_waiting": m.ensures_waiting,
            "transforms": dict(m.transforms),
            "requests": dict(m.requests),
            "refused": refused(),
            "events": ctx.sessions.events_seen,
            "sessions": len(ctx.sessions.sessions),
            "invalidations": ctx.sessions.invalidations,
        })

    @app.get("/v1/sessions", responses=ERRORS, tags=["meta"],
                description="Session health and model usage gathered from forwarded OpenCode events.")
    async def sessions() -> JSONResponse:
        return JSONResponse(ctx.sessions.to_json())

