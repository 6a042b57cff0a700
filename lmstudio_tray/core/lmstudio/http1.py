"""A small HTTP/1.1 client on asyncio + httptools: the one HTTP client of the tray process.

`LMStudioClient` (status polls, loads, the load-progress stream) and the router (forwarded completions)
both use it. httpx cost the tray about 9 MiB (its imports plus the CA bundle every AsyncClient loads, even
for http:// URLs) and 1.6 ms of CPU per status poll; this costs a fraction of both.

What it does: keep-alive pools per (scheme, host, port) with an idle limit and expiry; Content-Length,
chunked and close-delimited response bodies; per-request timeouts (connect, and the whole request or,
for streams, the response head); TLS for https:// only, its context made on first use; HTTP(S)_PROXY,
ALL_PROXY and NO_PROXY exactly as httpx reads them (`proxy`): http:// through the proxy in absolute
form, https:// through a CONNECT tunnel. What it does not: redirects, compression, cookies, SOCKS proxies,
HTTP/2, streamed request bodies.

A request is sent again only when that is safe. A kept-alive connection the server closed while it sat
idle is noticed before anything is written to it, and the request goes out on a new one. If the server
closes it after the request was written, without answering, only a GET, HEAD or OPTIONS without a body is
sent once more; a POST (a model load, a forwarded completion) may have been acted on, so the caller gets a
`ProtocolError` instead of a second load.

A connection belongs to the event loop that opened it: the CLI runs several `asyncio.run` in a row, and a
connection of another (or a closed) loop is dropped, never reused. Idle connections cost nothing: no
timers, expired ones are closed when the pool next looks at them.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

from lmstudio_tray.core.errors import ConnectError, HTTPError, ProtocolError, RequestTimeout
from lmstudio_tray.core.lmstudio.proxy import Proxy, ProxyRules

__all__ = [
    "Origin",
    "Pool",
    "Request",
    "Response",
    "default_ssl_context",
    "encode_request",
    "split_url",
]

MAX_BUFFERED = 1 << 20  # stop reading a server that sends faster than the caller takes the body
MAX_TUNNEL_HEAD = 64 * 1024  # a proxy's answer to CONNECT is a few lines
_NO_BODY = (204, 304)
# safe to send again after the server may have seen them (RFC 9110 9.2.1), when they carry no body
REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class Origin(NamedTuple):
    """Where a request goes: scheme, host and port (the key connections are pooled by) and the spelling for the Host
    header."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    netloc: str  # for the Host header: host[:port] as written in the URL

    @property
    def key(self) -> tuple[str, str, int]:
        """(scheme, host, port): the connections to one origin share an entry of the pool."""
        return self.scheme, self.host, self.port


def split_url(url: str) -> tuple[Origin, str]:
    """`https://h:8443/base/` -> (the origin, "/base"): the path is a prefix for request targets."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: only http:// and https:// URLs are supported")
    if not parts.hostname:
        raise ValueError(f"{url!r}: the URL has no host")
    port = parts.port or (443 if scheme == "https" else 80)
    netloc = parts.netloc.rpartition("@")[2]  # never send user:password in the Host header
    return Origin(scheme, parts.hostname, port, netloc), parts.path.rstrip("/")


class Request(NamedTuple):
    """One request: its method, its target (path and query), the header lines and the body."""

    method: str
    target: str
    head: bytes  # header lines, each ending in CRLF, Host first
    body: bytes = b""

    @property
    def replayable(self) -> bool:
        """Safe to send again after the server may have acted on it."""
        return self.method in REPLAYABLE and not self.body

    def wire(self, absolute: str = "", extra: bytes = b"") -> bytes:
        """The bytes to send. `absolute` (scheme://host[:port]) makes the target absolute, for a proxy;
        `extra` adds header lines (the proxy's credentials)."""
        line = f"{self.method} {absolute}{self.target} HTTP/1.1\r\n".encode("latin-1")
        return line + self.head + extra + b"\r\n" + self.body

    def describe(self) -> str:
        """METHOD /path for messages: the query is left out (it may carry a key)."""
        return f"{self.method} {self.target.partition('?')[0]}"


def encode_request(
    method: str, target: str, origin: Origin, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
) -> Request:
    """One request with a Content-Length body (none for GET).

    A ValueError for a line break in the target or a header value, which would smuggle in headers of its
    own; the message names the header, never its value (it may be a token).
    """
    lines = [f"Host: {origin.netloc}"]
    for name, value in headers:
        if "\r" in value or "\n" in value:
            raise ValueError(f"the {name} header contains a line break")
        lines.append(f"{name}: {value}")
    if any(c in target for c in " \r\n"):
        raise ValueError("the request path contains a space or a line break")
    if body or method not in ("GET", "DELETE"):
        lines.append(f"Content-Length: {len(body)}")
    try:
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        f"{method} {target}".encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a header or the request path has characters HTTP/1.1 cannot carry") from None
    return Request(method, target, head, body)


_default_ssl: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """The system's CAs plus certifi's (frozen bundles may have no system CAs); made on first https use."""
    global _default_ssl
    if _default_ssl is None:
        context = ssl.create_default_context()
        try:
            import certifi
        except ImportError:
            pass
        else:
            context.load_verify_locations(certifi.where())
        _default_ssl = context
    return _default_ssl


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time, its response parsed by httptools."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.key: tuple[str, str, int] = ("", "", 0)
        self._timer: asyncio.TimerHandle | None = None
        self._whole = True
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.until_eof = False  # the body ends when the server closes the connection
        self.started = False  # any byte of the response arrived
        self.sent_at = 0.0  # perf_counter when the request was written
        self.body_at = 0.0  # perf_counter when the first body byte arrived
        self.complete = False
        self.error: HTTPError | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self._head: asyncio.Future[None] = self.loop.create_future()
        self._wakeup: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.complete:  # bytes nobody asked for on an idle connection: it cannot be trusted
            self.close()
            return
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"the server sent a malformed response ({exc})", started=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete:
            return
        if self.until_eof and self._head.done() and self.error is None:
            self.on_message_complete()  # a close-delimited body ends here
            return
        why = f" ({exc})" if exc else ""
        self._fail(ProtocolError(
            f"the server closed the connection before the response was complete{why}", started=self.started
        ))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if status >= 200 and status not in _NO_BODY:
            names = {name for name, _ in self.headers}
            self.until_eof = b"content-length" not in names and b"transfer-encoding" not in names
        if not self._head.done():
            self._head.set_result(None)
        if self._timer is not None and not self._whole:
            self._stop_timer()  # a stream's timeout covers its head only

    def on_body(self, body: bytes) -> None:
        if not self.body_at:
            self.body_at = time.perf_counter()
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > MAX_BUFFERED and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._stop_timer()
        self._wake()

    # the exchange
    def send(self, request: bytes, timeout: float | None, whole: bool, nominal: float | None = None) -> None:
        """Write `request`; fail it when `timeout` (what is left of `nominal`, the caller's limit) runs out."""
        assert self.transport is not None
        self._reset()
        self.sent_at = time.perf_counter()
        self._whole = whole
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._expire, timeout if nominal is None else nominal)
        self.transport.write(request)

    async def head(self) -> None:
        await self._head

    async def body(self, response: Response) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                # everything that arrived meanwhile goes out as one piece: fewer writes downstream when
                # the caller fell behind, and the bytes are the same
                chunk = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks.clear()
                self.buffered = 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                yield chunk
                continue  # more may have arrived (and the message ended) while the chunk was handled
            if self.complete:
                response.close()  # back to the pool before the caller's loop even ends
                return
            if self.error is not None:
                raise self.error
            self._wakeup = self.loop.create_future()
            await self._wakeup
            self._wakeup = None

    def _expire(self, timeout: float) -> None:
        self._timer = None
        what = "response" if self._whole or self._head.done() else "response head"
        self._fail(RequestTimeout(f"no {what} within {timeout:g} s", started=self.started))
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, exc: HTTPError) -> None:
        if self.error is None:
            self.error = exc
        self._stop_timer()
        if not self._head.done():
            self._head.set_exception(self.error)
            self._head.exception()  # retrieved here: an unawaited failure must not be logged as lost
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def reusable_on(self, loop: asyncio.AbstractEventLoop, now: float, expiry: float) -> bool:
        return (
            self.loop is loop
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.idle_since < expiry
            and not _pending_input(self.transport)
        )

    def discard(self) -> None:
        """Close from any thread: a connection of a closed loop is only dropped (its socket goes with it)."""
        if self.loop.is_closed():
            self.closed = True
            return
        try:
            if self.loop is asyncio.get_running_loop():
                self.close()
                return
        except RuntimeError:  # no running loop in this thread
            pass
        try:
            self.loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # closed meanwhile
            self.closed = True


class Response:
    """A response whose head is in; the body is `content` (non-streamed) or comes from `body()`."""

    __slots__ = ("_conn", "_done", "_pool", "content", "headers", "status")

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self.status = conn.status
        self.headers = conn.headers  # (lower-case name, value) as received
        self.content = b""
        self._conn = conn
        self._pool = pool
        self._done = False

    @property
    def sent_at(self) -> float:
        """perf_counter when the request was written."""
        return self._conn.sent_at

    @property
    def body_at(self) -> float:
        """perf_counter when the first body byte arrived (0 before)."""
        return self._conn.body_at

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header `name` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked framing removed); raises HTTPError if the server breaks off."""
        return self._conn.body(self)

    async def read(self) -> bytes:
        """Read the whole body into `content` and return it; the connection then goes back to the pool. HTTPError if the
        server breaks off."""
        chunks = [chunk async for chunk in self.body()]
        self.content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self.content

    def close(self) -> None:
        """Give a finished keep-alive connection back to the pool; close one that is mid-response."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed:
            self._pool._give_back(conn)
        else:
            conn.close()  # mid-response: for LM Studio, closing also stops the work behind it


def _pending_input(transport: asyncio.Transport) -> bool:
    """Whether bytes or an end of stream wait on an idle connection that the loop has not read yet.

    An idle connection expects nothing, so anything there means the server closed it (or sent what nobody
    asked for): it is not used, and nothing was written to it. This catches a close that arrived since the
    loop last looked, which `closed` cannot know about yet.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return True
    if fd < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows
    return bool(readable)


class _Tunnel(asyncio.Protocol):
    """The proxy's answer to CONNECT: a status line and headers; after it, the bytes are the target's."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_TUNNEL_HEAD:
                self.answer.set_exception(ConnectError("the proxy's answer to CONNECT is not HTTP"))
            return
        status_line = self._buffer[:end].split(b"\r\n", 1)[0].decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            self.answer.set_exception(ConnectError("the proxy's answer to CONNECT is not HTTP"))
        elif code.startswith("2") and self._buffer[end + 4:]:  # a refusal may carry a page; a tunnel nothing
            self.answer.set_exception(ConnectError("the proxy sent data before the tunnel was set up"))
        else:
            self.answer.set_result((int(code), reason.strip()))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectError("the proxy closed the connection instead of answering CONNECT"))


def _authority(origin: Origin) -> str:
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return f"{host}:{origin.port}"


def _via(proxy: Proxy | None) -> str:
    return "" if proxy is None else f" (through the proxy {proxy.url})"


class Pool:
    """Keep-alive connections per (scheme, host, port); at most `max_idle` idle ones per origin.

    `proxies` decides which origins go through a proxy; by default the environment's proxy settings, read
    once here the way an httpx client reads them when it is made.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 2.0,
        max_idle: int = 4,
        idle_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        proxies: ProxyRules | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self.connections_opened = 0  # for tests and benches: how often keep-alive did not help
        self._ssl = ssl_context
        self._proxies = proxies if proxies is not None else ProxyRules.from_environment()
        self._routes: dict[tuple[str, str, int], Proxy | None] = {}
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}

    def proxy_for(self, origin: Origin) -> Proxy | None:
        """The proxy requests to `origin` go through (None: directly)."""
        key = origin.key
        if key not in self._routes:
            self._routes[key] = self._proxies.proxy_for(*key)
        return self._routes[key]

    async def request(
        self,
        origin: Origin,
        request: Request,
        *,
        timeout: float | None = None,
        stream: bool = False,
        connect_timeout: float | None = None,
    ) -> Response:
        """Send `request` (from `encode_request`) and return once the head is in, or the whole body.

        `timeout` bounds the whole request, connect included; with `stream=True` only up to the response
        head, and the caller reads `body()` and must `close()` the response. Raises `HTTPError` subclasses.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        proxy = self.proxy_for(origin)
        if proxy is not None and origin.scheme == "http":  # the proxy needs the whole URL, and may want credentials
            auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            wire = request.wire(f"http://{origin.netloc}", auth.encode("latin-1"))
        else:  # direct, or inside a CONNECT tunnel: as to the server itself
            wire = request.wire()
        conn = self._take(origin.key, loop)
        if conn is not None:
            try:
                return await self._exchange(conn, wire, deadline, timeout, stream)
            except HTTPError as exc:
                if exc.started or isinstance(exc, RequestTimeout):
                    raise
                if not request.replayable:
                    raise ProtocolError(
                        f"the server closed the connection without answering {request.describe()}; it was not "
                        "sent again, because the server may have acted on it already"
                    ) from None
                # the server closed this kept-alive connection as the request arrived: a GET goes once more
        conn = await self._open(origin, proxy, loop, deadline, connect_timeout)
        return await self._exchange(conn, wire, deadline, timeout, stream)

    async def aclose(self) -> None:
        """Close every idle connection (those of a closed loop are only dropped); responses still being read keep
        theirs."""
        for conns in self._idle.values():
            for conn in conns:
                conn.discard()
        self._idle.clear()

    def idle_count(self, origin: Origin) -> int:
        """The idle connections to `origin` that are still open (for tests and benches)."""
        return sum(1 for c in self._idle.get(origin.key, ()) if not c.closed)

    # ---- internals ---------------------------------------------------------------------------------

    def _take(self, key: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest to be still open
            if conn.reusable_on(loop, now, self.idle_expiry):
                return conn
            conn.discard()
        return None

    def _give_back(self, conn: _Connection) -> None:
        assert conn.transport is not None
        key = conn.key
        idle = self._idle.setdefault(key, deque())
        now = time.monotonic()
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.idle_expiry):
            idle.popleft().discard()
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    async def _exchange(
        self, conn: _Connection, request: bytes, deadline: float | None, timeout: float | None, stream: bool
    ) -> Response:
        left = None if deadline is None else max(0.0, deadline - conn.loop.time())
        conn.send(request, left, not stream, timeout)
        try:
            await conn.head()
            response = Response(self, conn)
            if not stream:
                await response.read()
        except BaseException:  # failed, or cancelled mid-exchange: the connection cannot be reused
            conn.close()
            raise
        return response

    async def _context(self) -> ssl.SSLContext:
        if self._ssl is not None:
            return self._ssl
        if _default_ssl is not None:
            return _default_ssl
        # loading the system's and certifi's CA bundles takes ~60 ms of CPU: not on the core's loop
        return await asyncio.to_thread(default_ssl_context)

    async def _open(
        self,
        origin: Origin,
        proxy: Proxy | None,
        loop: asyncio.AbstractEventLoop,
        deadline: float | None,
        connect_timeout: float | None,
    ) -> _Connection:
        limit = self.connect_timeout if connect_timeout is None else connect_timeout
        if deadline is not None:
            limit = min(limit, max(0.0, deadline - loop.time()))
        via = _via(proxy)
        try:
            conn = await asyncio.wait_for(self._connect(origin, proxy, loop), timeout=limit)
        except asyncio.TimeoutError:
            raise ConnectError(f"connect timed out after {limit:g} s{via}") from None
        except ConnectionRefusedError:
            raise ConnectError(f"connection refused{via}") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectError(f"TLS handshake failed: certificate not trusted ({exc.verify_message}){via}") from None
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS handshake failed: {exc.reason or exc}{via}") from None
        except OSError as exc:
            raise ConnectError(f"{exc.strerror or str(exc) or type(exc).__name__}{via}") from None
        conn.key = origin.key
        self.connections_opened += 1
        return conn

    async def _connect(self, origin: Origin, proxy: Proxy | None, loop: asyncio.AbstractEventLoop) -> _Connection:
        context = await self._context() if origin.scheme == "https" else None
        if proxy is None:
            _, conn = await loop.create_connection(_Connection, origin.host, origin.port, ssl=context)
            return conn
        if not proxy.usable:
            raise ConnectError(
                f"the proxy {proxy.url} cannot be used (only http:// and https:// proxies are supported); change "
                f"HTTP_PROXY/HTTPS_PROXY/ALL_PROXY, or add {origin.host} to NO_PROXY to connect directly"
            )
        proxy_context = await self._context() if proxy.scheme == "https" else None
        if context is None:  # http:// through the proxy: requests in absolute form on this connection
            _, conn = await loop.create_connection(_Connection, proxy.host, proxy.port, ssl=proxy_context)
            return conn
        transport, tunnel = await loop.create_connection(_Tunnel, proxy.host, proxy.port, ssl=proxy_context)
        try:
            return await self._through_tunnel(origin, proxy, loop, transport, tunnel, context)
        except BaseException:
            transport.close()
            raise

    async def _through_tunnel(
        self,
        origin: Origin,
        proxy: Proxy,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        tunnel: _Tunnel,
        context: ssl.SSLContext,
    ) -> _Connection:
        """CONNECT to `origin` through the proxy, then TLS with the origin inside the tunnel."""
        authority = _authority(origin)
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode("latin-1"))
        status, reason = await tunnel.answer
        if not 200 <= status < 300:
            hint = "; put user:password@ into the proxy URL" if status == 407 else ""
            raise ConnectError(
                f"the proxy {proxy.url} refused the tunnel to {authority} (HTTP {status} {reason}){hint}"
            )
        conn = _Connection()
        try:
            tls = await loop.start_tls(transport, conn, context, server_hostname=origin.host)
        except TypeError:  # TLS inside the TLS of an https:// proxy: Python 3.11+ only
            raise ConnectError(
                f"https:// through the https:// proxy {proxy.url} needs Python 3.11 or newer; give the proxy "
                "as http://, or add the host to NO_PROXY"
            ) from None
        if tls is None:  # the loop was closed meanwhile
            raise ConnectError("the connection was closed during the TLS handshake")
        conn.connection_made(tls)
        return conn
