"""Shared pieces of the hardening tests: an in-process endpoint and real `serve` subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.notify.base import Notifier
from lmstudio_tray.notify.service import attach_notifications


@dataclass
class Endpoint:
    """A real endpoint (uvicorn on 127.0.0.1) over a real core, run on a `CoreThread` like in the tray."""

    core: Core
    emu: Emulator
    server: EndpointServer
    thread: CoreThread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        auth = {"authorization": f"Bearer {self.token if token is None else token}"} if token != "" else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=30)


def start_endpoint(emu: Emulator, *, notifier: Notifier | None = None, **config: Any) -> Endpoint:
    data: dict[str, Any] = {"instances": [{"name": "local", "url": emu.api_url}], "endpoint": {"port": 0}}
    data.update(config)
    core = Core(parse_config(data), lms_path=None)
    server = attach_endpoint(core)
    if notifier is not None:  # before the start, as `serve` and the tray do: the first poll is news too
        attach_notifications(core, notifier)
    thread = CoreThread(core)
    thread.start()
    return Endpoint(core, emu, server, thread)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; generous timeouts because the test machine is loaded."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def write_config(path: Path, emu_url: str, *, port: int = 0, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[[instances]]\nname = "local"\nurl = "{emu_url}"\n\n[endpoint]\nport = {port}\n{extra}', encoding="utf-8"
    )
    return path


def state_dir_of(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "lmstudio-tray"


@dataclass
class ServeProcess:
    """`lmstudio-tray serve` in a real subprocess; stdout/stderr go to files so nothing blocks on a pipe."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    env: dict[str, str]
    _closed: bool = field(default=False)

    @property
    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    @property
    def endpoint_file(self) -> Path:
        return state_dir_of(self.env) / "endpoint.json"

    def wait_ready(self, timeout: float = 30.0, marker: str | None = "lmstudio-tray endpoint:") -> dict[str, Any]:
        """The discovery file this process wrote (it exists only once the endpoint listens)."""

        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited with {self.proc.returncode}: {self.stderr}")
            if marker is not None and marker not in self.stdout:
                return None
            try:
                data: dict[str, Any] = json.loads(self.endpoint_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return data if data.get("pid") == self.proc.pid else None

        result: dict[str, Any] = wait_for(ready, timeout)
        return result

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def start_serve(tmp: Path, env: dict[str, str], config: Path, *extra: str, name: str = "serve") -> ServeProcess:
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmstudio_tray", "--config", str(config), "--log-level", "info",
             "serve", "--no-notify", *extra],
            stdout=o, stderr=e, env=env, stdin=subprocess.DEVNULL,
        )
    return ServeProcess(proc, out, err, env)


def child_env() -> dict[str, str]:
    """The test's isolated HOME/XDG dirs (set by tests/conftest.py) for a child process."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env
