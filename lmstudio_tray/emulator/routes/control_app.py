"""The always-on "internal API server" port: LM Studio's probes plus private `/_emulator/*` control routes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol

from lmstudio_tray.emulator.routes import shapes
from lmstudio_tray.emulator.routes.httpserver import Request, Response, json_response
from lmstudio_tray.emulator.state.downloads import DownloadJob
from lmstudio_tray.emulator.state.engine import LoadAborted, LoadError, LoadJob, LoadOptions
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
    def info(self) -> dict[str, Any]: ...
    def kill(self) -> None: ...
    def start_server(self, port: int | None = None, cors: bool | None = None, bind: str | None = None) -> None: ...
    def pause_download(self, job_id: str) -> DownloadJob: ...
    def resume_download(self, job_id: str) -> DownloadJob: ...
    def stop_server(self) -> None: ...
    def unload(self, instance_id: str) -> bool: ...
    def unload_all(self) -> list[str]: ...
    def update(self, **changes: Any) -> None: ...
    def add_fault(self, fault: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def clear_requests(self) -> None: ...

PREFIX = "/_emulator"
LOAD_PREFIX = f"{PREFIX}/load/"
DOWNLOAD_PREFIX = f"{PREFIX}/download/"


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


def download_json(job: DownloadJob) -> dict[str, Any]:
    return {**job.to_json(), "model": job.spec.key, "error": job.error}


def _gpu(value: Any) -> float | None:
    """`lms load --gpu`: already a ratio in [0, 1] (the fake CLI turns off/max into 0/1)."""
    if value is None:
        return None
    ratio = float(value)
    if not 0 <= ratio <= 1:
        raise ValueError('"gpu" must be between 0 and 1')
    return ratio


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
            ("GET", f"{PREFIX}/info"): lambda r: json_response(self.emulator.info()),
            ("POST", f"{PREFIX}/load"): self.load,
            ("POST", f"{PREFIX}/estimate"): self.estimate,
            ("POST", f"{PREFIX}/download"): self.download,
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
        if route is None and path.startswith(DOWNLOAD_PREFIX):
            if request.method == "GET":
                route = self.download_status
            elif request.method == "POST" and path.endswith(("/pause", "/resume")):
                route = self.download_pause
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
        """`system.startHttpServer({port, cors, networkInterface})`."""
        port = request.field("port")
        try:
            self.emulator.start_server(
                port=int(port) if port is not None else None, cors=request.field("cors"),
                bind=request.field("networkInterface"),
            )
        except OSError as exc:
            details = getattr(exc, "details", None)
            body = {"error": {"type": "internal_error", "message": f"Error starting server: {exc}", "details": details}}
            return json_response(body, status=500)
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
        parallel = request.field("parallel")
        options = LoadOptions(gpu=_gpu(request.field("gpu")), parallel=int(parallel) if parallel else None)
        try:
            job = state.start_load(
                spec,
                identifier=request.field("identifier"),
                context_length=request.field("context_length"),
                ttl=float(ttl) if ttl is not None else None,
                variant=name if "@" in name else None,
                options=options,
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

    def estimate(self, request: Request) -> Response:
        """`estimateResourcesUsage(modelKey, {contextLength, gpu: {ratio}})`."""
        state = self.emulator.state
        name = request.field("model")
        spec = state.catalog.find(name) if isinstance(name, str) else None
        if spec is None:
            return _error(f'Model "{name}" not found.', 404, "model_not_found")
        ctx = request.field("context_length")
        result = state.estimate(spec, context_length=int(ctx) if ctx else None, gpu=_gpu(request.field("gpu")))
        return json_response({**result.to_json(), "model": spec.key, "type": spec.type})

    def download(self, request: Request) -> Response:
        """What `lms get` asks through the SDK's download planner; available whatever the version, unlike REST."""
        state = self.emulator.state
        name = request.field("model")
        if not isinstance(name, str) or not name:
            raise ValueError('"model" is required')
        state.tick_downloads()
        owned = state.downloads.find_downloaded(name)
        if owned is not None:
            return json_response({"status": "already_downloaded", "model": owned.key})
        offered = state.downloads.find_offered(name)
        if offered is None:
            return _error(f'Model "{name}" was not found in the LM Studio catalog.', 404, "model_not_found")
        return json_response(download_json(state.start_download(offered)))

    def download_status(self, request: Request) -> Response:
        self.emulator.state.tick_downloads()
        job = self.emulator.state.downloads.job(request.path[len(DOWNLOAD_PREFIX):])
        if job is None:
            return _error("Unknown download job.", 404, "job_not_found")
        return json_response(download_json(job))

    def download_pause(self, request: Request) -> Response:
        job_id, _, action = request.path[len(DOWNLOAD_PREFIX):].rstrip("/").rpartition("/")
        change = self.emulator.pause_download if action == "pause" else self.emulator.resume_download
        try:
            return json_response(download_json(change(job_id)))
        except KeyError:
            return _error("Unknown download job.", 404, "job_not_found")

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
        # Answer first: killing closes this very port (and drops this connection).
        response = json_response({"ok": True})
        response.after = lambda: threading.Thread(target=self.emulator.kill, name="emulator-kill", daemon=True).start()
        return response
