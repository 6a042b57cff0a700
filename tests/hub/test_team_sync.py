"""The member side's refusals and the guard's message, without processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lmstudio_tray.core.config import team_fetch
from lmstudio_tray.core.config.team import TeamProfile
from lmstudio_tray.core.control import shared_guard
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.team_sync import HubRefused, HubState, TeamSync, check_url
from lmstudio_tray.core.errors import SharedInstanceBusy


def profile(tmp_path: Path, hub: str) -> TeamProfile:
    path = tmp_path / "team.toml"
    path.write_text(f'[team]\nname = "ml"\nbusy_minutes = 5\nhub = "{hub}"\n\n'
                    '[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n')
    return team_fetch.load_team(str(path))


@pytest.mark.parametrize("url", ["http://10.0.0.7:8765", "http://hub.lan:8765", "ftp://hub.lan", "hub.lan:8765"])
def test_the_token_never_goes_over_plain_http_to_another_machine(url: str) -> None:
    with pytest.raises(HubRefused):
        check_url(url)


@pytest.mark.parametrize("url", ["https://hub.lan:8765/", "http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:2"])
def test_https_or_this_machine_is_fine(url: str) -> None:
    assert check_url(url) == url.rstrip("/")


def test_a_plain_http_hub_elsewhere_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    asked: list[bool] = []
    sync = TeamSync(lambda: None, ModelUseLog(tmp_path / "uses.json"), lambda: asked.append(True) or "t",
                    others=tmp_path / "others.json")
    status = sync._round(profile(tmp_path, "http://10.0.0.7:8765"))
    assert status.state is HubState.REFUSED and "plain HTTP" in status.message
    assert asked == []  # the token was not even read
    assert not (tmp_path / "others.json").exists()


def test_a_missing_token_says_how_to_store_one(tmp_path: Path) -> None:
    sync = TeamSync(lambda: None, ModelUseLog(tmp_path / "uses.json"), lambda: None, others=tmp_path / "o.json")
    status = sync._round(profile(tmp_path, "https://hub.lan:8765"))
    assert status.state is HubState.REFUSED and "lmstudio-tray token set team-hub" in status.message


def test_the_guard_names_the_other_member_and_keeps_local_behaviour(tmp_path: Path) -> None:
    team = profile(tmp_path, "https://hub.lan:8765")
    now = time.time()
    uses = ModelUseLog(tmp_path / "uses.json")
    others = {"gpu": {"m": [("bob", now - 42)], "old": [("bob", now - 600)]}}
    with pytest.raises(SharedInstanceBusy, match=r"bob used m 4\d s ago \(from the team hub\)"):
        shared_guard.guard_change(team, "gpu", ["m"], uses=uses, recorded={}, others=others, now=now)
    shared_guard.guard_change(team, "gpu", ["old"], uses=uses, recorded={}, others=others, now=now)  # outside window
    shared_guard.guard_change(team, "gpu", ["m"], uses=uses, recorded={}, others=others, now=now, force=True)
    shared_guard.guard_change(team, "other", ["m"], uses=uses, recorded={}, others=others, now=now)  # not shared
    with pytest.raises(SharedInstanceBusy, match="this machine"):  # this machine's own use, as before
        shared_guard.guard_change(team, "gpu", ["x"], uses=uses, recorded={"gpu": {"x": now - 5}}, others={}, now=now)


async def test_a_round_that_fails_unexpectedly_does_not_end_the_service(tmp_path: Path) -> None:
    """The others' file cannot be written (a directory stands there): the round fails, the service goes on."""
    import asyncio
    import json
    import threading

    from lmstudio_tray.hub.members import MemberTokens
    from lmstudio_tray.hub.server import HubServer, HubSettings

    token = MemberTokens(tmp_path / "hub").add("alice")
    server = HubServer(HubSettings(state=tmp_path / "hub", port=0))
    server.start()
    try:
        blocked = tmp_path / "others"
        blocked.mkdir()
        team = profile(tmp_path, server.url)
        rounds = threading.Semaphore(0)

        def counted() -> TeamProfile:
            rounds.release()
            return TeamProfile(**{**team.__dict__, "hub_every": 0.2})

        sync = TeamSync(counted, ModelUseLog(tmp_path / "uses.json"), lambda: token, others=blocked)
        await sync.start()
        for _ in range(3):  # three rounds: the first one's failure did not end the task
            assert await asyncio.to_thread(rounds.acquire, True, 120), "the service stopped after a failed round"
        assert sync._task is not None and not sync._task.done()
        await sync.stop()
        assert json.loads((tmp_path / "hub" / "uses.json").read_text()) == {}
    finally:
        server.stop()


class _TooManyNames:
    """A usage summary the hub refuses (400: more models than it keeps), counting how often it is read."""

    def __init__(self) -> None:
        self.read = 0

    def summary(self, shared_instances: object, team: object, days: float) -> dict[str, object]:
        self.read += 1
        return {"format": 1, "models": {f"m{n}": {"requests": 1} for n in range(501)}, "instances": {}}


def test_a_refused_usage_summary_keeps_the_round_connected_is_said_once_and_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The uses exchange worked, so the hub is connected; the summary's refusal is a note (logged once), and the
    next round does not read 30 days of analytics to send it again at once."""
    from lmstudio_tray.hub.members import MemberTokens
    from lmstudio_tray.hub.server import HubServer, HubSettings

    token = MemberTokens(tmp_path / "hub").add("alice")
    server = HubServer(HubSettings(state=tmp_path / "hub", port=0))
    server.start()
    try:
        team = profile(tmp_path, server.url)
        sync = TeamSync(lambda: team, ModelUseLog(tmp_path / "uses.json"), lambda: token,
                        others=tmp_path / "others.json", usage_path=tmp_path / "usage.json")
        usage = _TooManyNames()
        sync._usage = usage
        statuses = [sync._round(team) for _ in range(3)]
    finally:
        server.stop()
    assert [s.state for s in statuses] == [HubState.CONNECTED] * 3 and statuses[0].member == "alice"
    assert all(s.message == "the hub refused this member's usage summary (400): models has more than 500 names"
               for s in statuses)
    assert usage.read == 1  # backed off: not re-read (nor re-sent) every round
    said = [r for r in caplog.records if "usage summary" in r.getMessage()]
    assert len(said) == 1


def test_the_hub_token_is_read_once_for_many_rounds_and_again_after_the_hub_refuses_it(tmp_path: Path) -> None:
    """The keyring (D-Bus, maybe a prompt) is not asked every round, as often as every 0.2 s; a token the hub refuses
    (revoked, replaced with `token set team-hub`) is read again at the next round."""
    from lmstudio_tray.hub.members import MemberTokens
    from lmstudio_tray.hub.server import HubServer, HubSettings

    members = MemberTokens(tmp_path / "hub")
    held = [members.add("alice")]
    reads: list[str] = []

    def read_token() -> str:
        reads.append(held[0])
        return held[0]

    server = HubServer(HubSettings(state=tmp_path / "hub", port=0))
    server.start()
    try:
        team = profile(tmp_path, server.url)
        sync = TeamSync(lambda: team, ModelUseLog(tmp_path / "uses.json"), read_token,
                        others=tmp_path / "others.json", usage_path=tmp_path / "usage.json")
        assert [sync._round(team).state for _ in range(5)] == [HubState.CONNECTED] * 5
        assert len(reads) == 1
        members.revoke("alice")
        held[0] = members.add("alice")  # the admin gives a new token; the member stores it
        assert sync._round(team).state is HubState.REFUSED  # the cached, revoked one
        assert [sync._round(team).state for _ in range(3)] == [HubState.CONNECTED] * 3
        assert len(reads) == 2 and reads[1] == held[0]
    finally:
        server.stop()
