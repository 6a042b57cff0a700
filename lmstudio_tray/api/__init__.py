"""The loopback endpoint for the OpenCode plugin: app, routes by area, security guard, server.

The discovery file it writes is the core's (`core/support/endpoint_file.py`): the plugin, the CLI and
`doctor` read it without importing the web stack."""

from __future__ import annotations

from lmstudio_tray.api.server import EndpointError, EndpointServer, attach_endpoint

__all__ = ["EndpointError", "EndpointServer", "attach_endpoint"]
