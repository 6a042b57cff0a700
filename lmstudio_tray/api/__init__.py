"""The loopback endpoint for the OpenCode plugin: app, security guard, discovery file, server."""

from __future__ import annotations

from lmstudio_tray.api._uvicorn_lean import skip_uvicorn_command_line

skip_uvicorn_command_line()  # before anything in this package imports uvicorn

from lmstudio_tray.api.discovery import EndpointInfo, read_endpoint  # noqa: E402
from lmstudio_tray.api.server import EndpointError, EndpointServer, attach_endpoint  # noqa: E402

__all__ = ["EndpointError", "EndpointInfo", "EndpointServer", "attach_endpoint", "read_endpoint"]
