"""Three members (`lmstudio-tray serve` processes, each with its own state) against one hub process and one
emulator: each sees the other two's uses; one revoked mid-run is told so clearly while the other two go on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmstudio_tray.emulator import Emulator
from tests.hub.test_hub import Hub
from tests.hub.test_members import QWEN, Member, wait_for

NAMES = ("alice", "bob", "carol")


@pytest.fixture
def team3(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Hub, dict[str, Member]]]:
    hub = Hub(tmp_path / "hub")
    tokens = {name: hub.add(name) for name in NAMES}
    hub.start()
    emulator.load(QWEN)
    members = {name: Member(tmp_path, name, emulator, hub.url, tokens[name]) for name in NAMES}
    yield hub, members
    for member in members.values():
        member.stop()
    hub.stop()


def seen_by(member: Member, who: str, model: str) -> bool:
    return any(entry[0] == who for entry in member.others().get("gpu", {}).get(model, []))


def test_three_members_see_each_other_and_a_revoked_one_is_told_while_the_others_go_on(
    team3: tuple[Hub, dict[str, Member]],
) -> None:
    hub, members = team3
    for member in members.values():
        member.serve()
    models = {name: f"team/{name}-model" for name in NAMES}
    for name, member in members.items():
        member.used(models[name])
    for name, member in members.items():
        for other in NAMES:
            if other != name:
                wait_for(lambda m=member, o=other: seen_by(m, o, models[o]), f"{name} sees {other}'s use")
        assert not seen_by(member, name, models[name])  # its own uses stay in its model-use.json

    revoked = subprocess.run([sys.executable, "-m", "lmstudio_tray", "hub", "member", "revoke", "carol",
                              "--state-dir", str(hub.state)], capture_output=True, text=True, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    carol = members["carol"]
    wait_for(lambda: "hub: refused" in carol.log(), "carol's lmstudio-tray says its token was refused")
    assert "member 'carol' was revoked: ask the hub's admin for a new one" in carol.log()
    status = carol.hub_status()
    assert isinstance(status, dict) and status["state"] == "refused" and "'carol' was revoked" in status["message"]
    assert "gpu (active): ready" in carol.cli("status").stdout  # carol's lmstudio-tray itself goes on

    # alice and bob go on: a use after the revocation still reaches the other, both still connected
    members["bob"].used(QWEN)
    wait_for(lambda: seen_by(members["alice"], "bob", QWEN), "alice sees bob's use after carol's revocation")
    members["alice"].used("team/alice-later")
    wait_for(lambda: seen_by(members["bob"], "alice", "team/alice-later"), "bob sees alice's later use")
    for name in ("alice", "bob"):
        assert members[name].hub_status() == {"state": "connected", "message": "", "member": name}
    refused = members["alice"].cli("unload", QWEN)
    assert refused.returncode == 1 and "bob used qwen/qwen3-4b-2507" in refused.stderr + refused.stdout
    assert carol.log().count("hub: refused") == 1  # said once, not at every round
