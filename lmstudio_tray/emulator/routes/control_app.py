"""The always-on "internal API server" port: LM Studio's probes plus private `/_emulator/*` control routes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol

from lmstudio_tray.emulator.routes import shapes
from lmstudio_tray.emulator.routes.httpserver import Request, Response, json_response
from lmstudio_tray.emulator.state.engine import LoadAborted, LoadError, LoadJob
from lmstudio_tray.emulator.state.faults import Fault
from lmstudio_tray.emulator.state.records import RecordedRequest
from lmstudio_tray.emulator.state.settings import EmulatorSettings
from lmstudio_tray.emulator.state.shared import EmulatorState


class Controlled(Protocol):
    """What the control routes drive: the `Emulator` (declared here, so the emulator module imports this one
    and not the other way round)."""

    settings: EmulatorSettings
    state: EmulatorState

    @property
    def api_port(self) -> int: ...
    @property
    def server_running(self) -> bool: ...
    @property
    def requests(self) -> list[RecordedRequest]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def kill(self) -> None: ...
    def start_server(self, port: int | None = None, cors: bool | None = None) -> None: ...
    def stop_server(self) -> None: ...
    def unload(self, instance_id: str) -> bool: ...
    def unload_all(self) -> list[str]: ...
    def update(self, **changes: Any) -> None: ...
    def add_fault(self, fault: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def clear_requests(self) -> None: ...

PREFIX = "/_emulator"
LOAD_PREFIX = f"{PREFIX}/load/"


def job_json(job: LoadJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "model": job.spec.key,
        "identifier": job.identifier,
        "status": job.status,
        "progress": round(job.progress, 4),
        "error": job.error,
        "size_bytes": job.spec.size_bytes,
        "load_time_seconds": round(job.instance.load_time, 3) if job.instance else None,
        "instance": shapes.lms_instance_info(job.instance) if job.instance else None,
    }


def _error(message: str, status: int, type_: str = "invalid_request") -> Response:
    return json_response({"error": {"type": type_, "message": message}}, status=status)


class ControlApp:
    def __init__(self, emulator: Controlled) -> None:
        self.emulator = emulator
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/lmstudio-greeting"): lambda r: json_response({"lmstudio": True}),
            ("GET", "/lms-status"): self.lms_status,
            ("GET", f"{PREFIX}/state"): self.state,
            ("GET", f"{PREFIX}/requests"): self.requests,
            ("POST", f"{PREFIX}/requests/clear"): self.clear_requests,
            ("POST", f"{PREFIX}/server/start"): self.server_start,
            ("POST", f"{PREFIX}/server/stop"): self.server_stop,
            ("POST", f"{PREFIX}/load"): self.load,
            ("POST", f"{PREFIX}/unload"): self.unload,
            ("POST", f"{PREFIX}/unload-all"): self.unload_all,
            ("GET", f"{PREFIX}/faults"): lambda r: json_response(self.emulator.state.faults.snapshot()),
            ("POST", f"{PREFIX}/faults"): self.add_fault,
            ("POST", f"{PREFIX}/faults/clear"): self.clear_faults,
            ("POST", f"{PREFIX}/settings"): self.settings,
            ("POST", f"{PREFIX}/kill"): self.kill,
        }

    def __call__(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        route = self.routes.get((request.method, path))
        if route is None and path.startswith(LOAD_PREFIX):
            if request.method == "GET":
                route = self.load_status
            elif request.method == "POST" and path.endswith("/cancel"):
                route = self.load_cancel
        if route is None:
            return _error(f"Unknown control route ({request.method} {path})", 404)
        if request.json_error:
            return _error("Request body must be valid JSON.", 400)
        try:
            return route(request)
        except (ValueError, TypeError, KeyError) as exc:
            return _error(str(exc), 400)

    def lms_status(self, request: Request) -> Response:
        return json_response({"package": "lmstudio-emulator", "version": self.emulator.settings.version})

    def state(self, request: Request) -> Response:
        return json_response(self.emulator.snapshot())

    def requests(self, request: Request) -> Response:
        return json_response([r.to_json() for r in self.emulator.requests])

    def clear_requests(self, request: Request) -> Response:
        self.emulator.clear_requests()
        return json_response({"ok": True})

    def server_start(self, request: Request) -> Response:
        port = request.field("port")
        try:
            self.emulator.start_server(
                port=int(port) if port is not None else None, cors=request.field("cors")
            )
        except OSError as exc:
            return _error(f"Failed to start the server: {exc}", 500, "internal_error")
        return json_response({"running": True, "port": self.emulator.api_port})

    def server_stop(self, request: Request) -> Response:
        was_running = self.emulator.server_running
        self.emulator.stop_server()
        return json_response({"running": False, "port": self.emulator.api_port, "was_running": was_running})

    def load(self, request: Request) -> Response:
        """Start a load and return at once; clients poll `/_emulator/load/<job_id>` for progress."""
        state = self.emulator.state
        name = request.field("model")
        if not isinstance(name, str):
            raise ValueError('"model" is required')
        spec = state.catalog.find(name)
        if spec is None:
            return _error(f'Model "{name}" not found.', 404, "model_not_found")
        ttl = request.field("ttl")
        try:
            job = state.start_load(
                spec,
                identifier=request.field("identifier"),
                context_length=request.field("context_length"),
                ttl=float(ttl) if ttl is not None else None,
                variant=name if "@" in name else None,
            )
        except LoadError as exc:
            return _error(str(exc), 400, "model_load_failed")
        threading.Thread(target=self._run, args=(job,), name=f"emulator-{job.job_id}", daemon=True).start()
        return json_response(job_json(job), status=202)

    def _run(self, job: LoadJob) -> None:
        # The job records any failure; pollers read it from there.
        with contextlib.suppress(LoadError, LoadAborted):
            self.emulator.state.engine.load_now(job)

    def load_status(self, request: Request) -> Response:
        job = self.emulator.state.engine.job(request.path[len(LOAD_PREFIX):])
        if job is None:
            return _error("Unknown load job.", 404, "job_not_found")
        return json_response(job_json(job))

    def load_cancel(self, request: Request) -> Response:
        job = self.emulator.state.engine.job(request.path[len(LOAD_PREFIX):].rstrip("/").removesuffix("/cancel"))
        if job is None:
            return _error("Unknown load job.", 404, "job_not_found")
        job.cancel_requested.set()
        job.done.wait(1.0)
        return json_response(job_json(job))

    def unload(self, request: Request) -> Response:
        identifier = request.field("identifier")
        if not isinstance(identifier, str) or not self.emulator.unload(identifier):
            return _error(f'Cannot find a model with the identifier "{identifier}".', 404, "model_not_found")
        return json_response({"identifier": identifier})

    def unload_all(self, request: Request) -> Response:
        return json_response({"unloaded": self.emulator.unload_all()})

    def add_fault(self, request: Request) -> Response:
        data = request.json if isinstance(request.json, dict) else {}
        allowed = {f.name for f in fields(Fault)}
        fault = Fault(**{k: v for k, v in data.items() if k in allowed})
        self.emulator.add_fault(fault)
        return json_response(fault.to_json())

    def clear_faults(self, request: Request) -> Response:
        self.emulator.clear_faults()
        return json_response({"ok": True})

    def settings(self, request: Request) -> Response:
        changes = request.json if isinstance(request.json, dict) else {}
        self.emulator.update(**changes)
        return json_response(self.emulator.snapshot()["settings"])

    def kill(self, request: Request) -> Response:
        # Answer first: killing closes this very port.
        threading.Timer(0.05, self.emulator.kill).start()
        return json_response({"ok": True})
