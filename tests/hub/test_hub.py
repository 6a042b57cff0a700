"""The team hub as its own process (`lmstudio-tray serve --hub`): members, tokens, reports, restarts."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.store import Use, UseStore


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmstudio_tray", *args], capture_output=True, text=True,
                          timeout=120, env=os.environ.copy())


class Hub:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0

    def start(self, *extra: str, port: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "serve", "--hub", "--port", str(port),
                                      "--state-dir", str(self.state), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("lmstudio-tray hub: "), (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.url = line.split(": ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=60) == 0
        self.proc = None

    def add(self, name: str) -> str:
        done = cli("hub", "member", "add", name, "--state-dir", str(self.state))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "hub")
    yield h
    h.stop()


def report(url: str, token: str, *uses: tuple[str, str, float]) -> httpx.Response:
    body = {"uses": [{"instance": i, "model": m, "age_seconds": a} for i, m, a in uses]}
    return httpx.post(f"{url}/v1/uses", json=body, headers={"Authorization": f"Bearer {token}"})


def read(url: str, token: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/uses", headers={"Authorization": f"Bearer {token}"})


def test_a_member_reads_what_another_reported_and_it_survives_a_restart(hub: Hub) -> None:
    alice, bob = hub.add("alice"), hub.add("bob")
    hub.start()
    answer = report(hub.url, bob, ("gpu-box", "qwen/qwen3-4b", 30))
    assert answer.status_code == 200 and answer.json() == {"member": "bob", "stored": 1}
    seen = read(hub.url, alice).json()["uses"]
    assert [(u["member"], u["instance"], u["model"]) for u in seen] == [("bob", "gpu-box", "qwen/qwen3-4b")]
    assert seen[0]["age_seconds"] >= 30
    hub.stop()
    hub.start()  # acknowledged means on disk
    again = read(hub.url, alice).json()["uses"]
    assert [(u["member"], u["model"]) for u in again] == [("bob", "qwen/qwen3-4b")]
    stored = (hub.state / "members.json").read_text()
    assert alice not in stored and bob not in stored  # tokens are kept hashed only


def test_revoked_and_unknown_tokens_are_refused_clearly(hub: Hub) -> None:
    alice = hub.add("alice")
    hub.start()
    assert read(hub.url, alice).status_code == 200
    done = cli("hub", "member", "revoke", "alice", "--state-dir", str(hub.state))
    assert done.returncode == 0, done.stderr
    refused = read(hub.url, alice)
    assert refused.status_code == 403 and "'alice' was revoked" in refused.json()["error"]
    assert report(hub.url, alice, ("gpu-box", "m", 1)).status_code == 403
    unknown = read(hub.url, "not-a-token")
    assert unknown.status_code == 401 and "hub member add" in unknown.json()["error"]
    assert httpx.get(f"{hub.url}/v1/uses").status_code == 401
    listed = json.loads(cli("hub", "member", "list", "--json", "--state-dir", str(hub.state)).stdout)
    assert [(m["name"], m["revoked"] is not None) for m in listed] == [("alice", True)]
    # a revoked name may be given a new token, and the old one stays refused
    fresh = hub.add("alice")
    assert read(hub.url, fresh).status_code == 200 and read(hub.url, alice).status_code == 401


def test_bad_bodies_are_refused_naming_the_problem(hub: Hub) -> None:
    alice = hub.add("alice")
    hub.start()
    headers = {"Authorization": f"Bearer {alice}"}
    big = httpx.post(f"{hub.url}/v1/uses", content=b"x" * (65 * 1024), headers=headers)
    assert big.status_code == 413
    bad = httpx.post(f"{hub.url}/v1/uses", content=b"{not json", headers=headers)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    neg = report(hub.url, alice, ("gpu-box", "m", -5))
    assert neg.status_code == 400 and "uses[0].age_seconds" in neg.json()["error"]
    assert read(hub.url, alice).json()["uses"] == []  # nothing of a refused report was kept


def test_the_hub_refuses_to_serve_the_network_without_tls(tmp_path: Path) -> None:
    done = cli("serve", "--hub", "--host", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert "without TLS" in done.stderr and "--tls-cert" in done.stderr


def test_member_clocks_do_not_matter_the_hub_stamps_ages_with_its_own(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = UseStore(tmp_path, clock=lambda: now[0])
    # the member's clock may be minutes off: it sends only how long ago the use was
    store.report("bob", [Use("", "gpu-box", "m", 120.0)])
    now[0] += 30
    assert store.uses() == [Use("bob", "gpu-box", "m", 150.0)]
    assert UseStore(tmp_path, clock=lambda: now[0]).uses() == [Use("bob", "gpu-box", "m", 150.0)]


def test_member_names_are_checked(tmp_path: Path) -> None:
    done = cli("hub", "member", "add", "bad name", "--state-dir", str(tmp_path))
    assert done.returncode == 1 and "not a member name" in done.stderr
    MemberTokens(tmp_path).add("bob")
    again = cli("hub", "member", "add", "bob", "--state-dir", str(tmp_path))
    assert again.returncode == 1 and "hub member revoke bob" in again.stderr


def test_with_a_certificate_the_hub_serves_the_network_over_tls_only(hub: Hub, tmp_path: Path) -> None:
    cert, key = tmp_path / "hub.pem", tmp_path / "hub-key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                           "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                           "-out", str(cert)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    alice = hub.add("alice")
    hub.start("--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key))
    assert hub.url.startswith("https://0.0.0.0:")
    url = f"https://127.0.0.1:{hub.port}"
    silent = socket.create_connection(("127.0.0.1", hub.port))  # connects, never says hello: must block no one
    trust = ssl.create_default_context(cafile=str(cert))
    answer = httpx.get(f"{url}/v1/uses", headers={"Authorization": f"Bearer {alice}"}, verify=trust)
    silent.close()
    assert answer.status_code == 200 and answer.json() == {"uses": []}
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
        httpx.get(f"http://127.0.0.1:{hub.port}/v1/health")
    half = cli("serve", "--hub", "--port", "0", "--tls-cert", str(cert), "--state-dir", str(tmp_path / "x"))
    assert half.returncode == 1 and "both --tls-cert and --tls-key" in half.stderr
