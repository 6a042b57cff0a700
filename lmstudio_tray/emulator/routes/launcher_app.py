"""The "operating system" port: what runs when `lms` starts the fake llmster (or LM Studio app) executable
recorded in the home's install-location file. It stays open while the emulated process is down, which is the
only way a separate `lms` process can bring an in-process emulator back."""

from __future__ import annotations

from typing import Any, Protocol

from lmstudio_tray.emulator.routes.httpserver import Request, Response, json_response
from lmstudio_tray.emulator.state.settings import EmulatorSettings


class Launchable(Protocol):
    settings: EmulatorSettings

    @property
    def alive(self) -> bool: ...
    def start(self) -> Any: ...


class LauncherApp:
    def __init__(self, emulator: Launchable) -> None:
        self.emulator = emulator

    def __call__(self, request: Request) -> Response:
        if (request.method, request.path.rstrip("/")) != ("POST", "/launch"):
            return json_response({"error": f"Unknown launcher route ({request.method} {request.path})"}, status=404)
        failure = self.emulator.settings.launch_error
        if failure is not None:
            # The executable starts and exits at once: nothing ever listens.
            return json_response({"error": failure}, status=500)
        was_alive = self.emulator.alive
        if not was_alive:
            self.emulator.start()
        return json_response({"started": not was_alive})
