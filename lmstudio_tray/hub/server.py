"""The hub's HTTP service: stdlib `ThreadingHTTPServer`, JSON in and out, one bearer token per member.

    POST /v1/uses   {"uses": [{"instance": ..., "model": ..., "age_seconds": ...}, ...]}
                    -> {"member": ..., "stored": n}
    GET  /v1/uses   -> {"uses": [{"member", "instance", "model", "age_seconds"}, ...]}
    GET  /v1/health -> {"ok": true}   (no token)
    POST/GET /v1/usage: the members' usage summaries (hub/usage.py)

It binds 127.0.0.1 unless told otherwise; any other address needs a TLS certificate and key (tokens must not
cross a network in clear), or `HubServer` refuses to start.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.store import Use, UseStore
from lmstudio_tray.hub.usage import UsageRejected, UsageStore, parse_body

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_USES = 500
MAX_TEXT = 256


class HubError(Exception):
    """The hub cannot start as asked; the message says why and what to do."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) stays on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HubSettings:
    """Where the hub listens and keeps its state; `cert`/`key` (PEM files) for TLS."""

    state: Path
    host: str = "127.0.0.1"
    port: int = 8765
    cert: Path | None = None
    key: Path | None = None


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _parse_uses(body: bytes) -> list[Use]:
    try:
        data = json.loads(body)
    except ValueError:
        raise _Reject(400, 'the body is not JSON; send {"uses": [{"instance", "model", "age_seconds"}]}') from None
    items = data.get("uses") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise _Reject(400, "the body needs a list \"uses\" of {\"instance\", \"model\", \"age_seconds\"}")
    if len(items) > MAX_USES:
        raise _Reject(413, f"at most {MAX_USES} uses per report")
    uses = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise _Reject(400, f"uses[{n}] is not an object")
        instance, model, age = item.get("instance"), item.get("model"), item.get("age_seconds")
        if not (isinstance(instance, str) and 0 < len(instance) <= MAX_TEXT):
            raise _Reject(400, f"uses[{n}].instance must be a string of 1 to {MAX_TEXT} characters")
        if not (isinstance(model, str) and 0 < len(model) <= MAX_TEXT):
            raise _Reject(400, f"uses[{n}].model must be a string of 1 to {MAX_TEXT} characters")
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age < 1e9:
            raise _Reject(400, f"uses[{n}].age_seconds must be a number of seconds >= 0")
        uses.append(Use("", instance, model, float(age)))
    return uses


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a connection may stay silent (also bounds a stalled TLS handshake)

    def log_message(self, format: str, *args: Any) -> None:
        # the request line only, never headers (the token)
        log.debug("hub %s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _member(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Reject(401, "no member token: send 'Authorization: Bearer <token>' "
                          "(a token comes from `lmstudio-tray hub member add NAME` on the hub's machine)")
        name, active = self.server.members.who(token.strip())
        if name is None:
            raise _Reject(401, "unknown member token: ask the hub's admin for one "
                          "(`lmstudio-tray hub member add NAME`)")
        if not active:
            raise _Reject(403, f"the token of member {name!r} was revoked: ask the hub's admin for a new one")
        return name

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _Reject(411, "send a Content-Length")
        if int(length) > MAX_BODY:
            self.close_connection = True
            raise _Reject(413, f"the body is over {MAX_BODY} bytes")
        return self.rfile.read(int(length))

    def _handle(self, method: str) -> None:
        try:
            path = self.path.split("?", 1)[0]
            if path == "/v1/health" and method == "GET":
                self._send(200, {"ok": True})
            elif path == "/v1/uses" and method == "GET":
                self._member()
                self._send(200, {"uses": [{"member": u.member, "instance": u.instance, "model": u.model,
                                           "age_seconds": round(u.age, 1)} for u in self.server.uses.uses()]})
            elif path == "/v1/uses" and method == "POST":
                body = self._body()
                member = self._member()
                uses = _parse_uses(body)
                self.server.uses.report(member, uses)  # on disk before the answer
                self._send(200, {"member": member, "stored": len(uses)})
            elif path == "/v1/usage" and method == "GET":
                self._member()
                self._send(200, self.server.usage.team())
            elif path == "/v1/usage" and method == "POST":
                body = self._body()
                member = self._member()
                self.server.usage.report(member, parse_body(body))  # on disk before the answer
                self._send(200, {"member": member, "stored": True})
            else:
                raise _Reject(404, f"no {method} {path}: the hub serves GET/POST /v1/uses, GET/POST /v1/usage "
                              "and GET /v1/health")
        except _Reject as exc:
            self._send(exc.status, {"error": str(exc)})
        except UsageRejected as exc:
            self._send(400, {"error": str(exc)})
        except Exception:
            log.exception("hub request failed")
            self._send(500, {"error": "the hub failed; see its log"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], members: MemberTokens, uses: UseStore,
                 usage: UsageStore | None = None) -> None:
        self.members = members
        self.uses = uses
        self.usage = usage if usage is not None else UsageStore(uses.path.parent)
        super().__init__(address, _Handler)


class HubServer:
    """The hub: `start()` binds (or raises HubError) and serves in a thread; `stop()` closes it."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise HubError("the hub is not running")
        scheme = "https" if self.settings.cert else "http"
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"{scheme}://{host}:{self._server.server_address[1]}"

    def _context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.cert is None:
            if not is_loopback(s.host):
                raise HubError(f"the hub would serve {s.host} without TLS, sending member tokens in clear: give "
                               "--tls-cert and --tls-key (PEM files), or bind 127.0.0.1 behind a TLS proxy")
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(s.cert), str(s.key) if s.key else None)
        except (OSError, ssl.SSLError) as exc:
            raise HubError(f"the TLS certificate {s.cert} (key {s.key}) cannot be used: {exc}") from None
        return context

    def start(self) -> None:
        context = self._context()
        state = self.settings.state
        state.mkdir(parents=True, exist_ok=True)
        try:
            server = _Server((self.settings.host, self.settings.port), MemberTokens(state), UseStore(state))
        except OSError as exc:
            raise HubError(f"the hub cannot listen on {self.settings.host}:{self.settings.port}: {exc}") from None
        if context is not None:
            # the handshake happens in the connection's own thread (on its first read), not in `accept`, so a client
            # that connects and says nothing holds up only itself, for at most the handler's timeout
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="lmstudio-tray-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
