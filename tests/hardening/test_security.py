"""Security review of the loopback endpoint, checked against the running thing.

Loopback-only socket, token on every route but health (routes enumerated from the app, so new ones are
covered), constant-time compare, Host/Origin checks against DNS rebinding and CSRF, no CORS, body limit,
private discovery file, a fresh token per start, and no token in anything the app writes.
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.routing import APIRoute

import lmstudio_tray.api
from lmstudio_tray.api.security import PUBLIC_PATHS
from lmstudio_tray.emulator import Emulator
from tests.hardening.helpers import Endpoint, child_env, start_endpoint, start_serve, wait_for, write_config

LMS_TOKEN = "sk-lm-PLANTED1:plantedLMStudioTokenXYZ0123456789"


@pytest.fixture
def endpoint(emulator_factory: Any) -> Iterator[Endpoint]:
    ep = start_endpoint(emulator_factory())
    yield ep
    ep.thread.stop()


def routes(ep: Endpoint) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, path parameters filled in."""
    assert ep.server.app is not None
    app: Any = ep.server.app.app
    out = []
    for route in app.routes:
        path = re.sub(r"\{[^}]+\}", "x", getattr(route, "path", ""))
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        out += [(m, path) for m in methods if m != "HEAD"]
    assert sum(isinstance(r, APIRoute) for r in app.routes) >= 15
    return out


def test_every_route_but_health_needs_the_token(endpoint: Endpoint) -> None:
    wrong = "x" * len(endpoint.token)
    checked = 0
    for method, path in routes(endpoint):
        for token in ("", wrong, endpoint.token.upper(), endpoint.token[:-1]):
            with endpoint.client(token=token) as c:
                r = c.request(method, path, json={})
            if path in PUBLIC_PATHS:
                assert r.status_code == 200, (method, path)
                continue
            if path == "/dashboard" or path.startswith("/dashboard/"):
                # the browser page signs in with a single-use code and a cookie, never the bearer token
                assert r.status_code in (401, 405), (method, path, r.status_code)
                continue
            assert r.status_code == 401, (method, path, token, r.status_code)
            assert r.json()["error"]["kind"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 60
    # the schema itself is behind the token too (it would tell a web page what to call)
    with endpoint.client(token="") as c:
        assert c.get("/openapi.json").status_code == 401
    assert frozenset({"/v1/health"}) == PUBLIC_PATHS


# Comparisons that decide no access: (file, source of the comparison) -> why it is safe.
NOT_AUTH_DECISIONS = {
    ("discovery.py", "current.token != token"): "removes the discovery file only if it still holds our own token",
}


def test_token_compare_is_constant_time() -> None:
    """No `==`/`!=`/`in` on anything named like a token in the api package (new modules included)."""
    package = Path(lmstudio_tray.api.__file__).parent
    uses_digest = False
    for file in sorted(package.glob("*.py")):
        source = file.read_text(encoding="utf-8")
        uses_digest |= "compare_digest" in source
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Compare):
                names = {ast.unparse(n).lower() for n in (node.left, *node.comparators)}
                risky = {n for n in names if "token" in n and "len(" not in n and n != "none"}
                if (file.name, ast.unparse(node)) in NOT_AUTH_DECISIONS:
                    continue
                if risky and not all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
                    raise AssertionError(f"{file.name}:{node.lineno}: {ast.unparse(node)} compares a token "
                                         "with a short-circuiting operator; use hmac.compare_digest")
    assert uses_digest


@pytest.mark.parametrize("host", [
    "evil.example:{port}",  # DNS rebinding: the attacker's name now resolves to 127.0.0.1
    "127.0.0.1.nip.io:{port}", "localhost:1", "127.0.0.1", "[::1]:{port}", "0.0.0.0:{port}", "LOCALHOST.:{port}",
])
def test_forged_host_is_refused_even_with_the_token(endpoint: Endpoint, host: str) -> None:
    with endpoint.client(host=host.format(port=endpoint.server.port)) as c:
        for path in ("/v1/health", "/v1/status", "/dashboard", "/dashboard/api/status"):
            r = c.get(path)
            assert r.status_code == 421, (host, path)
            assert r.json()["error"]["kind"] == "forbidden_host"


def test_dns_rebinding_over_a_raw_socket(endpoint: Endpoint) -> None:
    """What a rebinding browser sends: the right IP, a foreign Host, cookies, no token it could know."""
    with socket.create_connection(("127.0.0.1", endpoint.server.port), timeout=10) as s:
        s.sendall(b"POST /v1/tools/unload HTTP/1.1\r\nHost: attacker.example:%d\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 11\r\nConnection: close\r\n\r\n{\"all\":true}"[:-1] % endpoint.server.port)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421"), answer[:200]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:{port}", "file://"])
def test_any_origin_is_refused_and_no_cors_is_offered(endpoint: Endpoint, origin: str) -> None:
    origin = origin.format(port=endpoint.server.port)
    with endpoint.client(origin=origin) as c:
        for method, path in (("GET", "/v1/status"), ("POST", "/v1/validate"), ("GET", "/v1/health")):
            r = c.request(method, path, json={"model": "m"})
            assert r.status_code == 403 and r.json()["error"]["kind"] == "forbidden_origin"
            assert not any(h.lower().startswith("access-control-") for h in r.headers)
        pre = c.options("/v1/validate", headers={"access-control-request-method": "POST"})
        assert pre.status_code == 403
        assert not any(h.lower().startswith("access-control-") for h in pre.headers)
    with endpoint.client() as c:
        r = c.get("/v1/status")
        assert r.status_code == 200 and not any(h.lower().startswith("access-control-") for h in r.headers)


def test_body_limit_applies_to_declared_and_chunked_bodies(endpoint: Endpoint) -> None:
    limit = endpoint.core.config.endpoint.max_body_bytes
    big = b'{"model": "' + b"a" * (limit + 10) + b'"}'
    with endpoint.client() as c:
        r = c.post("/v1/validate", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["kind"] == "body_too_large"

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 65536):
                yield big[i:i + 65536]

        r = c.post("/v1/validate", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/v1/health").status_code == 200  # still serving
    for length in (b"-5", b"abc", b"99999999999999999999999"):
        with socket.create_connection(("127.0.0.1", endpoint.server.port), timeout=10) as s:
            s.sendall(b"POST /v1/validate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                      b"Content-Length: %s\r\nConnection: close\r\n\r\n{}"
                      % (endpoint.server.port, endpoint.token.encode(), length))
            answer = s.recv(65536)
        assert answer.split(b" ", 2)[1] in (b"400", b"413"), (length, answer[:200])


# ---- the real `serve` process ------------------------------------------------------------------------


def test_serve_binds_loopback_only_and_rotates_a_private_token(tmp_path: Path, emulator: Emulator) -> None:
    env = child_env()
    config = write_config(tmp_path / "config.toml", emulator.api_url)
    tokens = []
    for run in range(2):
        serve = start_serve(tmp_path, env, config, "--port", "0", name=f"serve{run}")
        try:
            info = serve.wait_ready()
            listening = [c for c in psutil.Process(serve.proc.pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            assert listening, "serve listens on no socket"
            assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
            port = int(info["url"].rsplit(":", 1)[1])
            assert port in {c.laddr.port for c in listening}
            with pytest.raises(OSError):  # not reachable through any other local address
                other = _non_loopback_ip()
                if other is None:
                    raise OSError("no other address on this machine")
                socket.create_connection((other, port), timeout=2).close()
            mode = stat.S_IMODE(serve.endpoint_file.stat().st_mode)
            assert mode == 0o600, oct(mode)
            assert stat.S_IMODE(serve.endpoint_file.parent.stat().st_mode) == 0o700
            assert len(info["token"]) >= 32
            tokens.append(info["token"])
        finally:
            assert serve.stop() == 0, serve.stderr
        assert not serve.endpoint_file.exists(), "a clean exit removes the discovery file"
    assert tokens[0] != tokens[1], "each start gets a new token"


def _non_loopback_ip() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


def test_planted_tokens_appear_nowhere_the_app_writes(tmp_path: Path, emulator_factory: Any) -> None:
    emu: Emulator = emulator_factory(auth_token=LMS_TOKEN)
    emu.load("qwen/qwen3-4b-2507")
    env = child_env()
    env["LMSTUDIO_TRAY_TOKEN_LOCAL"] = LMS_TOKEN
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # the token must come from the env only
    config = write_config(tmp_path / "config.toml", emu.api_url)
    serve = start_serve(tmp_path, env, config, "--port", "0")
    bodies: list[str] = []
    try:
        info = serve.wait_ready()
        endpoint_token = info["token"]
        base = info["url"]
        auth = {"authorization": f"Bearer {endpoint_token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as c:
            wait_for(lambda: c.get("/v1/status").json()["instances"][0]["state"] == "ready")
            v = c.post("/v1/validate", json={"model": "qwen/qwen3-4b-2507", "base_url": emu.api_url + "/v1"})
            assert v.json()["ok"] is True
            bodies.append(v.text)
            bodies.append(c.post("/v1/events", json={"events": [
                {"type": "session.error", "properties": {"sessionID": "s1", "error": {"name": "APIError"}}}]}).text)
            bodies.append(c.post("/v1/validate", json={"model": "nope/none", "base_url": emu.api_url}).text)
            bodies.append(c.post("/v1/validate", json={"model": 5}).text)
            bodies.append(c.post("/v1/tools/load", json={"model": "nope/none"}).text)
            # LM Studio's token changes under us: every surface now shows auth_failed, without the token
            emu.update(auth_token="sk-lm-OTHER000:differentTokenABCDEFGHIJ")
            wait_for(lambda: c.get("/v1/status").json()["instances"][0]["state"] == "auth_failed")
            v = c.post("/v1/validate", json={"model": "qwen/qwen3-4b-2507", "base_url": emu.api_url + "/v1"})
            assert v.json()["category"] == "auth_failed"
            bodies += [v.text, c.get("/v1/status").text, c.get("/v1/metrics").text, c.get("/v1/sessions").text,
                       c.get("/v1/plugin").text, c.post("/v1/tools/list", json={}).text]
        for headers in ({}, {"authorization": "Bearer " + LMS_TOKEN}, {"authorization": endpoint_token},
                        {**auth, "host": "evil.example"}, {**auth, "origin": "https://evil.example"}):
            r = httpx.get(base + "/v1/status", headers=headers, timeout=30)
            assert r.status_code >= 400
            bodies.append(r.text + json.dumps(dict(r.headers)))
        # the commands that print or export what the app knows: status, config export, stats, doctor's zip
        debug_zip = tmp_path / "debug.zip"
        for command in (["status", "--json"], ["config", "export"], ["stats", "--json", "--since", "all"],
                        ["doctor", "--json", "--export", str(debug_zip)]):
            out = subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(config), "--log-level",
                                  "debug", *command], capture_output=True, text=True, env=env, timeout=120)
            assert "Traceback" not in out.stderr, (command, out.stderr[-2000:])
            bodies += [out.stdout, out.stderr]
        assert debug_zip.exists(), "doctor --export wrote no zip"
        with zipfile.ZipFile(debug_zip) as z:
            bodies += [z.read(name).decode("utf-8", "replace") for name in z.namelist()]
    finally:
        serve.stop()
    for text in bodies:
        assert LMS_TOKEN not in text and "plantedLMStudioToken" not in text
        assert endpoint_token not in text
    # tmp_path holds the test's HOME and XDG config/state/data/cache dirs (logs go to the state dir)
    written = _everything_written(tmp_path, exclude={config})
    assert written, "the app wrote nothing at all?"
    for path, content in written.items():
        assert b"plantedLMStudioToken" not in content, path
        if path.name != "endpoint.json":
            assert endpoint_token.encode() not in content, path


def _everything_written(root: Path, exclude: set[Path]) -> dict[Path, bytes]:
    """Every file under `root`, serve's own stdout/stderr (its log) included."""
    found: dict[Path, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path not in exclude and path.is_file():
                found[path] = path.read_bytes()
    return found
