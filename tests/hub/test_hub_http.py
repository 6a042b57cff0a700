"""The hub's HTTP framing, byte by byte over a real socket: what the fuzzing of tests/hardening/test_hub_fuzz.py
found, each kept as a case that failed before its fix. Every refusal is a 4xx with a status line and a JSON
`{"error"}` naming the problem, and the bytes a client sent as a body are never taken for its next request."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.server import HubError, HubServer, HubSettings

DEADLINE = 60.0  # socket timeout against a hang, not a speed bound


@dataclass
class RunningHub:
    server: HubServer
    state: Path
    alice: str

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def auth(self) -> bytes:
        return f"Authorization: Bearer {self.alice}\r\n".encode()

    def uses(self) -> list[dict[str, object]]:
        answer = httpx.get(f"{self.server.url}/v1/uses", headers={"Authorization": f"Bearer {self.alice}"})
        assert answer.status_code == 200, answer.text
        uses: list[dict[str, object]] = answer.json()["uses"]
        return uses


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    alice = MemberTokens(tmp_path).add("alice")
    server = HubServer(HubSettings(state=tmp_path, port=0, idle_timeout=1.0))
    server.start()
    yield RunningHub(server, tmp_path, alice)
    server.stop()


def exchange(port: int, request: bytes, *, method: str = "GET", half_close: bool = False,
             then: bytes = b"", sndbuf: int | None = None) -> tuple[http.client.HTTPResponse, socket.socket]:
    """Send raw bytes and read one answer (its body too); `then` is sent on the same connection afterwards;
    `sndbuf`: a small send buffer, so that a big body is sent only as fast as the hub reads it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(DEADLINE)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    if half_close:
        sock.shutdown(socket.SHUT_WR)
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()  # raises (BadStatusLine, RemoteDisconnected) on a dropped connection or no status line
    response.body = response.read()  # type: ignore[attr-defined]
    if then:
        sock.sendall(then)
    return response, sock


def error_of(response: http.client.HTTPResponse) -> str:
    assert response.getheader("Content-Type") == "application/json", response.getheader("Content-Type")
    error = json.loads(response.body)["error"]  # type: ignore[attr-defined]
    assert isinstance(error, str) and len(error) > 10
    return error


def next_answer(sock: socket.socket, method: str = "GET") -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    response.body = response.read()  # type: ignore[attr-defined]
    return response


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: hub\r\n\r\n"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_an_unknown_method_is_405_in_json_not_501_in_html(hub: RunningHub, method: str) -> None:
    response, sock = exchange(hub.port, f"{method} /v1/uses HTTP/1.1\r\nHost: hub\r\n\r\n".encode(), then=HEALTH)
    assert response.status == 405 and response.getheader("Allow") == "GET, POST"
    assert f"'{method}' is not served on /v1/uses" in error_of(response)
    assert next_answer(sock).status == 200  # the connection goes on
    unknown, _ = exchange(hub.port, f"{method} /nowhere HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
    assert unknown.status == 404 and "GET/POST /v1/uses" in error_of(unknown)


def test_head_gets_the_headers_without_a_body(hub: RunningHub) -> None:
    response, sock = exchange(hub.port, b"HEAD /v1/health HTTP/1.1\r\nHost: hub\r\n\r\n", method="HEAD",
                              then=HEALTH)
    assert response.status == 405 and response.body == b""  # type: ignore[attr-defined]
    after = next_answer(sock)  # a body after HEAD's headers would be read here as the next answer
    assert after.status == 200 and json.loads(after.body) == {"ok": True}  # type: ignore[attr-defined]


def test_the_body_of_a_refused_request_is_never_run_as_the_next_request(hub: RunningHub) -> None:
    smuggled = b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() + b"Content-Length: 64\r\n\r\n" + \
        json.dumps({"uses": [{"instance": "i", "model": "smuggled", "age_seconds": 1}]}).encode().ljust(64)
    for request in (b"POST /nowhere HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n\r\n" % len(smuggled),
                    b"GET /v1/uses HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n\r\n" % len(smuggled)):
        response, sock = exchange(hub.port, request + smuggled, then=HEALTH)
        assert response.status in (401, 404), response.status
        assert next_answer(sock).status == 200  # the health check's answer, not one to the smuggled report
    assert hub.uses() == []


def test_a_chunked_body_is_refused_and_the_connection_closed(hub: RunningHub) -> None:
    chunk = b"GET /v1/uses HTTP/1.1\r\nHost: hub\r\n\r\n"
    request = (b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() + b"Transfer-Encoding: chunked\r\n\r\n" +
               b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    response, sock = exchange(hub.port, request)
    assert response.status == 411 and "Content-Length" in error_of(response)
    assert response.will_close and sock.recv(100) == b""  # closed: the chunks are not read as requests


@pytest.mark.parametrize("length", ["\u00b2", "-1", "1e3", "12, 12", "9" * 5000])
def test_a_content_length_that_is_not_one_number_is_refused(hub: RunningHub, length: str) -> None:
    request = (b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() +
               b"Content-Length: " + length.encode("latin-1") + b"\r\n\r\n{}")
    response, _ = exchange(hub.port, request)
    assert response.status in (400, 413) and response.will_close
    assert "Content-Length" in error_of(response) or "over 65536 bytes" in error_of(response)


def test_two_different_content_lengths_are_refused(hub: RunningHub) -> None:
    request = (b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() +
               b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
    response, _ = exchange(hub.port, request)
    assert response.status == 400 and "one number" in error_of(response)


def test_a_body_shorter_than_its_content_length_is_named(hub: RunningHub) -> None:
    request = b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() + b"Content-Length: 100\r\n\r\n{\"uses\": "
    ended, _ = exchange(hub.port, request, half_close=True)
    assert ended.status == 400 and "ended after 9 of the 100 bytes" in error_of(ended)
    silent, _ = exchange(hub.port, request)  # stays connected, says no more: answered when the hub stops waiting
    assert silent.status == 408 and "100 bytes of its Content-Length" in error_of(silent)


def test_json_nested_too_deep_is_not_json_to_the_hub(hub: RunningHub) -> None:
    body = b"[" * 60_000
    request = b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() + b"Content-Length: %d\r\n\r\n" % len(body)
    response, _ = exchange(hub.port, request + body)
    assert response.status == 400 and "not JSON" in error_of(response)


@pytest.mark.parametrize("line", [b"GET /v1/health HTTP/2.0", b"GET /v1/health FOO/1.1", b"GET / HTTP/1.1 x"])
def test_a_bad_request_line_gets_a_status_line_and_json(hub: RunningHub, line: bytes) -> None:
    response, _ = exchange(hub.port, line + b"\r\nHost: hub\r\n\r\n")
    assert response.status == 400
    error_of(response)


def test_too_many_or_too_long_headers_get_json(hub: RunningHub) -> None:
    many = b"".join(b"X-%d: y\r\n" % n for n in range(150))
    response, _ = exchange(hub.port, b"GET /v1/health HTTP/1.1\r\nHost: hub\r\n" + many + b"\r\n")
    assert response.status == 431 and "headers" in error_of(response)
    long, _ = exchange(hub.port, b"GET /v1/health HTTP/1.1\r\nHost: " + b"h" * 70_000 + b"\r\n\r\n")
    assert long.status == 431
    error_of(long)


def report(hub: RunningHub, *uses: dict[str, object]) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \ud800 (valid JSON); httpx's json= cannot encode it
    return httpx.post(f"{hub.server.url}/v1/uses", content=json.dumps({"uses": list(uses)}),
                      headers={"Authorization": f"Bearer {hub.alice}"})


@pytest.mark.parametrize("model", ["qwen\nbob used nothing", "q\ud800", "tab\tbed", "\x1b[31mred"])
def test_keys_with_control_characters_are_refused_naming_the_field(hub: RunningHub, model: str) -> None:
    """A model key ends up in other members' messages and logs: a newline or an escape would forge lines there,
    a lone surrogate breaks their terminal's output."""
    answer = report(hub, {"instance": "gpu", "model": model, "age_seconds": 1})
    assert answer.status_code == 400 and "uses[0].model" in answer.json()["error"]
    assert report(hub, {"instance": "g\npu", "model": "m", "age_seconds": 1}).json()["error"].startswith(
        "uses[0].instance")
    assert hub.uses() == []


def test_stored_counts_only_what_is_kept(hub: RunningHub) -> None:
    """Uses older than the 7 days the hub keeps are dropped at once: the answer does not count them as stored."""
    answer = report(hub, {"instance": "gpu", "model": "old", "age_seconds": 8 * 24 * 3600},
                    {"instance": "gpu", "model": "new", "age_seconds": 3})
    assert answer.json() == {"member": "alice", "stored": 1}
    assert [u["model"] for u in hub.uses()] == ["new"]


def test_an_http10_answer_says_the_connection_closes(hub: RunningHub) -> None:
    response, sock = exchange(hub.port, b"GET /v1/health HTTP/1.0\r\n\r\n")
    assert response.status == 200 and response.getheader("Connection") == "close"
    assert sock.recv(100) == b""


def test_a_body_over_the_limit_gets_its_413_not_a_reset(hub: RunningHub) -> None:
    """The refused body is read and dropped first: closing a socket with unread bytes resets it, and the client
    then loses the answer."""
    body = b"x" * 1_000_000
    request = b"POST /v1/uses HTTP/1.1\r\nHost: hub\r\n" + hub.auth() + b"Content-Length: %d\r\n\r\n" % len(body)
    response, _ = exchange(hub.port, request + body, sndbuf=4096)
    assert response.status == 413 and "over 65536 bytes" in error_of(response)


@pytest.mark.parametrize(("name", "damaged", "lost"), [
    *(("uses.json", d, "the uses it acknowledged") for d in (b'{"alice": {"gpu": {"m": 17', b"[]", b"\xff\xfe")),
    *(("usage.json", d, "the usage summaries members sent")
      for d in (b'{"alice": {"format": 1, "models": {"m": {"requests": 17', b"[]", b"\xff\xfe")),
])
def test_a_damaged_record_stops_the_hub_instead_of_being_overwritten(tmp_path: Path, name: str, damaged: bytes,
                                                                     lost: str) -> None:
    (tmp_path / name).write_bytes(damaged)
    server = HubServer(HubSettings(state=tmp_path, port=0))
    with pytest.raises(HubError, match=rf"{name} .*the hub would lose {lost}; restore the file, or move it away"):
        server.start()
    assert (tmp_path / name).read_bytes() == damaged
