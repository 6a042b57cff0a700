"""The `Emulator`: a fake LM Studio process with an internal control port and an optional HTTP server."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from lmstudio_tray.emulator.routes import shapes
from lmstudio_tray.emulator.routes.api_app import ApiApp
from lmstudio_tray.emulator.routes.control_app import ControlApp
from lmstudio_tray.emulator.routes.httpserver import HOST, HttpService
from lmstudio_tray.emulator.routes.launcher_app import LauncherApp
from lmstudio_tray.emulator.state import home as home_layout
from lmstudio_tray.emulator.state.catalog import ModelSpec
from lmstudio_tray.emulator.state.downloads import DownloadJob
from lmstudio_tray.emulator.state.engine import LoadOptions
from lmstudio_tray.emulator.state.faults import Fault
from lmstudio_tray.emulator.state.records import RecordedRequest
from lmstudio_tray.emulator.state.resources import Estimate
from lmstudio_tray.emulator.state.settings import LIVE_SETTINGS, EmulatorSettings, check_live
from lmstudio_tray.emulator.state.shared import EmulatorState
from lmstudio_tray.emulator.state.versioning import parse_version

TTL_SWEEP_SECONDS = 0.25


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class BindRefused(OSError):
    """The HTTP server could not listen where it was asked to (port in use, address not on this machine)."""

    def __init__(self, cause: OSError, address: str, port: int) -> None:
        super().__init__(cause.errno, cause.strerror)
        code = errno.errorcode.get(cause.errno or 0, "EUNKNOWN")
        # The shape of LM Studio's own log entry: `[ERROR] Error starting server {"code":"EACCES",...}`.
        self.details: dict[str, object] = {
            "code": code, "errno": -(cause.errno or 0), "syscall": "listen", "address": address, "port": port,
        }


def _check_address(address: str) -> None:
    """The emulator only ever listens on loopback; any other address is checked for being bindable on this
    machine (EADDRNOTAVAIL otherwise), without accepting connections on it."""
    try:
        if ipaddress.ip_address(address).is_loopback:
            return
    except ValueError:
        if address == "localhost":
            return
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))


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
        # Only with a home: the fake llmster executable recorded there reaches the emulator through it.
        self._launcher = HttpService(LauncherApp(self))
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
            self.state.downloads.restart_clock()
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
                self._install_launcher(self.settings.home)
            return self

    def _install_launcher(self, home: Path) -> None:
        if self._launcher.running:
            return
        self._launcher.start()
        home_layout.write_install_location(home, launcher_url=self._launcher.url, daemon=self.settings.daemon)

    def kill(self) -> None:
        """The LM Studio process dies: both ports close and loads in progress abort."""
        with self._lifecycle:
            self.state.tick_downloads()  # downloads stand still while the process is dead
            self.state.engine.kill()
            self.state.dead.set()
            self._stop_sweeper()
            self._api.stop()
            self._control.stop()
            self._alive = False

    def close(self) -> None:
        self.kill()
        self._launcher.stop()

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
                self.state.tick_downloads()

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

    def start_server(self, port: int | None = None, cors: bool | None = None, bind: str | None = None) -> None:
        """Open the API port (the same one as before unless `port` is given), like `lms server start`. `bind`
        is the network interface asked for (`--bind`); the server still listens on 127.0.0.1 only, after
        checking that the address exists here. A refused bind raises BindRefused and changes nothing."""
        with self._lifecycle:
            address = bind or "127.0.0.1"
            if self._alive:
                try:
                    _check_address(address)
                    self._api.start(port)
                except OSError as exc:
                    refused = BindRefused(exc, address, port if port is not None else self._api.port)
                    self.state.server_error = refused.details
                    raise refused from exc
            elif port is not None:
                self._api.port = port
            self.state.server_error = None
            self.state.network_interface = address
            if cors is not None:
                self.state.cors = bool(cors)
            self.settings.server_running = True
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
            network_interface=self.state.network_interface,
        )

    def info(self) -> dict[str, Any]:
        """What the SDK's `system.getInfo()` answers (`lms daemon up/status`)."""
        return {"pid": os.getpid(), "isDaemon": self.settings.daemon, "version": self.settings.version}

    # --- models --------------------------------------------------------------------------------------
    def load(
        self, key: str, context_length: int | None = None, identifier: str | None = None, ttl: float | None = None,
        options: LoadOptions | None = None,
    ) -> str:
        """Load instantly (test setup); returns the instance identifier, stacking `key:2`, `key:3`, ..."""
        spec = self.state.catalog.find(key)
        if spec is None:
            raise KeyError(f"model {key!r} is not in the emulator catalog")
        job = self.state.engine.start_load(
            spec, duration=0.0, identifier=identifier, context_length=context_length, ttl=ttl,
            variant=key if "@" in key else None, options=options,
        )
        return self.state.engine.load_now(job).identifier

    def estimate(self, key: str, context_length: int | None = None, gpu: float | None = None) -> Estimate:
        """What `lms load --estimate-only` reports for `key` under the current `memory_bytes`."""
        spec = self.state.catalog.find(key)
        if spec is None:
            raise KeyError(f"model {key!r} is not in the emulator catalog")
        return self.state.estimate(spec, context_length=context_length, gpu=gpu)

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

    # --- downloads -----------------------------------------------------------------------------------
    def downloads(self) -> list[dict[str, Any]]:
        """Every download job as its REST v1 status object, plus `model`."""
        self.state.tick_downloads()
        return [{**job.to_json(), "model": job.spec.key} for job in self.state.downloads.jobs()]

    def pause_download(self, job_id: str) -> DownloadJob:
        """What a person does in the app's download manager (the REST API has no pause route)."""
        return self.state.downloads.set_paused(job_id, True, self.settings.download_speed)

    def resume_download(self, job_id: str) -> DownloadJob:
        return self.state.downloads.set_paused(job_id, False, self.settings.download_speed)

    def finish_downloads(self) -> int:
        """Complete every running download now (or fail it at its `fail_downloads` fraction); returns how many.
        Paused downloads stay paused."""
        return self.state.downloads.finish_all(self.settings.download_speed)

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
        fail_loads (replaces the whole key -> message mapping), memory_bytes, download_speed, fail_downloads
        (replaces the mapping), launch_error and speed_scale."""
        unknown = set(changes) - LIVE_SETTINGS
        if unknown:
            raise ValueError(f"settings that cannot change live: {sorted(unknown)}")
        if "version" in changes:
            parse_version(str(changes["version"]))
        for name in ("load_seconds", "token_delay"):
            if name in changes and float(changes[name]) < 0:
                raise ValueError(f"{name} must be >= 0")
        with self._lifecycle:
            previous = {name: getattr(self.settings, name) for name in changes}
            # Downloads so far advance at the old speed.
            self.state.tick_downloads()
            for name, value in changes.items():
                if name in ("fail_loads", "fail_downloads"):
                    value = dict(value or {})
                setattr(self.settings, name, value)
            try:
                check_live(self.settings)
            except ValueError:
                for name, value in previous.items():
                    setattr(self.settings, name, value)
                raise
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
                "daemon": s.daemon, "launch_error": s.launch_error, "memory_bytes": s.memory_bytes,
                "download_speed": s.download_speed, "fail_downloads": dict(s.fail_downloads),
                "speed_scale": s.speed_scale,
            },
            "info": self.info(),
            "server_running": self.server_running,
            "api_port": self.api_port,
            "api_url": self.api_url,
            "control_port": self.control_port,
            "cors": self.state.cors,
            "network_interface": self.state.network_interface,
            "server_error": self.state.server_error,
            "loaded": self.loaded(),
            "downloaded": self.downloaded(),
            "offered": [shapes.lms_model_info(spec) for spec in self.state.downloads.offered],
            "loading": [
                {"job_id": j.job_id, "model": j.spec.key, "identifier": j.identifier, "progress": j.progress}
                for j in self.state.engine.pending_jobs()
            ],
            "downloads": self.downloads(),
            "request_counts": self.request_counts(),
        }

    # --- fake CLI ------------------------------------------------------------------------------------
    def install_lms(self, bin_dir: Path, env: dict[str, str] | None = None) -> Path:
        """Write an executable fake `lms` into `bin_dir` that drives this emulator."""
        if env is None:
            if not self._alive:
                raise RuntimeError("start the emulator before installing an lms bound to its control port")
            env = {"LMS_EMULATOR_CONTROL_URL": self.control_url}
        return home_layout.install_lms_script(Path(bin_dir), env)
