"""The HTTP server port: request log, faults, auth, version-gated routing and the 200 fallback."""

from __future__ import annotations

import time
from collections.abc import Callable

from lmstudio_tray.emulator.routes import openai_compat, rest_v0, rest_v1
from lmstudio_tray.emulator.routes.httpserver import Request, Response, dumps, json_response
from lmstudio_tray.emulator.state import errors
from lmstudio_tray.emulator.state.faults import Fault
from lmstudio_tray.emulator.state.records import RecordedRequest
from lmstudio_tray.emulator.state.shared import ConnectionLost, EmulatorState

Route = Callable[[EmulatorState, Request], Response]
CONTROL_PORT_HEADER = "X-LMS-Emulator-Control-Port"

OPENAI_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/v1/models"): openai_compat.models,
    ("POST", "/v1/chat/completions"): openai_compat.chat_completions,
    ("POST", "/v1/completions"): openai_compat.completions,
    ("POST", "/v1/embeddings"): openai_compat.embeddings,
}
REST_V0_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/v0/models"): rest_v0.models,
    ("POST", "/api/v0/chat/completions"): lambda s, r: openai_compat.chat_completions(s, r, rest_v0=True),
    ("POST", "/api/v0/completions"): lambda s, r: openai_compat.completions(s, r, rest_v0=True),
    ("POST", "/api/v0/embeddings"): lambda s, r: openai_compat.embeddings(s, r, rest_v0=True),
}
REST_V1_ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/v1/models"): rest_v1.models,
    ("POST", "/api/v1/models/load"): rest_v1.load,
    ("POST", "/api/v1/models/unload"): rest_v1.unload,
    ("POST", "/api/v1/chat"): rest_v1.chat,
    ("POST", "/api/v1/models/download"): rest_v1.download,
}
HANG_POLL_SECONDS = 0.05
# With CORS off, preflights fall through to the unknown-route answer, as in LM Studio.
CORS_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET,HEAD,PUT,PATCH,POST,DELETE",
    "Access-Control-Allow-Headers": "*",
}


class ApiApp:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def __call__(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        self.state.log.add(
            RecordedRequest(
                method=request.method, path=path, query=request.query, headers=dict(request.headers),
                json=request.json, time=time.time(),
            )
        )
        fault = self.state.faults.take(request.method, path)
        if fault is not None:
            faulted = self._apply_fault(fault)
            if faulted is not None:
                return faulted
        try:
            return self._route(request, path)
        except errors.ApiError as exc:
            return json_response(exc.body, status=exc.status)
        except ConnectionLost:
            return Response(action="drop")

    def _route(self, request: Request, path: str) -> Response:
        if request.method == "GET" and path == "/lmstudio-greeting":
            # The private header lets the fake `lms --host/--port` find the control port (docs/emulator.md).
            headers = {CONTROL_PORT_HEADER: str(self.state.control_port)}
            return json_response({"lmstudio": True}, headers=headers)
        if request.method == "OPTIONS" and self.state.cors:
            return Response(status=204, headers=CORS_PREFLIGHT)
        self._check_auth(request)
        # Downloads advance with the clock; every answer shows where they are now (a finished one is listed).
        self.state.tick_downloads()
        route = self._find_route(request.method, path)
        if route is None:
            return json_response(errors.unexpected_endpoint(request.method, request.path))
        response = route(self.state, request)
        if self.state.cors:
            response.headers.setdefault("Access-Control-Allow-Origin", "*")
        return response

    def _find_route(self, method: str, path: str) -> Route | None:
        profile = self.state.settings.profile
        key = (method, path)
        if key in OPENAI_ROUTES:
            return OPENAI_ROUTES[key]
        if profile.has_rest_v0:
            if key in REST_V0_ROUTES:
                return REST_V0_ROUTES[key]
            if method == "GET" and path.startswith(rest_v0.MODEL_PREFIX):
                return rest_v0.model
        if profile.has_rest_v1:
            if key in REST_V1_ROUTES:
                return REST_V1_ROUTES[key]
            if method == "GET" and path.startswith(rest_v1.DOWNLOAD_STATUS_PREFIX):
                return rest_v1.download_status
        return None

    def _check_auth(self, request: Request) -> None:
        settings = self.state.settings
        if not settings.auth_required:
            return
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.missing_token()
        if token.strip() != settings.auth_token:
            raise errors.invalid_token()

    def _apply_fault(self, fault: Fault) -> Response | None:
        """A response replacing the normal one, or None to continue normally (latency, released hang)."""
        if fault.kind == "latency":
            self.state.dead.wait(fault.delay)
            return Response(action="drop") if self.state.dead.is_set() else None
        if fault.kind == "hang":
            while not (self.state.faults.released.wait(HANG_POLL_SECONDS) or self.state.dead.is_set()):
                pass
            return Response(action="drop") if self.state.dead.is_set() else None
        if fault.delay:
            self.state.dead.wait(fault.delay)
        if fault.kind == "status":
            body = fault.body if fault.body is not None else {"error": f"Emulated fault (HTTP {fault.status})"}
            if isinstance(body, str):
                return Response(status=fault.status, body=body.encode("utf-8"))
            return json_response(body, status=fault.status)
        if fault.kind == "error_body":
            return json_response({"error": fault.body if fault.body is not None else "Emulated error"})
        if fault.kind == "invalid_json":
            return Response(body=b'{"data": [ this is not json')
        if fault.kind == "drop":
            return Response(action="drop")
        if fault.kind == "truncate":
            body = fault.body if fault.body is not None else {"data": [], "object": "list", "padding": "x" * 64}
            return Response(action="truncate", body=dumps(body))
        raise AssertionError(f"unhandled fault kind {fault.kind}")
