"""What every route module of the endpoint is given: one `ApiContext`, built once per app.

The route modules (`meta`, `hooks`, `transforms`, `tools`, `dashboard`) each add their routes to the app
with a function given the context; nothing reaches them any other way (no closure over a shared state,
nothing set on an object after it was built). Settings are read from `ctx.core.config` at each use: a
profile switch or an edited file replaces the whole config object while the endpoint runs (a handler that
reads several takes it once).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from lmstudio_tray.api import schemas as s
from lmstudio_tray.core.control.routing import Router
from lmstudio_tray.core.hooks.sessions import SessionTracker
from lmstudio_tray.core.ports import Measurements, NoMeasurements, UsageInsights
from lmstudio_tray.core.runtime import Core

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": s.ErrorOut, "description": "missing or wrong bearer token"},
    403: {"model": s.ErrorOut, "description": "request carried an Origin header"},
    413: {"model": s.ErrorOut, "description": "body too large"},
    421: {"model": s.ErrorOut, "description": "Host is not 127.0.0.1/localhost with this port"},
    422: {"model": s.ErrorOut, "description": "invalid body; the message names each field"},
}
TOOL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": s.ErrorOut, "description": "no such instance"},
    409: {"model": s.ErrorOut, "description": "the action failed; the message says why and what to do"},
}
LATENCY_SAMPLES = 10_000


def error_response(status: int, kind: str, message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    """The endpoint's one error shape: `{"error": {"kind", "message"}}` (plus FastAPI's `detail` on a 422)."""
    body: dict[str, Any] = {"error": {"kind": kind, "message": message}}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


class ApiError(Exception):
    """A request the endpoint refuses: answered as `error_response(status, kind, message)`."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        """`status`: the HTTP status; `kind`: the machine-readable reason; `message`: for a person."""
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass
class Metrics:
    """The endpoint's own counters and validate latencies (`GET /v1/metrics`); touched on the core loop only."""

    validate_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    validate_count: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    ensures: int = 0
    ensures_waiting: int = 0  # ensures waiting for a load that was already running (now)
    transforms: Counter[str] = field(default_factory=Counter)
    fail_open_refreshes: int = 0

    def percentile(self, q: float) -> float | None:
        """The `q` quantile (0..1) of the recent validate latencies in ms; None before the first one."""
        if not self.validate_ms:
            return None
        data = sorted(self.validate_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes use, passed explicitly to each route module."""

    core: Core
    sessions: SessionTracker
    router: Router
    insights: UsageInsights
    metrics: Metrics = field(default_factory=Metrics)
    measurements: Measurements = field(default_factory=NoMeasurements)  # the analytics store, for the advice tools

    def resolve(self, base_url: str | None, instance: str | None = None) -> str | None:
        """The instance a request means: `instance` by name (404 when unknown), else the one serving
        `base_url` (None when no instance does), else the active instance."""
        monitor = self.core.monitor
        if instance:
            if instance not in monitor.names:
                known = ", ".join(monitor.names) or "none"
                raise ApiError(404, "unknown_instance", f"no instance named {instance!r} (monitored: {known})")
            return instance
        if base_url:
            return monitor.instance_for_url(base_url)
        return self.core.active_instance
