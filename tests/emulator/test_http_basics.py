from __future__ import annotations

import concurrent.futures
import socket

import httpx

from lmstudio_tray.emulator import Emulator


def test_greeting(client: httpx.Client) -> None:
    r = client.get("/lmstudio-greeting")
    assert r.status_code == 200
    assert r.json() == {"lmstudio": True}


def test_express_headers(client: httpx.Client) -> None:
    r = client.get("/v1/models")
    assert r.headers["x-powered-by"] == "Express"
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert "server" not in r.headers


def test_unknown_route_answers_200_with_error_body(client: httpx.Client) -> None:
    r = client.get("/foo")
    assert r.status_code == 200
    assert r.json() == {"error": "Unexpected endpoint or method. (GET /foo)"}
    r = client.post("/chat/completions", json={})
    assert r.json() == {"error": "Unexpected endpoint or method. (POST /chat/completions)"}


def test_wrong_method_is_unknown_route(client: httpx.Client) -> None:
    r = client.delete("/v1/models")
    assert r.status_code == 200
    assert r.json()["error"] == "Unexpected endpoint or method. (DELETE /v1/models)"


def test_keep_alive_serves_several_requests_on_one_socket(emulator: Emulator) -> None:
    request = f"GET /lmstudio-greeting HTTP/1.1\r\nHost: 127.0.0.1:{emulator.api_port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", emulator.api_port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(request)
            data = b""
            while not data.endswith(b'{"lmstudio":true}'):
                chunk = sock.recv(4096)
                assert chunk, "server closed a keep-alive connection"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
            assert b"Keep-Alive: timeout=5" in data


def test_many_concurrent_connections(emulator: Emulator) -> None:
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    with httpx.Client(base_url=emulator.api_url, timeout=5, limits=limits) as c:

        def poll(_: int) -> int:
            return sum(c.get("/api/v1/models").status_code for _ in range(3))

        with concurrent.futures.ThreadPoolExecutor(max_workers=60) as pool:
            results = list(pool.map(poll, range(60)))
    assert results == [600] * 60


def test_requests_are_recorded(client: httpx.Client, emulator: Emulator) -> None:
    client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "a"}]},
                headers={"Authorization": "Bearer abc"})
    client.get("/v1/models?x=1")
    chat = [r for r in emulator.requests if r.path == "/v1/chat/completions"]
    assert len(chat) == 1
    assert chat[0].method == "POST"
    assert chat[0].json["model"] == "x"
    assert chat[0].headers["authorization"] == "Bearer abc"
    assert emulator.request_counts()["GET /v1/models"] == 1
    assert emulator.requests[-1].query == "x=1"
    emulator.clear_requests()
    assert emulator.requests == []


def test_cors_preflight_only_when_enabled(emulator: Emulator, client: httpx.Client) -> None:
    r = client.options("/v1/models")
    assert r.status_code == 200 and r.json()["error"].startswith("Unexpected endpoint or method. (OPTIONS")
    emulator.start_server(cors=True)
    r = client.options("/v1/models")
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert client.get("/v1/models").headers["access-control-allow-origin"] == "*"
