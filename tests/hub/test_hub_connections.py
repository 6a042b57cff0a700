"""Connections before any token is checked are bounded: beyond `max_connections`, or `max_per_address` from one
address, the hub answers 503 and closes, without a thread; idle connections are dropped after the idle timeout, and
then a member's report gets through."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.server import HubServer, HubSettings

DEADLINE = 60.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"not within {DEADLINE} s: {what}"
        time.sleep(0.05)


def report(url: str, token: str) -> int:
    body = {"uses": [{"instance": "gpu", "model": "m", "age_seconds": 1}]}
    with httpx.Client(trust_env=False) as client:
        return client.post(f"{url}/v1/uses", json=body, headers={"Authorization": f"Bearer {token}"}).status_code


def idle(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    return sock


def answered(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[HubSettings], tuple[HubServer, str]]]:
    servers: list[HubServer] = []

    def started(settings: HubSettings) -> tuple[HubServer, str]:
        token = MemberTokens(settings.state).add("alice")
        server = HubServer(settings)
        server.start()
        servers.append(server)
        return server, token

    yield started
    for server in servers:
        server.stop()


def test_one_connection_over_the_cap_is_refused_and_a_report_gets_through_once_idle_ones_close(
    tmp_path: Path, start: Callable[[HubSettings], tuple[HubServer, str]],
) -> None:
    server, token = start(HubSettings(state=tmp_path / "hub", port=0, max_connections=3, idle_timeout=120.0))
    port = int(server.url.rsplit(":", 1)[1])
    held = [idle(port) for _ in range(3)]
    extra = idle(port)
    head, _, body = answered(extra).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in head
    assert "too many connections" in json.loads(body)["error"]
    extra.close()
    for sock in held:
        sock.close()
    wait_for(lambda: report(server.url, token) == 200, "alice's report after the idle connections closed")


def test_idle_connections_are_dropped_after_the_idle_timeout_freeing_their_place(
    tmp_path: Path, start: Callable[[HubSettings], tuple[HubServer, str]],
) -> None:
    server, token = start(HubSettings(state=tmp_path / "hub", port=0, max_connections=2, idle_timeout=0.5))
    port = int(server.url.rsplit(":", 1)[1])
    held = [idle(port) for _ in range(2)]
    for sock in held:
        assert answered(sock) == b""  # the hub closed it, having heard nothing within the idle timeout
        sock.close()
    wait_for(lambda: report(server.url, token) == 200, "alice's report once the silent connections were dropped")


def test_one_address_cannot_take_every_connection(
    tmp_path: Path, start: Callable[[HubSettings], tuple[HubServer, str]], caplog: pytest.LogCaptureFixture,
) -> None:
    """Connections from other machines, handed to the server as its accept loop does (a socket pair stands for
    the network: this machine may have no address but loopback)."""
    server, _token = start(HubSettings(state=tmp_path / "hub", port=0, max_connections=10, max_per_address=2,
                                       idle_timeout=120.0))
    hub = server._server
    assert hub is not None
    ends: list[socket.socket] = []

    def connect(address: str) -> socket.socket:
        ours, theirs = socket.socketpair()
        ends.extend((ours, theirs))
        hub.process_request(ours, (address, 40000 + len(ends)))
        return theirs

    held = [connect("192.0.2.7") for _ in range(2)]
    extra = connect("192.0.2.7")
    head, _, body = answered(extra).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert "this address has too many connections open" in json.loads(body)["error"]
    connect("192.0.2.7").close()  # said once in the log, not once per refusal
    assert caplog.text.count("192.0.2.7 has 2 connections open, the most one address may") == 1
    other = connect("192.0.2.8")  # another member's address is served meanwhile
    other.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
    assert answered(other).startswith(b"HTTP/1.1 200 ")
    held[0].close()
    back = wait_until_served(connect, "192.0.2.7")
    assert back.startswith(b"HTTP/1.1 200 ")
    for sock in ends:
        sock.close()


def wait_until_served(connect: Callable[[str], socket.socket], address: str) -> bytes:
    """A health check from `address` once one of its connections has closed (its thread gives the slot back)."""
    end = time.monotonic() + DEADLINE
    while True:
        sock = connect(address)
        try:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            got = answered(sock)
        except OSError as exc:  # refused and closed before the request was written
            got = repr(exc).encode()
        if got.startswith(b"HTTP/1.1 200 ") or time.monotonic() > end:
            return got
        time.sleep(0.05)


def test_this_machines_own_address_is_not_capped(
    tmp_path: Path, start: Callable[[HubSettings], tuple[HubServer, str]],
) -> None:
    """A TLS proxy in front of a loopback hub connects from 127.0.0.1 for every member."""
    server, token = start(HubSettings(state=tmp_path / "hub", port=0, max_connections=10, max_per_address=2,
                                      idle_timeout=120.0))
    port = int(server.url.rsplit(":", 1)[1])
    held = [idle(port) for _ in range(4)]
    assert report(server.url, token) == 200
    for sock in held:
        sock.close()
