"""The `Emulator`: a fake LM Studio process with an internal control port and an optional HTTP server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from lmstudio_tray.emulator.routes import shapes
from lmstudio_tray.emulator.routes.api_app import ApiApp
from lmstudio_tray.emulator.routes.control_app import ControlApp
from lmstudio_tray.emulator.routes.httpserver import HOST, HttpService
from lmstudio_tray.emulator.state import home as home_layout
from lmstudio_tray.emulator.state.catalog import ModelSpec
from lmstudio_tray.emulator.state.faults import Fault
from lmstudio_tray.emulator.state.records import RecordedRequest
from lmstudio_tray.emulator.state.settings import LIVE_SETTINGS, EmulatorSettings
from lmstudio_tray.emulator.state.shared import EmulatorState
from lmstudio_tray.emulator.state.versioning import parse_version

TTL_SWEEP_SECONDS = 0.25


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Emulator:
    """Start with `start()` or as a context manager; `kill()` simulates the app dying, `start()` relaunches it."""

    def __init__(self, settings: EmulatorSettings | None = None, **overrides: Any) -> None:
        if settings is None:
            settings = EmulatorSettings(**overrides)
        elif overrides:
            raise TypeError("pass either an EmulatorSettings or keyword overrides, not both")
        self.settings = settings
        self.state = EmulatorState(settings)
        self._api = HttpService(ApiApp(self.state), port=settings.port)
        self._control = HttpService(ControlApp(self))
        self._alive = False
        self._lifecycle = threading.RLock()
        self._sweeper_stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Emulator:
        with self._lifecycle:
            if self._alive:
                return self
            self.state.dead.clear()
            self.state.engine.revive()
            self._control.start()
            self.state.control_port = self._control.port
            if self.settings.server_running:
                self._api.start()
            elif self._api.port == 0:
                self._api.port = _free_port()
            self._alive = True
            self._start_sweeper()
            self._write_home()
            if self.settings.home is not None:
                home_layout.write_api_server_info(self.settings.home, control_port=self._control.port)
                self.install_lms(self.settings.home / "bin", env={"LMSTUDIO_HOME": str(self.settings.home)})
            return self

    def kill(self) -> None:
        """The LM Studio process dies: both ports close and loads in progress abort."""
        with self._lifecycle:
            self.state.engine.kill()
            self.state.dead.set()
            self._stop_sweeper()
            self._api.stop()
            self._control.stop()
            self._alive = False

    def close(self) -> None:
        self.kill()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._alive

    def _start_sweeper(self) -> None:
        self._sweeper_stop = threading.Event()
        stop = self._sweeper_stop

        def sweep() -> None:
            while not stop.wait(TTL_SWEEP_SECONDS):
                self.state.engine.expire()

        self._sweeper = threading.Thread(target=sweep, name="emulator-ttl", daemon=True)
        self._sweeper.start()

    def _stop_sweeper(self) -> None:
        self._sweeper_stop.set()
        self._sweeper = None

    # --- HTTP server ---------------------------------------------------------------------------------
    @property
    def api_port(self) -> int:
        return self._api.port

    @property
    def control_port(self) -> int:
        return self._control.port

    @property
    def api_url(self) -> str:
        return self._api.url

    @property
    def control_url(self) -> str:
        return self._control.url

    @property
    def server_running(self) -> bool:
        return self._api.running

    def start_server(self, port: int | None = None, cors: bool | None = None) -> None:
        """Open the API port (the same one as before unless `port` is given), like `lms server start`."""
        with self._lifecycle:
            if cors is not None:
                self.state.cors = bool(cors)
            self.settings.server_running = True
            if self._alive:
                self._api.start(port)
            elif port is not None:
                self._api.port = port
            self._write_home()

    def stop_server(self) -> None:
        with self._lifecycle:
            self.settings.server_running = False
            self._api.stop()
            self._write_home()

    def _write_home(self) -> None:
        if self.settings.home is None:
            return
        home_layout.write_server_config(
            self.settings.home,
            port=self._api.port,
            jit=self.settings.jit,
            cors=self.state.cors,
            running=self.settings.server_running,
        )

    # --- models --------------------------------------------------------------------------------------
    def load(
        self, key: str, context_length: int | None = None, identifier: str | None = None, ttl: float | None = None
    ) -> str:
        """Load instantly (test setup); returns the instance identifier, stacking `key:2`, `key:3`, ..."""
        spec = self.state.catalog.find(key)
        if spec is None:
            raise KeyError(f"model {key!r} is not in the emulator catalog")
        job = self.state.engine.start_load(
            spec, duration=0.0, identifier=identifier, context_length=context_length, ttl=ttl,
            variant=key if "@" in key else None,
        )
        return self.state.engine.load_now(job).identifier

    def finish_loads(self) -> int:
        """Complete every load in progress at once (JIT, REST or `lms`); returns how many. With a long
        `load_seconds`, tests hold a load in progress until they call this."""
        return self.state.engine.finish_loads()

    def unload(self, instance_id: str) -> bool:
        return self.state.engine.unload(instance_id) is not None

    def unload_all(self) -> list[str]:
        return self.state.engine.unload_all()

    def loaded(self) -> list[dict[str, Any]]:
        """Loaded instances as `lms ps --json` records."""
        self.state.engine.expire()
        return [shapes.lms_instance_info(i) for i in self.state.engine.loaded()]

    def downloaded(self) -> list[dict[str, Any]]:
        """Downloaded models as `lms ls --json` records."""
        return [shapes.lms_model_info(spec) for spec in self.state.catalog.models]

    @property
    def catalog(self) -> list[ModelSpec]:
        return list(self.state.catalog.models)

    # --- faults, request log, settings ---------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        self.state.faults.add(fault)

    def clear_faults(self) -> None:
        self.state.faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.state.log.items()

    def request_counts(self) -> dict[str, int]:
        """Requests seen on the API port, keyed "METHOD /path"."""
        return self.state.log.counts()

    def clear_requests(self) -> None:
        self.state.log.clear()

    def update(self, **changes: Any) -> None:
        """Change settings live: jit, auto_evict, default_ttl, auth_token, version, load_seconds, token_delay,
        fail_loads (replaces the whole key -> message mapping)."""
        unknown = set(changes) - LIVE_SETTINGS
        if unknown:
            raise ValueError(f"settings that cannot change live: {sorted(unknown)}")
        if "version" in changes:
            parse_version(str(changes["version"]))
        for name in ("load_seconds", "token_delay"):
            if name in changes and float(changes[name]) < 0:
                raise ValueError(f"{name} must be >= 0")
        with self._lifecycle:
            for name, value in changes.items():
                if name == "fail_loads":
                    value = dict(value or {})
                setattr(self.settings, name, value)
            self._write_home()

    def snapshot(self) -> dict[str, Any]:
        """Everything the control port's `/_emulator/state` returns."""
        s = self.settings
        return {
            "alive": self._alive,
            "version": s.version,
            "settings": {
                "version": s.version, "jit": s.jit, "auto_evict": s.auto_evict, "default_ttl": s.default_ttl,
                "auth_token": s.auth_token, "auth_required": s.auth_required, "load_seconds": s.load_seconds,
                "token_delay": s.token_delay, "fail_loads": dict(s.fail_loads),
                "home": str(s.home) if s.home is not None else None,
            },
            "server_running": self.server_running,
            "api_port": self.api_port,
            "api_url": self.api_url,
            "control_port": self.control_port,
            "cors": self.state.cors,
            "loaded": self.loaded(),
            "downloaded": self.downloaded(),
            "loading": [
                {"job_id": j.job_id, "model": j.spec.key, "identifier": j.identifier, "progress": j.progress}
                for j in self.state.engine.pending_jobs()
            ],
            "request_counts": self.request_counts(),
        }

    # --- fake CLI ------------------------------------------------------------------------------------
    def install_lms(self, bin_dir: Path, env: dict[str, str] | None = None) -> Path:
        """Write an executable fake `lms` into `bin_dir` that drives this emulator."""
        if env is None:
            if not self._alive:
                raise RuntimeError("start the emulator before installing an lms bound to its control port")
            env = {"LMS_EMULATOR_CONTROL_URL": self.control_url}
        return home_layout.install_script(Path(bin_dir), env)
