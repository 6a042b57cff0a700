"""The hub's HTTP/1.1 framing, strict where the stdlib handler is lenient: every answer is JSON with a status line,
a body is read whole (or the connection is closed) before anything else is answered, so bytes a client sent as a
body can never be taken for its next request, and no client mistake becomes a 5xx.

The stdlib's `BaseHTTPRequestHandler` answers an unknown method with 501 and an HTML page, a bad request line
sometimes with no status line at all, leaves an unread body on a kept-alive connection (where it is parsed as
the next request) and lets a lying Content-Length end in a timeout; `JsonHandler` answers all of those itself.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_DRAIN = 1024 * 1024  # a refused body up to this size is read (and dropped) so that the refusal arrives
MAX_ECHO = 120  # characters of a client's path or header quoted back in an error


class Reject(Exception):
    """A request the hub refuses: `status` (4xx), a sentence saying what was wrong and what to do, extra headers
    (Retry-After) and whether the connection must close (its bytes can no longer be trusted to frame requests)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.close = close


def echo(text: str) -> str:
    """`text` from a client, shortened for quoting in an error."""
    return repr(text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "...")


class JsonHandler(BaseHTTPRequestHandler):
    """JSON answers and strict bodies; a subclass routes in `dispatch(method)` (any method, known or not)."""

    protocol_version = "HTTP/1.1"

    def connection_timeout(self) -> float:
        """Seconds a connection may stay silent (also bounds a stalled TLS handshake)."""
        return 30.0

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.connection_timeout())  # reads and writes then raise TimeoutError

    def dispatch(self, method: str) -> None:
        raise NotImplementedError

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if not hasattr(self, f"do_{self.command}"):
            # the stdlib would answer 501 (a server error) with HTML: route it, so the client gets 404 or 405
            self.dispatch(self.command)
            return False  # answered: handle_one_request must not dispatch again
        return True

    def send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None,
                  *, close: bool = False) -> None:
        body = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if close or self.close_connection:  # (an HTTP/1.0 request, too): say it, a client must not reuse it
                self.send_header("Connection", "close")  # also sets close_connection
            self.end_headers()
            if self.command != "HEAD":  # the answer to HEAD has the headers of the body, never the body
                self.wfile.write(body)
        except OSError:  # the client went away: nothing to tell it
            self.close_connection = True

    def send_reject(self, exc: Reject) -> None:
        self.send_json(exc.status, {"error": str(exc)}, exc.headers, close=exc.close)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (a bad request line, too many or too long headers), as JSON."""
        if self.request_version == "HTTP/0.9" and len(self.requestline.split()) >= 3:
            self.request_version = "HTTP/1.1"  # a bad version: still answer with a status line a client can read
        if code >= 500:  # 505 for HTTP/2.0 and later: the client's choice, not a failure of the hub
            code, message = 400, f"{message}: the hub speaks HTTP/1.1"
        text = message or HTTPStatus(code).phrase
        self.send_json(code, {"error": f"{text} ({explain})" if explain else text}, close=True)

    def read_body(self) -> bytes | None:
        """The request's body; None when it has none. Reject (closing the connection) when its length is not given
        as one plain Content-Length, is over MAX_BODY, or the client sends less than it announced."""
        if self.headers.get_all("Transfer-Encoding"):
            raise Reject(411, "send the body with a Content-Length (the hub takes no Transfer-Encoding)", close=True)
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return None
        digits = lengths[0].strip()
        if len(lengths) > 1 or not (digits.isascii() and digits.isdigit()):  # isdigit alone takes '²'
            raise Reject(400, f"Content-Length must be one number of bytes, not {echo(', '.join(lengths))}",
                         close=True)
        length = int(digits) if len(digits) <= 12 else MAX_DRAIN + 1  # int() refuses 4300 digits and more
        if length > MAX_BODY:
            self._drain(length)
            raise Reject(413, f"the body is over {MAX_BODY} bytes", close=True)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise Reject(408, f"the body stopped after less than the {length} bytes of its Content-Length",
                         close=True) from None
        if len(body) < length:
            raise Reject(400, f"the body ended after {len(body)} of the {length} bytes of its Content-Length",
                         close=True)
        return body

    def _drain(self, length: int) -> None:
        """Read and drop a body too big to take, up to MAX_DRAIN: closing a socket with unread bytes resets it, and
        the client may lose the answer saying why."""
        if length > MAX_DRAIN:
            return
        try:
            while length > 0:
                got = self.rfile.read(min(length, MAX_BODY))
                if not got:
                    return
                length -= len(got)
        except TimeoutError:
            return
