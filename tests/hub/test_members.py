"""Two members (`lmstudio-tray serve` processes with their own state) against one hub process and one emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.emulator import Emulator
from tests.hub.test_hub import Hub

QWEN = "qwen/qwen3-4b-2507"
DEADLINE = 120.0


def wait_for(what: Callable[[], bool], why: str) -> None:
    """Wait for a condition (a generous deadline against hangs, not a speed bound)."""
    end = time.monotonic() + DEADLINE
    while not what():
        assert time.monotonic() < end, f"gave up waiting: {why}"
        time.sleep(0.1)


class Member:
    def __init__(self, root: Path, name: str, emulator: Emulator, hub_url: str, token: str) -> None:
        self.root = root / name
        self.state = self.root / "state" / "lmstudio-tray"
        profile = self.root / "team.toml"
        self.root.mkdir(parents=True)
        profile.write_text(f'[team]\nname = "ml"\nbusy_minutes = 5\nhub = "{hub_url}"\nhub_every = 0.3\n\n'
                           f'[[instances]]\nname = "gpu"\nurl = "{emulator.api_url}"\n')
        self.config = self.root / "config.toml"
        self.config.write_text(f'team_profile = "{profile}"\nactive_instance = "gpu"\n')
        self.env = {**os.environ, "XDG_STATE_HOME": str(self.root / "state"),
                    "XDG_CONFIG_HOME": str(self.root / "config"), "XDG_CACHE_HOME": str(self.root / "cache"),
                    "XDG_DATA_HOME": str(self.root / "data"),
                    "LMSTUDIO_TRAY_ENDPOINT_FILE": str(self.root / "endpoint.json"),
                    "LMSTUDIO_TRAY_TOKEN_TEAM_HUB": token}
        self.proc: subprocess.Popen[str] | None = None

    def serve(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(self.config), "serve",
                                      "--port", "0", "--no-notify"], env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().startswith("lmstudio-tray endpoint: ")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    def used(self, model: str, ago: float = 0.0) -> None:
        """What the member's router records when a session's request goes through it."""
        log = ModelUseLog(self.state / "model-use.json")
        log.record("gpu", model, time.time() - ago)
        log.flush()

    def others(self) -> dict[str, dict[str, list[list[object]]]]:
        try:
            data: dict[str, dict[str, list[list[object]]]] = json.loads((self.state / "team-uses.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def hub_status(self) -> object:
        """`team_hub` of the running serve's /v1/status."""
        found = json.loads((self.root / "endpoint.json").read_text())
        answer = httpx.get(f"{found['url']}/v1/status", headers={"Authorization": f"Bearer {found['token']}"})
        return answer.json()["team_hub"]

    def log(self) -> str:
        try:
            return "".join(p.read_text() for p in sorted((self.root / "state").rglob("*.log*")))
        except OSError:
            return ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(self.config), *args],
                              env=self.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def team(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Hub, Member, Member]]:
    hub = Hub(tmp_path / "hub")
    alice_token, bob_token = hub.add("alice"), hub.add("bob")
    hub.start()
    emulator.load(QWEN)
    alice = Member(tmp_path, "alice", emulator, hub.url, alice_token)
    bob = Member(tmp_path, "bob", emulator, hub.url, bob_token)
    yield hub, alice, bob
    for proc in (alice, bob):
        proc.stop()
    hub.stop()


def bob_seen(alice: Member) -> bool:
    return any(entry[0] == "bob" for entry in alice.others().get("gpu", {}).get(QWEN, []))


def test_a_member_sees_another_members_model_in_use_and_its_unload_is_refused_naming_them(
    team: tuple[Hub, Member, Member], emulator: Emulator,
) -> None:
    _hub, alice, bob = team
    alice.serve()
    bob.serve()
    bob.used(QWEN)
    wait_for(lambda: bob_seen(alice), "alice's lmstudio-tray learns from the hub that bob uses qwen")
    refused = alice.cli("unload", QWEN)
    assert refused.returncode == 1, refused
    assert "bob used qwen/qwen3-4b-2507" in refused.stderr + refused.stdout
    assert [m["modelKey"] for m in emulator.loaded()] == [QWEN]  # still loaded
    forced = alice.cli("unload", QWEN, "--force")
    assert forced.returncode == 0, forced
    assert emulator.loaded() == []


def test_hub_down_then_restarted_members_keep_working_and_catch_up(team: tuple[Hub, Member, Member]) -> None:
    hub, alice, bob = team
    hub.stop()
    alice.serve()
    bob.serve()
    bob.used(QWEN)
    # with the hub down the guard has only local knowledge: bob's use is not known, and nothing fails
    wait_for(lambda: "hub: unreachable" in alice.log(), "alice says once that the hub is unreachable")
    assert not bob_seen(alice)
    status = alice.hub_status()
    assert isinstance(status, dict) and status["state"] == "unreachable" and "did not answer" in status["message"]
    assert "gpu (active): ready" in alice.cli("status").stdout  # (the default `local` is offline here)
    hub.start(port=hub.port)
    wait_for(lambda: bob_seen(alice), "alice learns of bob's use once the hub is back")
    wait_for(lambda: alice.hub_status() == {"state": "connected", "message": "", "member": "alice"},
             "alice's status says the hub answers again")
    assert alice.log().count("hub: unreachable") == 1


def test_a_revoked_member_is_told_and_keeps_working(team: tuple[Hub, Member, Member]) -> None:
    hub, alice, _bob = team
    revoked = subprocess.run([sys.executable, "-m", "lmstudio_tray", "hub", "member", "revoke", "alice",
                              "--state-dir", str(hub.state)], capture_output=True, text=True, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    alice.serve()
    wait_for(lambda: "hub: refused" in alice.log(), "alice's lmstudio-tray says its token was refused")
    assert "'alice' was revoked" in alice.log()
    assert "gpu (active): ready" in alice.cli("status").stdout  # (the default `local` is offline here)


def test_a_member_whose_clock_is_off_reports_the_right_age(team: tuple[Hub, Member, Member]) -> None:
    """bob's use 4 minutes ago still counts for alice within a 5 minute window, and one 10 minutes ago does not,
    whatever time of day either clock says: only ages cross the wire."""
    _hub, alice, bob = team
    alice.serve()
    bob.serve()
    bob.used(QWEN, ago=240)
    wait_for(lambda: bob_seen(alice), "alice learns of bob's use")
    when = next(t for m, t in alice.others()["gpu"][QWEN] if m == "bob")
    assert isinstance(when, float) and time.time() - when >= 240
    refused = alice.cli("unload", QWEN)
    assert refused.returncode == 1 and "bob used qwen/qwen3-4b-2507 2" in refused.stderr + refused.stdout
