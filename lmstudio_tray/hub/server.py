"""The hub's HTTP service: stdlib `ThreadingHTTPServer`, JSON in and out, one bearer token per member.

    POST /v1/uses   {"uses": [{"instance": ..., "model": ..., "age_seconds": ...}, ...]}
                    -> {"member": ..., "stored": n}
    GET  /v1/uses   -> {"uses": [{"member", "instance", "model", "age_seconds"}, ...]}
    POST/GET /v1/usage: the members' usage summaries (hub/usage.py)
    GET  /v1/health -> {"ok": true}   (no token)

It binds 127.0.0.1 unless told otherwise; any other address needs a TLS certificate and key (tokens must not
cross a network in clear), or `HubServer` refuses to start.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import ssl
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeGuard

from lmstudio_tray.hub.limits import Limits, MemberBuckets, OverLimit, Traffic
from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.protocol import JsonHandler, echo
from lmstudio_tray.hub.protocol import Reject as _Reject
from lmstudio_tray.hub.store import StoreError, Use, UseStore
from lmstudio_tray.hub.usage import UsageRejected, UsageStore, parse_body

log = logging.getLogger(__name__)
MAX_USES = 500
# path -> the methods it serves (405's Allow)
PATHS = {"/v1/uses": "GET, POST", "/v1/usage": "GET, POST", "/v1/health": "GET"}
MAX_TEXT = 256
# Connections handled at once, before any token is checked: each holds a thread for up to the idle timeout (30 s)
# and reads up to 1 MiB of a refused body. A member's lmstudio-tray opens one connection per round and closes it
# within milliseconds, so a team of a hundred members, each with a tray and a `serve` on the shortest `hub_every`,
# holds a few at once; 256 is far above that, and bounds what a client that opens connections and stays silent
# can hold (256 threads, not thousands).
MAX_CONNECTIONS = 256
# Of those, from one address: members behind one NAT share theirs, each holding a connection for milliseconds per
# round, so 64 leaves a team room; one address that opens connections and stays silent leaves the others 192.
# This machine's own addresses are not capped: a TLS proxy in front of a loopback hub connects from there for
# every member.
MAX_PER_ADDRESS = 64
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s")


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
    """Where the hub listens and keeps its state; `cert`/`key` (PEM files) for TLS; what one member may send
    (`limits`); how long a connection may stay silent (`idle_timeout`, seconds)."""

    state: Path
    host: str = "127.0.0.1"
    port: int = 8765
    cert: Path | None = None
    key: Path | None = None
    limits: Limits = field(default_factory=Limits)
    idle_timeout: float = 30.0
    max_connections: int = MAX_CONNECTIONS
    max_per_address: int = MAX_PER_ADDRESS


def _text(value: object) -> TypeGuard[str]:
    # printable only: a model key goes into other members' messages and logs (no newlines, no lone surrogates)
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT and value.isprintable()


def _parse_uses(body: bytes) -> list[Use]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
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
        if not _text(instance):
            raise _Reject(400, f"uses[{n}].instance must be a string of 1 to {MAX_TEXT} printable characters")
        if not _text(model):
            raise _Reject(400, f"uses[{n}].model must be a string of 1 to {MAX_TEXT} printable characters")
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age < 1e9:
            raise _Reject(400, f"uses[{n}].age_seconds must be a number of seconds >= 0")
        uses.append(Use("", instance, model, float(age)))
    return uses


class _Handler(JsonHandler):
    server: _Server

    def connection_timeout(self) -> float:
        return self.server.settings.idle_timeout

    def log_message(self, format: str, *args: Any) -> None:
        # the request line only, never headers (the token)
        log.debug("hub %s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        self.send_json(status, payload)

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

    def _store(self, member: str, uses: list[Use]) -> int:
        """`member`'s report on disk (before it is acknowledged), within the member's limits."""
        try:
            self.server.buckets.take(member)
            return self.server.uses.report(member, uses)
        except OverLimit as exc:
            raise self._over(exc) from None

    def _reader(self) -> str:
        """The member asking to read, within its read limit."""
        member = self._member()
        try:
            self.server.reads.take(member)
        except OverLimit as exc:
            raise self._over(exc) from None
        return member

    def _store_usage(self, member: str, body: bytes) -> None:
        """`member`'s usage summary on disk (before it is acknowledged), within the same report bucket."""
        try:
            summary = parse_body(body)
        except RecursionError:  # arrays nested thousands deep
            raise _Reject(400, "the body is not JSON; send the summary `lmstudio-tray team export` writes") from None
        except UsageRejected as exc:
            raise _Reject(400, str(exc)) from None
        try:
            self.server.buckets.take(member)
        except OverLimit as exc:
            raise self._over(exc) from None
        self.server.usage.report(member, summary)

    @staticmethod
    def _over(exc: OverLimit) -> _Reject:
        if exc.retry_after is None:
            return _Reject(409, str(exc))
        return _Reject(429, str(exc), headers={"Retry-After": str(math.ceil(exc.retry_after))})

    def dispatch(self, method: str) -> None:
        try:
            body = self.read_body()  # read first, whatever the route: its bytes must not frame a next request
            path = self.path.split("?", 1)[0]
            if path == "/v1/health" and method == "GET":
                self._send(200, {"ok": True})
            elif path == "/v1/uses" and method == "GET":
                self._reader()
                self._send(200, {"uses": [{"member": u.member, "instance": u.instance, "model": u.model,
                                           "age_seconds": round(u.age, 1)} for u in self.server.uses.uses()]})
            elif path == "/v1/uses" and method == "POST":
                if body is None:
                    raise _Reject(411, "send the report with a Content-Length")
                member = self._member()
                stored = self._store(member, _parse_uses(body))
                self._send(200, {"member": member, "stored": stored})
            elif path == "/v1/usage" and method == "GET":
                self._reader()
                self._send(200, self.server.usage.team())
            elif path == "/v1/usage" and method == "POST":
                if body is None:
                    raise _Reject(411, "send the summary with a Content-Length")
                member = self._member()
                self._store_usage(member, body)
                self._send(200, {"member": member, "stored": True})
            elif path in PATHS:
                raise _Reject(405, f"{echo(method)} is not served on {path}: use {PATHS[path]}",
                              headers={"Allow": PATHS[path]})
            else:
                raise _Reject(404, f"no {echo(path)}: the hub serves GET/POST /v1/uses, GET/POST /v1/usage "
                              "and GET /v1/health")
        except _Reject as exc:
            self.send_reject(exc)
        except Exception:
            log.exception("hub request failed")
            self._send(500, {"error": "the hub failed; see its log"})

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: HubSettings, members: MemberTokens, uses: UseStore, usage: UsageStore,
                 tls: bool = False) -> None:
        self.members = members
        self.uses = uses
        self.usage = usage
        self.buckets = MemberBuckets(settings.limits)
        self.reads = MemberBuckets(settings.limits, traffic=Traffic.READS)
        self.settings = settings
        self.tls = tls
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._open: dict[str, int] = {}  # address -> connections open from it
        self._open_lock = threading.Lock()
        self._refusing: set[str] = set()  # said once in the log until a connection is taken again ("": the total)
        super().__init__((settings.host, settings.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection while fewer than `max_connections` are open, and fewer than
        `max_per_address` from its address; beyond, a 503 and close."""
        address = str(client_address[0])
        refused = self._take_slot(address)
        if refused is not None:
            self._refuse(request, *refused)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread was started: nothing else will give the slot back
            self._give_slot(address)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_slot(str(client_address[0]))

    def _take_slot(self, address: str) -> tuple[str, bool] | None:
        """Count a connection from `address`; None when taken, else whose cap was reached ("" for the total) and
        whether this is its first refusal since it last got a connection (to say in the log; kept under the lock,
        so a connection closing meanwhile cannot leave it stale)."""
        with self._open_lock:
            if self._open.get(address, 0) >= self.settings.max_per_address and not is_loopback(address):
                refused = address
            elif not self._slots.acquire(blocking=False):
                refused = ""
            else:
                self._open[address] = self._open.get(address, 0) + 1
                self._refusing.discard(address)
                self._refusing.discard("")
                return None
            first = refused not in self._refusing
            self._refusing.add(refused)
            return refused, first

    def _give_slot(self, address: str) -> None:
        with self._open_lock:
            left = self._open.pop(address, 1) - 1
            if left:
                self._open[address] = left
            else:
                self._refusing.discard(address)  # kept only for addresses with connections open: bounded
            self._slots.release()

    def _refuse(self, request: Any, address: str, first: bool) -> None:
        """Answer 503 without a thread, in the accepting one: never waiting on the client (a TLS connection is
        only closed: its handshake would wait on the client). `address`: the one over its cap, "" for the total;
        `first`: said in the log."""
        if first:
            if address:
                log.warning("hub: %s has %d connections open, the most one address may; refusing more from it "
                            "until one closes", address, self.settings.max_per_address)
            else:
                log.warning("hub: %d connections are open, the most it serves at once; refusing more until one "
                            "closes", self.settings.max_connections)
        error = ("this address has too many connections open to the hub; close some, or retry in a moment"
                 if address else "the hub has too many connections open; retry in a moment")
        try:
            if not self.tls:
                body = json.dumps({"error": error}).encode()
                request.setblocking(False)  # the answer fits the socket's buffer; a full one drops it, not the hub
                request.send(BUSY % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)


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
            uses = UseStore(state, limits=self.settings.limits)
            usage = UsageStore(state)
        except StoreError as exc:  # uses.json or usage.json damaged: starting empty would overwrite it
            raise HubError(str(exc)) from None
        try:
            server = _Server(self.settings, MemberTokens(state), uses, usage, tls=context is not None)
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
