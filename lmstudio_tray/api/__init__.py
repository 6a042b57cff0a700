"""The loopback endpoint for the OpenCode plugin: app, security guard, discovery file, server."""

from __future__ import annotations

from lmstudio_tray.api.discovery import EndpointInfo, read_endpoint
from lmstudio_tray.api.server import EndpointError, EndpointServer, attach_endpoint

__all__ = ["EndpointError", "EndpointInfo", "EndpointServer", "attach_endpoint", "read_endpoint"]
