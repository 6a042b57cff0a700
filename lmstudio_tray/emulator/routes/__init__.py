"""The emulator's two ports: the HTTP server (OpenAI-compatible, REST v0 and v1) and the always-on internal
"API server" with the private `/_emulator/*` control routes, on a small stdlib HTTP/1.1 server."""
