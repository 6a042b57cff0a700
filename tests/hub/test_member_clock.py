"""A member whose clock is really off by ten minutes (its `serve` runs under libfaketime) does not break "last
use": only ages cross the wire and the hub stamps them with its own clock.

libfaketime comes from Debian's `faketime` package, installed by scripts/deps/desktop.sh. Without it these tests
skip, unless LMSTUDIO_TRAY_REQUIRE_DESKTOP=1 (CI, scripts/test.sh), where they fail.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.hub.test_hub import Hub
from tests.hub.test_members import QWEN, Member, wait_for

REQUIRE_ENV = "LMSTUDIO_TRAY_REQUIRE_DESKTOP"  # the CI switch for the Debian packages of scripts/deps/desktop.sh
SHIFT = 600  # seconds: ten minutes, twice the profile's busy window of five


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        problem = "libfaketime is not installed (Debian package faketime); run scripts/deps/desktop.sh (as root)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    return found[0]


def shifted(seconds: int) -> dict[str, str]:
    """The environment that moves a process's wall clock by `seconds` (its monotonic clock stays: timeouts and
    asyncio's timers are not what is tested)."""
    return {"LD_PRELOAD": libfaketime(), "FAKETIME": f"{seconds:+d}", "DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def team(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Member, Member]]:
    hub = Hub(tmp_path / "hub")
    alice_token, bob_token = hub.add("alice"), hub.add("bob")
    hub.start()
    emulator.load(QWEN)
    alice = Member(tmp_path, "alice", emulator, hub.url, alice_token)
    bob = Member(tmp_path, "bob", emulator, hub.url, bob_token)
    with bob.config.open("a") as config:  # bob's sessions go through his router, which records their use
        config.write('\n[[pools]]\nname = "team"\ninstances = ["gpu"]\n')
    yield alice, bob
    for member in (alice, bob):
        member.stop()
    hub.stop()


def bob_seen(alice: Member) -> bool:
    return any(entry[0] == "bob" for entry in alice.others().get("gpu", {}).get(QWEN, []))


def recorded(member: Member) -> float:
    data: dict[str, dict[str, float]] = json.loads((member.state / "model-use.json").read_text())
    return data["gpu"][QWEN]


def test_a_member_ten_minutes_behind_who_uses_a_model_now_is_seen_as_using_it_now(
    team: tuple[Member, Member],
) -> None:
    alice, bob = team
    bob.env.update(shifted(-SHIFT))
    alice.serve()
    bob.serve()
    endpoint = json.loads((bob.root / "endpoint.json").read_text())
    chat = {"model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(f"{endpoint['url']}/v1/route/team/v1/chat/completions", json=chat, timeout=120,
                        headers={"Authorization": f"Bearer {endpoint['token']}"})
    assert answer.status_code == 200, answer.text
    wait_for(lambda: (bob.state / "model-use.json").exists(), "bob's router records the use")
    assert time.time() - recorded(bob) > SHIFT - 60  # bob's clock really is ten minutes behind
    wait_for(lambda: bob_seen(alice), "alice learns of bob's use from the hub")
    when = next(t for m, t in alice.others()["gpu"][QWEN] if m == "bob")
    assert abs(time.time() - when) < SHIFT / 2  # by alice's clock, bob used it just now, not ten minutes ago
    refused = alice.cli("unload", QWEN)  # so it is busy for alice's guard (busy_minutes = 5)
    assert refused.returncode == 1, refused
    said = refused.stderr + refused.stdout
    assert "bob used qwen/qwen3-4b-2507" in said and " min ago" not in said, said


def test_a_member_ten_minutes_ahead_whose_use_was_six_minutes_ago_does_not_block(
    team: tuple[Member, Member], emulator: Emulator,
) -> None:
    alice, bob = team
    bob.env.update(shifted(+SHIFT))
    # bob's lmstudio-tray noted a use six minutes ago by bob's clock (which is ten minutes ahead): by a wall
    # time it would be four minutes in the future, "busy" for anyone comparing times of day
    note = ("import time; from lmstudio_tray.core.control.model_use import ModelUseLog; "
            f"log = ModelUseLog(); log.record('gpu', {QWEN!r}, time.time() - 360); log.flush()")
    done = subprocess.run([sys.executable, "-c", note], env=bob.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert recorded(bob) - time.time() > SHIFT - 360 - 60  # written by a clock ten minutes ahead
    alice.serve()
    bob.serve()
    wait_for(lambda: bob_seen(alice), "alice learns of bob's use from the hub")
    when = next(t for m, t in alice.others()["gpu"][QWEN] if m == "bob")
    assert SHIFT / 2 < time.time() - when < SHIFT  # about six minutes ago by alice's clock too
    unloaded = alice.cli("unload", QWEN)  # outside the five minute window: nothing to ask
    assert unloaded.returncode == 0, unloaded
    assert emulator.loaded() == []
