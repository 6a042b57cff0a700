"""core.http1 over real sockets on 127.0.0.1: small asyncio servers (tests/core/http_servers.py), and the
emulator."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lmstudio_tray.core.errors import ConnectError, LMStudioError, ProtocolError, RequestTimeout
from lmstudio_tray.core.lmstudio import http1
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.models import FailureKind
from lmstudio_tray.emulator import Emulator
from tests.core.http_servers import OK, Server, keep_alive, read_request, self_signed


def get(url: str, path: str = "/") -> tuple[http1.Origin, http1.Request]:
    origin, prefix = http1.split_url(url)
    return origin, http1.encode_request("GET", prefix + path, origin, [("Accept", "application/json")])


# ---- keep-alive --------------------------------------------------------------------------------------


async def test_many_requests_share_one_connection(serve: Callable[..., Server]) -> None:
    server = serve(keep_alive())
    pool = http1.Pool()
    origin, request = get(server.url())
    try:
        for _ in range(20):
            resp = await pool.request(origin, request, timeout=5)
            assert (resp.status, resp.content) == (200, b"ok")
    finally:
        await pool.aclose()
    assert server.connections == 1
    assert pool.connections_opened == 1


async def test_a_connection_the_server_closed_while_idle_is_not_an_error(serve: Callable[..., Server]) -> None:
    async def one_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            writer.write(OK)  # says keep-alive (HTTP/1.1, no Connection: close), then closes anyway
            await writer.drain()

    server = serve(one_and_close)
    pool = http1.Pool()
    origin, request = get(server.url())
    try:
        for _ in range(5):
            assert (await pool.request(origin, request, timeout=5)).content == b"ok"
            await asyncio.sleep(0.05)  # the close arrives while the connection sits in the pool
    finally:
        await pool.aclose()
    assert server.connections == 5


async def test_a_get_on_a_reused_connection_that_dies_on_the_request_is_sent_once_more_on_a_new_one(
    serve: Callable[..., Server],
) -> None:
    # the race the idle check cannot see: the server drops the connection just as the request arrives
    seen: list[bytes] = []
    server = serve(keep_alive(answer=1, record=seen))
    pool = http1.Pool()
    origin, request = get(server.url(), "/api/v1/models")
    try:
        for _ in range(3):
            assert (await pool.request(origin, request, timeout=5)).content == b"ok"
    finally:
        await pool.aclose()
    assert server.connections == 3
    assert len(seen) == 5  # GET, (GET dropped, GET again) x 2: a GET is safe to repeat
    assert all(r.startswith(b"GET /api/v1/models ") for r in seen)


async def test_a_post_the_server_may_have_seen_is_never_sent_twice(serve: Callable[..., Server]) -> None:
    # a load: the server reads it on a kept-alive connection and closes without answering. It may be loading
    # the model now; sending the POST again would start a second load.
    seen: list[bytes] = []
    server = serve(keep_alive(answer=1, record=seen))
    pool = http1.Pool()
    origin, first = get(server.url(), "/api/v1/models")
    load = http1.encode_request("POST", "/api/v1/models/load?key=x", origin, [], b'{"model": "qwen"}')
    try:
        assert (await pool.request(origin, first, timeout=5)).content == b"ok"
        with pytest.raises(ProtocolError) as err:
            await pool.request(origin, load, timeout=5)
    finally:
        await pool.aclose()
    assert err.value.message == (
        "the server closed the connection without answering POST /api/v1/models/load; it was not sent again, "
        "because the server may have acted on it already"
    )
    assert [r.split(b" ", 2)[:2] for r in seen] == [[b"GET", b"/api/v1/models"],
                                                     [b"POST", b"/api/v1/models/load?key=x"]]
    assert server.connections == 1


async def test_a_post_goes_out_on_a_new_connection_when_the_idle_one_is_found_closed_before_writing(
    serve: Callable[..., Server],
) -> None:
    closed = threading.Event()
    seen: list[bytes] = []

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (req := await read_request(reader)) is not None:
            seen.append(req)
            writer.write(OK)  # says keep-alive, then closes anyway
            await writer.drain()
            if len(seen) == 1:
                writer.close()
                await writer.wait_closed()
                closed.set()

    server = serve(answer_then_close)
    pool = http1.Pool()
    origin, first = get(server.url())
    load = http1.encode_request("POST", "/api/v1/models/load", origin, [], b'{"model": "qwen"}')
    try:
        assert (await pool.request(origin, first, timeout=5)).content == b"ok"
        # block this loop until the server has closed: the pooled connection has not been told yet
        assert closed.wait(10)
        assert pool.idle_count(origin) == 1
        assert (await pool.request(origin, load, timeout=5)).content == b"ok"
    finally:
        await pool.aclose()
    assert server.connections == 2
    assert [r.split(b" ", 1)[0] for r in seen] == [b"GET", b"POST"]  # nothing was written to the dead one


async def test_a_load_the_server_dropped_reaches_the_caller_as_an_error(serve: Callable[..., Server]) -> None:
    seen: list[bytes] = []
    server = serve(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"data\": []}",
                              answer=1, record=seen))
    client = LMStudioClient(server.url(), timeout=5)
    try:
        await client.openai_model_ids()
        with pytest.raises(LMStudioError, match="was not sent again") as err:
            await client.load("qwen")
    finally:
        await client.aclose()
    assert err.value.kind is FailureKind.SERVER_ERROR
    assert sum(r.startswith(b"POST ") for r in seen) == 1


async def test_the_idle_limit_and_expiry_close_connections(serve: Callable[..., Server]) -> None:
    server = serve(keep_alive())
    pool = http1.Pool(max_idle=2, idle_expiry=0.2)
    origin, request = get(server.url())
    try:
        await asyncio.gather(*(pool.request(origin, request, timeout=5) for _ in range(5)))
        assert server.connections == 5
        assert pool.idle_count(origin) == 2  # the other three were closed, not kept
        await asyncio.sleep(0.4)
        await pool.request(origin, request, timeout=5)
        assert server.connections == 6  # expired connections are not reused
    finally:
        await pool.aclose()


def test_connections_are_not_reused_across_event_loops(serve: Callable[..., Server]) -> None:
    server = serve(keep_alive())
    pool = http1.Pool()
    origin, request = get(server.url())

    async def twice() -> None:
        for _ in range(2):
            assert (await pool.request(origin, request, timeout=5)).content == b"ok"

    asyncio.run(twice())
    asyncio.run(twice())  # the first loop is closed: its connection must not be touched
    assert server.connections == 2
    assert pool.connections_opened == 2


# ---- bodies ------------------------------------------------------------------------------------------


async def test_chunked_and_close_delimited_bodies(serve: Callable[..., Server]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    close_delimited = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await read_request(reader)) is not None:
            if b"GET /close " in req:
                writer.write(close_delimited[:30])
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(close_delimited[30:])
                return  # the body ends with the connection
            writer.write(chunked)
            await writer.drain()

    server = serve(handler)
    pool = http1.Pool()
    try:
        origin, request = get(server.url(), "/chunked")
        for _ in range(2):
            resp = await pool.request(origin, request, timeout=5)
            assert resp.content == b"hello world"
        assert pool.connections_opened == 1  # a chunked body keeps the connection usable
        origin, request = get(server.url(), "/close")
        resp = await pool.request(origin, request, timeout=5)
        assert resp.content == b"until the end"
        assert pool.idle_count(origin) == 0
    finally:
        await pool.aclose()


async def test_a_streamed_body_arrives_piece_by_piece(serve: Callable[..., Server]) -> None:
    server_loop_release = threading.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        await writer.drain()
        await asyncio.to_thread(server_loop_release.wait, 10)
        writer.write(b"7\r\nsecond\n\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    server = serve(handler)
    pool = http1.Pool()
    origin, request = get(server.url())
    try:
        resp = await pool.request(origin, request, timeout=5, stream=True)
        pieces = []
        async for chunk in resp.body():
            pieces.append(chunk)
            if len(pieces) == 1:  # the first piece is here before the server sent the second
                server_loop_release.set()
        assert pieces == [b"first\n", b"second\n"]
        assert pool.idle_count(origin) == 1
    finally:
        server_loop_release.set()
        await pool.aclose()


# ---- failures ----------------------------------------------------------------------------------------


async def test_a_malformed_response_is_a_protocol_error(serve: Callable[..., Server]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    server = serve(garbage)
    pool = http1.Pool()
    origin, request = get(server.url())
    with pytest.raises(ProtocolError, match="malformed response"):
        await pool.request(origin, request, timeout=5)
    await pool.aclose()


async def test_a_body_cut_short_is_a_protocol_error(serve: Callable[..., Server]) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    server = serve(truncated)
    pool = http1.Pool()
    origin, request = get(server.url())
    with pytest.raises(ProtocolError, match="before the response was complete") as err:
        await pool.request(origin, request, timeout=5)
    assert err.value.started
    await pool.aclose()


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    pool = http1.Pool()
    origin, request = get(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectError, match="connection refused"):
        await pool.request(origin, request, timeout=5)


async def test_a_server_that_never_answers_times_out_in_about_the_timeout(serve: Callable[..., Server]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(3600)  # never answers: only the client's timeout can end the request

    server = serve(silent)
    pool = http1.Pool()
    origin, request = get(server.url())
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"no response within 0\.5 s"):
        await pool.request(origin, request, timeout=0.5)
    assert time.monotonic() - t0 >= 0.45  # it waited for the timeout (and a server that never answers
    # could only be left by the timeout: the test itself would otherwise hang)
    with pytest.raises(RequestTimeout, match="response head"):
        await pool.request(origin, request, timeout=0.5, stream=True)
    assert pool.idle_count(origin) == 0  # a timed-out connection is never reused
    await pool.aclose()


async def test_a_body_that_stalls_times_out_unless_streamed(serve: Callable[..., Server]) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await writer.drain()
            await asyncio.sleep(0.8)
            writer.write(b"cd")
            await writer.drain()

    server = serve(stall)
    pool = http1.Pool()
    origin, request = get(server.url())
    try:
        with pytest.raises(RequestTimeout, match="no response within"):
            await pool.request(origin, request, timeout=0.3)  # the whole request, not just its head
        resp = await pool.request(origin, request, timeout=0.3, stream=True)  # the head is in time
        assert b"".join([c async for c in resp.body()]) == b"abcd"
    finally:
        await pool.aclose()


# ---- TLS ---------------------------------------------------------------------------------------------


async def test_https_with_a_trusted_certificate_and_refusal_of_an_unknown_one(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = serve(keep_alive(), server_ctx)
    origin, request = get(server.url("https"))
    assert origin.port == server.port and origin.scheme == "https"

    trusting = http1.Pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
    try:
        for _ in range(3):
            assert (await trusting.request(origin, request, timeout=5)).content == b"ok"
        assert trusting.connections_opened == 1  # keep-alive over TLS too
    finally:
        await trusting.aclose()

    default = http1.Pool()  # system CAs + certifi: a self-signed certificate must be refused
    with pytest.raises(ConnectError, match="TLS handshake failed"):
        await default.request(origin, request, timeout=5)


def test_plain_http_loads_no_ca_bundle_and_no_httpx(emulator: Emulator) -> None:
    # a fresh interpreter, as the tray starts: the LM Studio client polls over http:// only
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        from lmstudio_tray.core.lmstudio import http1
        from lmstudio_tray.core.lmstudio.client import LMStudioClient

        async def main():
            client = LMStudioClient({emulator.api_url!r})
            try:
                listing = await client.list_models()
            finally:
                await client.aclose()
            return len(listing.models)

        n = asyncio.run(main())
        print(json.dumps({{"models": n, "ssl_context": http1._default_ssl is not None,
                          "certifi": "certifi" in sys.modules, "httpx": "httpx" in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result["models"] > 0
    assert result == {"models": result["models"], "ssl_context": False, "certifi": False, "httpx": False}


# ---- against the emulator -----------------------------------------------------------------------------


async def test_emulator_keep_alive_and_a_server_restart_in_between(emulator: Emulator) -> None:
    pool = http1.Pool()
    origin, request = get(emulator.api_url, "/api/v1/models")
    try:
        for _ in range(10):
            resp = await pool.request(origin, request, timeout=5)
            assert resp.status == 200 and "models" in json.loads(resp.content)
        assert pool.connections_opened == 1
        emulator.stop_server()  # drops every connection, the pooled one included
        emulator.start_server()
        resp = await pool.request(origin, request, timeout=5)
        assert resp.status == 200
        assert pool.connections_opened == 2
    finally:
        await pool.aclose()


def test_urls_and_requests() -> None:
    origin, prefix = http1.split_url("https://user:pw@example.org:8443/base/")
    assert origin == http1.Origin("https", "example.org", 8443, "example.org:8443")
    assert prefix == "/base"
    assert http1.split_url("http://[::1]")[0][1:3] == ("::1", 80)
    with pytest.raises(ValueError, match="only http:// and https://"):
        http1.split_url("ftp://example.org")
    post = http1.encode_request("POST", "/v1/x", origin, [("Authorization", "Bearer t")], b"{}")
    assert post.wire() == (b"POST /v1/x HTTP/1.1\r\nHost: example.org:8443\r\nAuthorization: Bearer t\r\n"
                           b"Content-Length: 2\r\n\r\n{}")
    assert not post.replayable
    get_ = http1.encode_request("GET", "/v1/models?a=1", origin)
    assert b"Content-Length" not in get_.wire() and get_.replayable
    assert get_.wire("https://example.org:8443", b"Proxy-Authorization: Basic eA==\r\n") == (
        b"GET https://example.org:8443/v1/models?a=1 HTTP/1.1\r\nHost: example.org:8443\r\n"
        b"Proxy-Authorization: Basic eA==\r\n\r\n")


def test_a_line_break_in_a_header_is_refused_without_echoing_the_value() -> None:
    origin, _ = http1.split_url("http://127.0.0.1:1234")
    with pytest.raises(ValueError, match="Authorization header contains a line break") as err:
        http1.encode_request("GET", "/", origin, [("Authorization", "Bearer sk-secret\r\nX-Evil: 1")])
    assert "sk-secret" not in str(err.value)
