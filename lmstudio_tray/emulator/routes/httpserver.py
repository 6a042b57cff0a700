"""A small, restartable stdlib HTTP/1.1 server that looks like LM Studio's Express app on the wire."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

JSON_TYPE = "application/json; charset=utf-8"
SSE_TYPE = "text/event-stream"
HOST = "127.0.0.1"
# Node's default keepAliveTimeout: idle keep-alive connections are closed after 5 s.
KEEP_ALIVE_SECONDS = 5


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    json_error: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def field(self, name: str, default: Any = None) -> Any:
        return self.json.get(name, default) if isinstance(self.json, dict) else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None
    # "drop": close without answering; "truncate": promise the full body, send half, close.
    action: Literal["respond", "drop", "truncate"] = "respond"
    # Run once the whole response has been written (e.g. the process "dying" after it said it would).
    after: Callable[[], None] | None = None


def dumps(data: Any) -> bytes:
    # Express res.json() output: compact separators, UTF-8.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, body=dumps(data), headers=dict(headers or {}))


App = Callable[[Request], Response]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, port: int, app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = KEEP_ALIVE_SECONDS
    # Headers and body go out in separate writes; with Nagle + delayed ACK that costs ~40 ms per request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # Express sends no Server header.
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            path=parts.path or "/",
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        if body:
            try:
                request.json = json.loads(body)
            except ValueError:
                request.json_error = True
        try:
            response = self.server.app(request)
        except Exception as exc:  # a bug in a route must not kill the connection thread silently
            response = json_response({"error": f"Internal emulator error: {exc!r}"}, status=500)
        self._send(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _dispatch

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _headers(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("X-Powered-By", "Express")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)

    def _send(self, response: Response) -> None:
        try:
            if response.action == "drop":
                self._drop()
                return
            self._headers(response)
            if response.stream is not None:
                self._send_stream(response.stream)
                return
            self.send_header("Content-Length", str(len(response.body)))
            self._connection_headers()
            self.end_headers()
            if response.action == "truncate":
                self.wfile.write(response.body[: max(1, len(response.body) // 2)])
                self.wfile.flush()
                self._drop()
                return
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True
        if response.after is not None:
            response.after()

    def _connection_headers(self) -> None:
        if self.close_connection:
            self.send_header("Connection", "close")
        else:
            self.send_header("Connection", "keep-alive")
            self.send_header("Keep-Alive", f"timeout={KEEP_ALIVE_SECONDS}")

    def _send_stream(self, chunks: Iterator[bytes]) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._connection_headers()
        self.end_headers()
        self.wfile.flush()
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except _DropStream:
            self._drop()


class _DropStream(Exception):
    """Raised inside a stream generator to cut the connection mid-response."""


DropStream = _DropStream


class HttpService:
    """One listening port on 127.0.0.1; the port chosen at the first start is reused by later starts."""

    def __init__(self, app: App, port: int = 0) -> None:
        self._app = app
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, port: int | None = None) -> None:
        """Listen (again); a different `port` moves a running server. The new socket is bound before the old
        one closes, so a refused bind (OSError: port in use) leaves the server as it was."""
        with self._lock:
            if self._server is not None and (port is None or port == self.port):
                return
            server = _Server(self.port if port is None else port, self._app)
            if self._server is not None:
                self._stop_locked()
            # Non-blocking accept: a client that connects and vanishes cannot wedge the serve loop.
            server.socket.setblocking(False)
            self.port = server.server_address[1]
            wake_reader, wake_writer = socket.socketpair()
            thread = threading.Thread(
                target=self._serve, args=(server, wake_reader), name=f"emulator-http-{self.port}", daemon=True
            )
            self._server, self._thread, self._wake = server, thread, wake_writer
            thread.start()

    @staticmethod
    def _serve(server: _Server, wake: socket.socket) -> None:
        # Blocks in select() without a poll interval, so idle emulators cost nothing and stop instantly.
        with selectors.DefaultSelector() as selector, wake:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if wake in ready:
                    return
                server.handle_request()

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake.send(b"x")
            self._wake.close()
            self._wake = None
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._thread = None
        server.server_close()
        # Stopping LM Studio's server terminates in-flight requests and keep-alive connections.
        server.drop_connections()
