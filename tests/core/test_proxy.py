"""Proxies: the core's http1 takes the same route as httpx (what `doctor` uses) for every URL.

Real traffic goes through a real proxy, Debian's tinyproxy (installed by scripts/deps/desktop.sh), to real
HTTP and HTTPS servers on 127.0.0.1. Which route each request took, the target server tells: every request
has a path of its own, and tinyproxy connects to the target from 127.0.0.2 (`PROXY_SIDE`), a client directly
from 127.0.0.1. (The proxy's log could not tell httpx's request from http1's: CONNECT names only host:port.)
The rules themselves are also compared with httpx's own code over generated settings and URLs.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lmstudio_tray.core.config.schema import InstanceConfig
from lmstudio_tray.core.errors import ConnectError, LMStudioError
from lmstudio_tray.core.lmstudio import http1
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.lmstudio.proxy import Proxy, ProxyRules
from lmstudio_tray.core.models import FailureKind
from lmstudio_tray.diagnostics.checks import Status, check_instance
from lmstudio_tray.emulator import Emulator
from tests.core.http_servers import OK, Handler, Server, read_request, self_signed
from tests.tinyproxy import Tinyproxy, free_port, start_tinyproxy

PROXY_SIDE = "127.0.0.2"  # where tinyproxy's connections to the targets come from; a client's come from 127.0.0.1


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    tp = start_tinyproxy(tmp_path_factory.mktemp("tinyproxy"), outgoing=PROXY_SIDE)
    yield tp
    tp.proc.terminate()
    tp.proc.wait(10)


def recording(peers: dict[str, str]) -> Handler:
    """Answers every request with 200, first noting the address it came from under its target (path)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        while (req := await read_request(reader)) is not None:
            peers[req.split(b" ", 2)[1].decode()] = peer  # before answering: a client that has the answer finds it
            writer.write(OK)
            await writer.drain()

    return handler


@dataclass
class Targets:
    http: Server
    https: Server
    trust: ssl.SSLContext
    server_context: ssl.SSLContext  # the servers' certificate, for more TLS servers
    peers: dict[str, str]  # request target -> the address it came from (both servers)

    def url(self, name: str) -> str:
        scheme, host = name.split("-")
        server = self.http if scheme == "http" else self.https
        return f"{scheme}://{'127.0.0.1' if host == 'ip' else 'localhost'}:{server.port}/"

    def proxied(self, path: str) -> bool:
        """Whether the request for `path` (there is one, answered) came through the proxy."""
        assert self.peers[path] in (PROXY_SIDE, "127.0.0.1"), self.peers[path]
        return self.peers[path] == PROXY_SIDE


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    cert, key = self_signed(tmp_path_factory.mktemp("cert"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    peers: dict[str, str] = {}
    both = Targets(Server(recording(peers)), Server(recording(peers), server_ctx),
                   ssl.create_default_context(cafile=str(cert)), server_ctx, peers)
    yield both
    both.http.close()
    both.https.close()


URLS = ("http-ip", "http-localhost", "https-ip", "https-localhost")
ALL, HTTP, HTTPS = set(URLS), {"http-ip", "http-localhost"}, {"https-ip", "https-localhost"}

# (settings, the URLs that go through the proxy). {proxy} is tinyproxy's URL, {bare} its host:port,
# {dead} a port nothing listens on, {http}/{https} the servers' ports. What httpx does, and so http1.
ROUTES: dict[str, tuple[dict[str, str], set[str]]] = {
    "nothing set": ({}, set()),
    "HTTP_PROXY: http:// only, localhost too": ({"HTTP_PROXY": "{proxy}"}, HTTP),
    "http_proxy in lower case, without a scheme": ({"http_proxy": "{bare}"}, HTTP),
    "HTTPS_PROXY: https:// through CONNECT": ({"HTTPS_PROXY": "{proxy}"}, HTTPS),
    "ALL_PROXY": ({"ALL_PROXY": "{proxy}"}, ALL),
    "the lower-case name wins": ({"HTTP_PROXY": "{dead}", "http_proxy": "{proxy}"}, HTTP),
    "HTTP_PROXY beats ALL_PROXY": ({"ALL_PROXY": "{dead}", "HTTP_PROXY": "{proxy}", "NO_PROXY": "https://"}, HTTP),
    "NO_PROXY=localhost is not 127.0.0.1": ({"ALL_PROXY": "{proxy}", "NO_PROXY": "localhost"},
                                            {"http-ip", "https-ip"}),
    "NO_PROXY=127.0.0.1 is not localhost": ({"ALL_PROXY": "{proxy}", "no_proxy": "127.0.0.1"},
                                            {"http-localhost", "https-localhost"}),
    "NO_PROXY with spaces and capitals": ({"ALL_PROXY": "{proxy}", "NO_PROXY": " LOCALHOST , 127.0.0.1 "}, set()),
    "NO_PROXY=*": ({"ALL_PROXY": "{proxy}", "NO_PROXY": "*"}, set()),
    "NO_PROXY=.localhost: subdomains only": ({"ALL_PROXY": "{proxy}", "NO_PROXY": ".localhost"}, ALL),
    "NO_PROXY=host:port": ({"ALL_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1:{http}"},
                           {"http-localhost", "https-ip", "https-localhost"}),
    "NO_PROXY=scheme://host": ({"ALL_PROXY": "{proxy}", "NO_PROXY": "https://localhost"},
                               {"http-ip", "http-localhost", "https-ip"}),
    # httpx does not expand ranges: 127.0.0.0/8 names only 127.0.0.0
    "NO_PROXY=127.0.0.0/8 (a CIDR range)": ({"ALL_PROXY": "{proxy}", "NO_PROXY": "127.0.0.0/8"}, ALL),
}


async def _http1_get(url: str, trust: ssl.SSLContext) -> int:
    pool = http1.Pool(ssl_context=trust)  # reads the proxy settings now, as an httpx client does
    origin, path = http1.split_url(url)
    try:
        resp = await pool.request(origin, http1.encode_request("GET", path or "/", origin), timeout=20)
    finally:
        await pool.aclose()
    return resp.status


def _carried(proxy: Tinyproxy, before: int, url: str) -> bool:
    """Whether the proxy took the request to `url` since `before` (it logs each one before forwarding it)."""
    new = proxy.carried()[before:]
    host_port = url.split("://")[1].rstrip("/")
    return any(target in (url, host_port) for _, target in new)


@pytest.mark.parametrize("row", list(ROUTES))
async def test_http1_and_httpx_take_the_same_route(
    row: str, proxy: Tinyproxy, targets: Targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, expected = ROUTES[row]
    dead = f"http://127.0.0.1:{free_port()}"
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(proxy=f"http://{proxy.address}", bare=proxy.address, dead=dead,
                                              http=targets.http.port, https=targets.https.port))
    routes: dict[str, set[str]] = {"httpx": set(), "http1": set()}
    for name in URLS:
        path = f"/route/httpx/{uuid.uuid4().hex}"
        # AsyncClient: a blocking httpx.get would hold this loop, which http1 (the core's code) runs on
        async with httpx.AsyncClient(verify=targets.trust, timeout=20) as client:
            assert (await client.get(targets.url(name) + path[1:])).status_code == 200
        if targets.proxied(path):
            routes["httpx"].add(name)
        path = f"/route/http1/{uuid.uuid4().hex}"
        assert await _http1_get(targets.url(name) + path[1:], targets.trust) == 200
        if targets.proxied(path):
            routes["http1"].add(name)
    assert routes["http1"] == routes["httpx"]
    assert routes["httpx"] == expected


async def test_lm_studio_polls_work_through_the_proxy(
    proxy: Tinyproxy, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.address}")
    before = len(proxy.carried())
    client = LMStudioClient(emulator.api_url, timeout=10)
    try:
        for _ in range(3):
            assert (await client.list_models()).models
    finally:
        await client.aclose()
    polls = [t for _, t in proxy.carried()[before:]]
    assert polls == [f"{emulator.api_url}/api/v1/models"] * 3  # absolute form, as a proxy needs it


async def test_doctor_and_the_core_go_the_same_way(
    proxy: Tinyproxy, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.address}")
    before = len(proxy.carried())
    result = await check_instance(InstanceConfig(name="local", url=emulator.api_url), None)
    assert result.status is Status.OK, result.detail
    paths = {t.removeprefix(emulator.api_url) for _, t in proxy.carried()[before:]}
    assert "/api/v1/models" in paths  # the listing, over http1
    assert "/lms-status" in paths  # LM Studio's version, over httpx


async def test_proxy_credentials_from_the_url_for_both_routes(
    tmp_path: Path, targets: Targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = start_tinyproxy(tmp_path, "BasicAuth lmuser s3cret-pw\n")
    try:
        # percent-encoded in the URL, as httpx reads it
        monkeypatch.setenv("ALL_PROXY", f"http://lmuser:s3cret%2Dpw@{guarded.address}")
        for name in ("http-ip", "https-ip"):
            before = len(guarded.carried())
            assert await _http1_get(targets.url(name), targets.trust) == 200
            assert _carried(guarded, before, targets.url(name))
        monkeypatch.setenv("ALL_PROXY", f"http://{guarded.address}")  # no credentials
        assert await _http1_get(targets.url("http-ip"), targets.trust) == 407
        client = LMStudioClient(targets.url("http-ip"), timeout=10)
        try:
            with pytest.raises(LMStudioError, match=r"asks for credentials \(HTTP 407\): put user:password@"):
                await client.list_models()
        finally:
            await client.aclose()
        with pytest.raises(ConnectError, match=r"refused the tunnel .*HTTP 407.*put user:password@"):
            await _http1_get(targets.url("https-ip"), targets.trust)
    finally:
        guarded.proc.terminate()
        guarded.proc.wait(10)


async def test_an_https_proxy_for_both_routes(proxy: Tinyproxy, targets: Targets,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async def tls_front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """TLS in front of tinyproxy: the proxy itself is reached over https://."""
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", proxy.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    front = Server(tls_front, targets.server_context)
    try:
        monkeypatch.setenv("ALL_PROXY", f"https://127.0.0.1:{front.port}")
        before = len(proxy.carried())
        assert await _http1_get(targets.url("http-ip"), targets.trust) == 200  # absolute form, over TLS
        assert _carried(proxy, before, targets.url("http-ip"))
        before = len(proxy.carried())
        if sys.version_info >= (3, 11):
            assert await _http1_get(targets.url("https-ip"), targets.trust) == 200  # TLS inside TLS
            assert _carried(proxy, before, targets.url("https-ip"))
        else:
            with pytest.raises(ConnectError, match=r"needs Python 3\.11 or newer; give the proxy as http://"):
                await _http1_get(targets.url("https-ip"), targets.trust)
    finally:
        front.close()


async def test_a_proxy_that_is_down_is_named_in_the_error(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = free_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:hunter2@127.0.0.1:{dead}")
    client = LMStudioClient(emulator.api_url, timeout=5)
    try:
        with pytest.raises(LMStudioError) as err:
            await client.list_models()
    finally:
        await client.aclose()
    assert err.value.kind is FailureKind.OFFLINE
    assert f"connection refused (through the proxy http://127.0.0.1:{dead})" in err.value.message
    assert "hunter2" not in err.value.message


async def test_a_proxy_that_cannot_reach_lm_studio_says_so(proxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.address}")
    nowhere = f"http://127.0.0.1:{free_port()}"
    client = LMStudioClient(nowhere, timeout=10)
    try:
        with pytest.raises(LMStudioError) as err:
            await client.list_models()
    finally:
        await client.aclose()
    assert err.value.kind is FailureKind.OFFLINE  # not "LM Studio answered HTTP 500"
    assert err.value.message == (f"the proxy http://{proxy.address} could not reach {nowhere} (HTTP 500); if LM "
                                 "Studio runs on this machine, add 127.0.0.1 to NO_PROXY to connect directly")


async def test_a_socks_proxy_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    pool = http1.Pool()
    origin, _ = http1.split_url("http://127.0.0.1:1234")
    with pytest.raises(ConnectError, match=r"socks5://127.0.0.1:1080 cannot be used.*add 127.0.0.1 to NO_PROXY"):
        await pool.request(origin, http1.encode_request("GET", "/", origin), timeout=5)


def test_without_proxy_variables_the_settings_module_is_not_even_imported() -> None:
    code = ("import sys; from lmstudio_tray.core.lmstudio import http1; http1.Pool(); "
            "print('urllib.request' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         check=True)
    assert out.stdout.strip() == "False"


# ---- the rules against httpx's own code ------------------------------------------------------------------


def httpx_choice(scheme: str, host: str, port: int | None) -> tuple[str, str, int] | None:
    """What httpx.Client() picks for the URL from the environment: the proxy, or None for direct.

    The same steps as httpx.Client.__init__ and _transport_for_url (its mounts from the environment,
    sorted, first match), without building a transport per mount."""
    from httpx._utils import URLPattern, get_environment_proxies

    mounts = {URLPattern(key): value for key, value in get_environment_proxies().items()}
    url = httpx.URL(scheme=scheme, host=host, port=port, path="/")
    for pattern, value in sorted(mounts.items()):
        if pattern.matches(url):
            if value is None:
                return None
            proxy_url = httpx.URL(value)
            return proxy_url.scheme, proxy_url.host, proxy_url.port or {"http": 80, "https": 443}.get(
                proxy_url.scheme, 0)
    return None


def ours(scheme: str, host: str, port: int | None) -> tuple[str, str, int] | None:
    proxy: Proxy | None = ProxyRules.from_environment().proxy_for(
        scheme, host, port or (443 if scheme == "https" else 80))
    return None if proxy is None else (proxy.scheme, proxy.host, proxy.port)


HOSTS = ["localhost", "127.0.0.1", "127.0.0.2", "10.0.0.0", "10.1.2.3", "::1", "lmstudio.lan", "gpu.lmstudio.lan",
         "gpulmstudio.lan", "example.com", "www.example.com"]
PROXIES = ["http://proxy-a:3128", "proxy-b:8080", "https://user:pw@proxy-c", "socks5://proxy-d:1080",
           "http://[fd00::1]:3128", ""]
VARIABLES = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]


@st.composite
def no_proxy_entry(draw: st.DrawFn) -> str:
    host = draw(st.sampled_from([*HOSTS, "*"]))
    if host == "*":
        return host
    if draw(st.booleans()):
        host = host.upper()
    wildcard = draw(st.sampled_from(["", "", ".", "*", "*."])) if not host[0].isdigit() and ":" not in host else ""
    scheme = draw(st.sampled_from(["", "", "", "http://", "https://", "all://"]))
    port = draw(st.sampled_from([None, None, 80, 443, 1234]))
    cidr = draw(st.sampled_from(["", "", "/8"])) if host[0].isdigit() and not port and not scheme else ""
    if ":" in host and (scheme or port):
        host = f"[{host}]"
    pad = draw(st.sampled_from(["", " "]))
    return f"{pad}{scheme}{wildcard}{host}{'' if port is None else f':{port}'}{cidr}{pad}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    proxies=st.dictionaries(st.sampled_from(VARIABLES), st.sampled_from(PROXIES), max_size=3),
    no_proxy=st.lists(no_proxy_entry(), max_size=4),
    no_proxy_name=st.sampled_from(["NO_PROXY", "no_proxy"]),
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from([*HOSTS, "LocalHost", "GPU.LMStudio.Lan"]),
    port=st.sampled_from([None, 80, 443, 1234]),
)
def test_the_rules_are_httpx_rules(
    proxies: dict[str, str], no_proxy: list[str], no_proxy_name: str, scheme: str, host: str, port: int | None
) -> None:
    env = {**proxies, no_proxy_name: ",".join(no_proxy)}
    with mock.patch.dict(os.environ, env):
        try:
            expected = httpx_choice(scheme, host, port)
        except (httpx.InvalidURL, ValueError):
            assume(False)  # httpx itself refuses these settings (httpx.Client() raises)
            return
        assert ours(scheme, host, port) == expected
