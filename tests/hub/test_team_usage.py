"""Team usage on the hub (`POST/GET /v1/usage`): each member's anonymised summary kept per member, merged for
everyone, written before it is acknowledged, and nothing but counts under model and instance names kept."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.hub.usage import UsageStore, UsageStoreError, check_summary
from tests.hub.test_hub import Hub, cli

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "hub")
    yield h
    h.stop()


def summary(models: dict[str, dict[str, int]], instances: dict[str, dict[str, int]],
            **extra: object) -> dict[str, object]:
    return {"format": 1, "member": "3f2a9c", "team": "ml", "exported_on": "2026-01-31", "days": 30,
            "models": models, "instances": instances, "note": None, **extra}


def send(url: str, token: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/usage", json=body, headers={"Authorization": f"Bearer {token}"})


def team(url: str, token: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {token}"})


def test_members_usage_is_merged_per_member_and_survives_a_restart(hub: Hub) -> None:
    alice, bob = hub.add("alice"), hub.add("bob")
    hub.start()
    a = summary({QWEN: {"requests": 3, "turns": 1, "input_tokens": 100, "output_tokens": 20, "errors": 0}},
                {"gpu-box": {"requests": 3, "turns": 1, "input_tokens": 100, "output_tokens": 20, "errors": 0}})
    assert send(hub.url, alice, a).json() == {"member": "alice", "stored": True}
    b = summary({QWEN: {"requests": 2}, GEMMA: {"requests": 1, "errors": 1}}, {"private": {"requests": 3}})
    assert send(hub.url, bob, b).status_code == 200
    assert send(hub.url, bob, b).status_code == 200  # a member's new summary replaces its last one
    got = team(hub.url, alice).json()
    assert got["members"] == 2 and got["names"] == ["alice", "bob"]
    assert [(m["name"], m["requests"]) for m in got["models"]] == [(QWEN, 5), (GEMMA, 1)]
    assert {i["name"]: i["requests"] for i in got["instances"]} == {"gpu-box": 3, "private": 3}
    hub.stop()
    hub.start()  # acknowledged means on disk
    assert team(hub.url, bob).json()["models"] == got["models"]


def test_only_counts_are_kept_whatever_else_a_body_carries(hub: Hub) -> None:
    alice = hub.add("alice")
    hub.start()
    secret = "PROMPT: summarise the merger memo for the board"
    body = summary({QWEN: {"requests": 1, "prompt": secret}}, {"gpu-box": {"requests": 1}},
                   prompt=secret, session_id="ses_secret", agent=secret)
    assert send(hub.url, alice, body).status_code == 200
    stored = (hub.state / "usage.json").read_text()
    answer = team(hub.url, alice).text
    for text in (stored, answer):
        assert "PROMPT" not in text and "ses_secret" not in text and "3f2a9c" not in text
    assert json.loads(stored)["alice"]["models"] == {QWEN: {"requests": 1, "turns": 0, "input_tokens": 0,
                                                            "output_tokens": 0, "errors": 0}}


def test_bad_summaries_and_tokens_are_refused_naming_the_problem(hub: Hub) -> None:
    alice = hub.add("alice")
    hub.start()
    bad = send(hub.url, alice, summary({QWEN: {"requests": -1}}, {}))
    assert bad.status_code == 400 and f"models.{QWEN}.requests = -1 is not a count" in bad.json()["error"]
    assert send(hub.url, alice, {"models": {}}).status_code == 400  # no format: not a summary
    notjson = httpx.post(f"{hub.url}/v1/usage", content=b"{x", headers={"Authorization": f"Bearer {alice}"})
    assert notjson.status_code == 400 and "not JSON" in notjson.json()["error"]
    assert team(hub.url, alice).json()["members"] == 0  # nothing of a refused summary was kept
    assert team(hub.url, "nope").status_code == 401
    assert cli("hub", "member", "revoke", "alice", "--state-dir", str(hub.state)).returncode == 0
    revoked = send(hub.url, alice, summary({}, {}))
    assert revoked.status_code == 403 and "'alice' was revoked" in revoked.json()["error"]


def test_bad_entries_are_dropped_and_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "usage.json").write_text(json.dumps({"bob": {"format": 1, "models": {QWEN: {"requests": 2}},
                                                             "instances": {}}, "eve": {"format": 9}}))
    assert UsageStore(tmp_path).team()["names"] == ["bob"]
    (tmp_path / "usage.json").write_text("{broken")
    with pytest.raises(UsageStoreError, match=r"usage\.json cannot be read"):
        UsageStore(tmp_path)
    assert check_summary(summary({}, {}))["days"] == 30


def test_a_hub_certificate_this_machine_does_not_trust_is_named_and_ssl_cert_file_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/multi-instance.md tells members of a hub with its own CA (or a self-signed certificate) to set
    SSL_CERT_FILE: without it the round says the certificate is not trusted (not "did not answer"); with it, it
    connects over TLS."""
    from lmstudio_tray.core.config import team_fetch
    from lmstudio_tray.core.control.model_use import ModelUseLog
    from lmstudio_tray.core.control.team_sync import HubState, TeamSync
    from lmstudio_tray.hub.members import MemberTokens
    from lmstudio_tray.hub.server import HubServer, HubSettings

    cert, key = tmp_path / "hub.pem", tmp_path / "hub-key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                           "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                           "-out", str(cert)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    token = MemberTokens(tmp_path / "hub").add("alice")
    server = HubServer(HubSettings(state=tmp_path / "hub", port=0, cert=cert, key=key))
    server.start()
    try:
        profile = tmp_path / "team.toml"
        profile.write_text(f'[team]\nname = "ml"\nhub = "{server.url}"\n\n'
                           '[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n')
        team_profile = team_fetch.load_team(str(profile))
        sync = TeamSync(lambda: team_profile, ModelUseLog(tmp_path / "uses.json"), lambda: token,
                        others=tmp_path / "others.json", usage_path=tmp_path / "usage.json")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        status = sync._round(team_profile)
        assert status.state is HubState.REFUSED and "certificate is not trusted" in status.message
        assert "SSL_CERT_FILE" in status.message
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert sync._round(team_profile).state is HubState.CONNECTED
    finally:
        server.stop()


def test_a_member_reading_the_team_usage_cannot_tell_another_members_figures(hub: Hub) -> None:
    """The hub serves the merged totals, the member count and the names (which /v1/uses shows anyway), never one
    member's own figures: bob's 7 requests and carol's 11 appear only as their sum."""
    alice, bob, carol = hub.add("alice"), hub.add("bob"), hub.add("carol")
    hub.start()
    for token, model, figures in ((alice, QWEN, {"requests": 1}), (bob, GEMMA, {"requests": 7, "errors": 3}),
                                  (carol, GEMMA, {"requests": 11})):
        assert send(hub.url, token, summary({model: figures}, {"gpu-box": {"requests": figures["requests"]}})
                    ).status_code == 200
    got = team(hub.url, alice).json()
    assert set(got) == {"members", "names", "models", "instances"}
    assert got["members"] == 3 and got["names"] == ["alice", "bob", "carol"]
    assert {m["name"]: (m["requests"], m["errors"]) for m in got["models"]} == {GEMMA: (18, 3), QWEN: (1, 0)}
    text = json.dumps(got)
    assert '"requests": 7' not in text and '"requests": 11' not in text
