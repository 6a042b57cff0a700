"""Per-member limits on the hub (hub/limits.py) and the member side honouring them (core/control/team_sync.py):
a member whose lmstudio-tray loops gets 429 with Retry-After, or 409 past its entries, while the others go on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.core.config import team_fetch
from lmstudio_tray.core.config.team import TeamMeta, TeamProfile
from lmstudio_tray.core.control import team_sync
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.team_sync import MAX_RETRY_AFTER, HubState, TeamSync, retry_after
from lmstudio_tray.hub.limits import Limits, MemberBuckets, OverLimit
from lmstudio_tray.hub.members import MemberTokens
from lmstudio_tray.hub.server import HubServer, HubSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_the_rate_and_says_how_long_to_wait() -> None:
    clock = Clock()
    buckets = MemberBuckets(Limits(reports_per_second=2.0, burst=3), clock)
    for _ in range(3):
        buckets.take("alice")
    with pytest.raises(OverLimit, match=r"member 'alice' sent more than 3 reports at once or 2 a second") as over:
        buckets.take("alice")
    assert over.value.retry_after == pytest.approx(0.5)
    buckets.take("bob")  # one member's loop costs the others nothing
    clock.now += 0.5
    buckets.take("alice")
    with pytest.raises(OverLimit):
        buckets.take("alice")


def test_no_real_member_meets_the_default_rate() -> None:
    """A tray and a `serve` of one member, both at the shortest `[team] hub_every` the schema allows, for an hour."""
    shortest = next(m.ge for m in TeamMeta.model_fields["hub_every"].metadata if hasattr(m, "ge"))
    clock = Clock()
    buckets = MemberBuckets(Limits(), clock)
    for _ in range(int(3600 / shortest)):
        buckets.take("alice")
        buckets.take("alice")
        clock.now += shortest


def test_the_default_rate_stops_a_loop() -> None:
    clock = Clock()
    buckets = MemberBuckets(Limits(), clock)
    taken = 0
    with pytest.raises(OverLimit):
        for _ in range(1000):  # a loop without a pause: all at the same instant
            buckets.take("alice")
            taken += 1
    assert taken == Limits().burst


@pytest.fixture
def small_hub(tmp_path: Path) -> Iterator[tuple[HubServer, str, str]]:
    tokens = MemberTokens(tmp_path / "hub")
    alice, bob = tokens.add("alice"), tokens.add("bob")
    server = HubServer(HubSettings(state=tmp_path / "hub", port=0,
                                   limits=Limits(reports_per_second=1 / 30, burst=2, entries=3)))
    server.start()
    yield server, alice, bob
    server.stop()


def post(server: HubServer, token: str, *models: str) -> httpx.Response:
    body = {"uses": [{"instance": "gpu", "model": m, "age_seconds": 1} for m in models]}
    return httpx.post(f"{server.url}/v1/uses", json=body, headers={"Authorization": f"Bearer {token}"})


def held(server: HubServer, token: str) -> list[tuple[str, str]]:
    got = httpx.get(f"{server.url}/v1/uses", headers={"Authorization": f"Bearer {token}"})
    return [(u["member"], u["model"]) for u in got.json()["uses"]]


def test_a_member_over_its_rate_gets_429_with_retry_after_and_the_others_go_on(
    small_hub: tuple[HubServer, str, str],
) -> None:
    server, alice, bob = small_hub
    assert post(server, alice, "a").status_code == 200
    assert post(server, alice, "b").status_code == 200
    over = post(server, alice, "c")
    assert over.status_code == 429 and over.headers["Retry-After"] == "30"
    assert "member 'alice' sent more than 2 reports" in over.json()["error"] and "retry in 30 s" in over.json()["error"]
    assert post(server, bob, "x").status_code == 200  # bob is not slowed down by alice
    assert held(server, alice) == [("alice", "a"), ("alice", "b"), ("bob", "x")]  # no "c"


def test_a_member_reading_in_a_loop_gets_429_and_its_reports_still_go_through(
    small_hub: tuple[HubServer, str, str],
) -> None:
    server, alice, bob = small_hub
    auth = {"Authorization": f"Bearer {alice}"}
    assert httpx.get(f"{server.url}/v1/uses", headers=auth).status_code == 200
    assert httpx.get(f"{server.url}/v1/usage", headers=auth).status_code == 200
    over = httpx.get(f"{server.url}/v1/uses", headers=auth)  # both paths count: the burst of 2 is spent
    assert over.status_code == 429 and over.headers["Retry-After"] == "30"
    assert "member 'alice' read more than 2 times at once" in over.json()["error"]
    assert "`team report` once per run" in over.json()["error"]
    assert httpx.get(f"{server.url}/v1/usage", headers=auth).status_code == 429
    assert post(server, alice, "a").status_code == 200  # its reports count apart from its reads
    assert held(server, bob) == [("alice", "a")]  # and bob reads on


def test_team_report_over_the_read_limit_shows_the_last_copy_and_says_the_hub_asked_to_wait(
    small_hub: tuple[HubServer, str, str], tmp_path: Path,
) -> None:
    from lmstudio_tray.cli._common import RegisteringStore
    from lmstudio_tray.cli.team_hub import HubReportError, ReportSource, team_usage_from_hub

    server, alice, _bob = small_hub
    store = RegisteringStore()
    store.set(team_sync.HUB_TOKEN, alice)
    team = profile(tmp_path, server.url)
    for _ in range(2):  # the burst of 2 reads
        assert team_usage_from_hub(team, store).source is ReportSource.HUB
    with pytest.raises(HubReportError, match=r"asked this member to wait 30 s: member 'alice' read more than 2 "
                                             r"times.*no copy of the team's usage is kept here"):
        team_usage_from_hub(team, store)
    kept = {"received": 1000.0, "hub": server.url, "report": {"members": 1, "names": ["alice"], "models": []}}
    team_sync.usage_file().parent.mkdir(parents=True, exist_ok=True)
    team_sync.usage_file().write_text(json.dumps(kept))
    copy = team_usage_from_hub(team, store)
    assert copy.source is ReportSource.COPY and copy.report["names"] == ["alice"]
    assert copy.problem and "asked this member to wait 30 s" in copy.problem


def test_a_member_cannot_hold_more_entries_than_its_limit(small_hub: tuple[HubServer, str, str]) -> None:
    server, alice, bob = small_hub
    too_many = post(server, alice, "a", "b", "c", "d")
    assert too_many.status_code == 409
    assert "member 'alice' would hold 4 (instance, model) uses on the hub, over the 3" in too_many.json()["error"]
    assert held(server, alice) == []  # nothing of it was stored
    assert post(server, alice, "a", "b", "c", "a").json() == {"member": "alice", "stored": 4}
    assert post(server, bob, "a", "b", "c").status_code == 200  # bob's entries are his own


def profile(tmp_path: Path, hub: str) -> TeamProfile:
    path = tmp_path / "team.toml"
    path.write_text(f'[team]\nname = "ml"\nhub = "{hub}"\nhub_every = 0.2\n\n'
                    '[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n')
    return team_fetch.load_team(str(path))


async def test_the_member_waits_as_long_as_the_hub_says_and_says_so_once(
    small_hub: tuple[HubServer, str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    server, alice, _bob = small_hub
    team = profile(tmp_path, server.url)
    pauses: list[float] = []
    done = asyncio.Event()

    async def pause(seconds: float) -> None:  # records the pause instead of waiting it out
        pauses.append(seconds)
        if len(pauses) == 6:
            done.set()
        await asyncio.sleep(0)

    uses = ModelUseLog(tmp_path / "uses.json")
    uses.record("gpu", "m")
    uses.flush()
    sync = TeamSync(lambda: team, uses, lambda: alice, others=tmp_path / "others.json", sleep=pause)
    with caplog.at_level(logging.INFO, logger="lmstudio_tray.core.control.team_sync"):
        await sync.start()
        await asyncio.wait_for(done.wait(), 120)
        await sync.stop()
    assert pauses[:2] == [0.2, 0.2]  # the burst of 2: hub_every
    assert all(p >= 29 for p in pauses[2:6]), pauses  # then what Retry-After said, not hub_every
    assert sync.status.state is HubState.LIMITED and "wait 30 s" in sync.status.message
    said = [r.getMessage() for r in caplog.records if "team hub: limited" in r.getMessage()]
    assert len(said) == 1 and "member 'alice' sent more than 2 reports" in said[0]


async def test_a_report_over_the_entries_is_refused_with_the_hubs_reason(
    small_hub: tuple[HubServer, str, str], tmp_path: Path,
) -> None:
    server, alice, _bob = small_hub
    uses = ModelUseLog(tmp_path / "uses.json")
    for model in "abcd":
        uses.record("gpu", model)
    uses.flush()
    sync = TeamSync(lambda: None, uses, lambda: alice, others=tmp_path / "others.json")
    status = await asyncio.to_thread(sync._round, profile(tmp_path, server.url))
    assert status.state is HubState.REFUSED
    assert "refused the report (409)" in status.message and "over the 3" in status.message


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), ("0", 1.0), (None, 1.0), ("soon", 1.0),
                                                 ("99999", MAX_RETRY_AFTER), ("nan", 1.0),
                                                 ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0)])
def test_retry_after_is_read_as_seconds_or_a_date(value: str | None, seconds: float) -> None:
    assert retry_after(value, now=lambda: 1445412480.0) == seconds
