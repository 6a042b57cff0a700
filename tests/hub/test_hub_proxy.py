"""A plain-HTTP hub on this machine is never reached through a proxy from the environment: the member token would
travel in clear to the proxy (httpx proxies 127.0.0.1 too, unless NO_PROXY says otherwise)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.core.config import team_fetch
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.team_sync import HubState, TeamSync
from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.server import HubServer, HubSettings


class RecordingProxy:
    """A socket server standing for a proxy: it keeps the bytes of every request it gets and answers 502."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    self.seen.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=10)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    p = RecordingProxy()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, p.url)
    yield p
    p.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[HubServer, str]]:
    token = MemberTokens(tmp_path / "hub").add("alice")
    server = HubServer(HubSettings(state=tmp_path / "hub", port=0))
    server.start()
    yield server, token
    server.stop()


def _profile(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "team.toml"
    path.write_text(f'[team]\nname = "ml"\nhub = "{url}"\n\n[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n')
    return path


def test_the_member_side_reaches_a_loopback_http_hub_directly_with_http_proxy_set(
    tmp_path: Path, proxy: RecordingProxy, hub: tuple[HubServer, str],
) -> None:
    server, token = hub
    team = team_fetch.load_team(str(_profile(tmp_path, server.url)))
    sync = TeamSync(lambda: team, ModelUseLog(tmp_path / "uses.json"), lambda: token,
                    others=tmp_path / "others.json", usage_path=tmp_path / "usage.json")
    assert httpx.Client().get(f"{server.url}/v1/health").status_code == 502  # this environment does proxy it
    proxy.seen.clear()
    status = sync._round(team)
    assert status.state is HubState.CONNECTED, status.message
    assert proxy.seen == []


def test_team_report_reaches_a_loopback_http_hub_directly_with_http_proxy_set(
    tmp_path: Path, proxy: RecordingProxy, hub: tuple[HubServer, str],
) -> None:
    server, token = hub
    summary = {"format": 1, "models": {"m": {"requests": 2}}, "instances": {}}
    with httpx.Client(trust_env=False) as direct:
        assert direct.post(f"{server.url}/v1/usage", json=summary,
                           headers={"Authorization": f"Bearer {token}"}).status_code == 200
    config = tmp_path / "config.toml"
    config.write_text(f'team_profile = "{_profile(tmp_path, server.url)}"\n')
    root = tmp_path / "member"
    env = {**os.environ, "XDG_STATE_HOME": str(root / "state"), "XDG_CONFIG_HOME": str(root / "config"),
           "XDG_CACHE_HOME": str(root / "cache"), "XDG_DATA_HOME": str(root / "data"),
           "LMSTUDIO_TRAY_ENDPOINT_FILE": str(root / "endpoint.json"), "LMSTUDIO_TRAY_TOKEN_TEAM_HUB": token}
    done = subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(config), "team", "report", "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"]["kind"] == "hub"
    assert proxy.seen == []
