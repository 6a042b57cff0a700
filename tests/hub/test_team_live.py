"""The team live, end to end: one hub process, one emulated shared instance, member bob as a `serve` process and
member alice as a tray in this process (a presenter over a real core, its TeamSync started by the composition root).
Alice's menu marks bob's model, `team status` says who uses what, `team report` merges both members' usage from the
hub (no files, no prompt text) and falls back to the last copy when the hub is down, and a revoked token is told."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from lmstudio_tray.analytics.store import Store, default_path
from lmstudio_tray.cli import main
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.core.support.endpoint_file import read_endpoint
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.tray.menu import MenuItem, MenuPrefs, find, flatten
from lmstudio_tray.tray.preferences import menu_prefs
from lmstudio_tray.tray.presenter import TrayPresenter
from lmstudio_tray.wiring import Surfaces, attach_surfaces
from tests.hub.test_hub import Hub
from tests.hub.test_members import Member, wait_for

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"
SECRET = "PROMPT: draft the layoff letter"  # what must never leave a member's machine


def seed(db: Path, rows: list[tuple[str, str, int, int]]) -> None:
    """Usage as the analytics store holds it, with text in every column a prompt or a session could hide in."""
    store = Store(db)
    now = time.time()
    store.write(
        [("INSERT INTO verdicts(ts, instance, model, model_key, category, ok, latency_ms, session_id) "
          "VALUES (?,?,?,?,?,?,?,?)", (now, inst, model, model, "ready", 1, 0.3, SECRET)) for inst, model, _, _ in rows]
        + [("INSERT INTO turns(ts, message_id, session_id, instance, model, agent, provider, input_tokens, "
            "output_tokens, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (now, f"m{i}", SECRET, inst, model, SECRET, "lmstudio", tin, tout, SECRET))
           for i, (inst, model, tin, tout) in enumerate(rows)])
    store.close()


@dataclass
class Alice:
    core: Core
    thread: CoreThread
    surfaces: Surfaces
    presenter: TrayPresenter
    view: mock.Mock
    config: Path

    def menu(self) -> tuple[MenuItem, ...]:
        self.presenter.refresh()
        items: tuple[MenuItem, ...] = self.view.set_menu.call_args.args[0]
        return items

    def label(self, start: str) -> str:
        try:
            return find(self.menu(), start).label
        except KeyError:
            return ""

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        out = capsys.readouterr()
        return code, out.out, out.err


@dataclass
class Team:
    hub: Hub
    bob: Member
    alice: Alice
    alice_token: str


def start_alice(root: Path, emulator: Emulator, hub_url: str) -> Alice:
    root.mkdir(parents=True)
    profile = root / "team.toml"
    profile.write_text(f'[team]\nname = "ml"\nbusy_minutes = 5\nhub = "{hub_url}"\nhub_every = 0.3\n\n'
                       f'[[instances]]\nname = "gpu"\nurl = "{emulator.api_url}"\n')
    config = root / "config.toml"
    config.write_text(f'team_profile = "{profile}"\nactive_instance = "gpu"\n[endpoint]\nport = 0\n')
    core = Core(load_config(config), config_path=config, lms_path=None)
    surfaces = attach_surfaces(core, command="run", port=0, notify=False)  # as the tray attaches them
    view = mock.Mock()
    presenter = TrayPresenter(view, status=core.status, actions=core.actions, submit=mock.Mock(),
                              reporter=mock.Mock(), prefs=MenuPrefs(**menu_prefs(core.config, core.teams)),
                              team_uses=lambda: core.team_sync.others)  # as TrayApp gives it
    thread = CoreThread(core)
    thread.start()
    return Alice(core, thread, surfaces, presenter, view, config)


@pytest.fixture
def team(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    hub = Hub(tmp_path / "hub")
    alice_token, bob_token = hub.add("alice"), hub.add("bob")
    bob: Member | None = None
    alice: Alice | None = None
    try:  # a setup that fails half-way leaves no process behind either
        hub.start()
        bob = Member(tmp_path, "bob", emulator, hub.url, bob_token)
        emulator.load(QWEN)
        emulator.load(GEMMA)
        seed(bob.root / "data" / "lmstudio-tray" / default_path().name,
             [("gpu", QWEN, 10, 2), ("bob-laptop", GEMMA, 5, 1)])
        bob.serve()
        # bob's summary is on the hub before alice starts, so that alice's first round reads the whole team
        wait_for(lambda: "bob" in usage(hub.url, alice_token).get("names", []), "bob's usage reaches the hub")
        seed(default_path(), [("gpu", QWEN, 100, 20)] * 3)  # alice's own store (this process's data dir)
        monkeypatch.setenv("LMSTUDIO_TRAY_TOKEN_TEAM_HUB", alice_token)
        alice = start_alice(tmp_path / "alice", emulator, hub.url)
        yield Team(hub, bob, alice, alice_token)
    finally:
        if alice is not None:
            alice.thread.stop()
            alice.surfaces.close()
        if bob is not None:
            bob.stop()
        hub.stop()


def usage(url: str, token: str) -> dict[str, Any]:
    try:
        answer = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.HTTPError:
        return {}
    data: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
    return data


def test_alices_tray_marks_bobs_model_and_team_status_says_who(team: Team,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = team.alice, team.bob
    wait_for(lambda: alice.label("Team hub") == "Team hub: connected as alice", "alice's tray shows the hub")
    assert "in use by" not in alice.label(f"● {QWEN}")  # bob has used nothing yet
    bob.used(QWEN)
    wait_for(lambda: "— in use by bob (" in alice.label(f"● {QWEN}"), "alice's tray marks bob's model")
    marked = [i.label for i in flatten(alice.menu()) if "in use by bob" in i.label]
    assert all(QWEN in label for label in marked) and len(marked) >= 3  # loaded line, Unload, Load model
    assert "in use by" not in alice.label(f"● {GEMMA}")

    code, out, err = alice.cli(capsys, "team", "status")
    assert code == 0, err
    assert f"team hub: {team.hub.url}, connected as alice" in out
    assert f"gpu: {QWEN} used by bob " in out and "(in use)" in out
    code, out, _ = alice.cli(capsys, "team", "status", "--json")
    data = json.loads(out)["team_hub"]
    assert data["status"]["state"] == "connected" and data["others"][0]["member"] == "bob"


def test_team_report_merges_both_members_from_the_hub_without_prompts(team: Team, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    alice = team.alice
    wait_for(lambda: usage(team.hub.url, team.alice_token).get("names") == ["alice", "bob"], "alice's usage sent")
    code, out, err = alice.cli(capsys, "team", "report", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["source"]["kind"] == "hub" and report["members"] == 2 and report["names"] == ["alice", "bob"]
    models = {m["name"]: m for m in report["models"]}
    assert models[QWEN]["requests"] == 4 and models[QWEN]["input_tokens"] == 310
    assert models[GEMMA]["turns"] == 1
    assert {i["name"] for i in report["instances"]} == {"gpu", "private"}  # bob's own machine is not named
    code, text, _ = alice.cli(capsys, "team", "report")
    assert code == 0 and f"Source: the team hub {team.hub.url} (now)" in text and "2 member(s): alice, bob" in text
    for shown in (out, text, (team.hub.state / "usage.json").read_text()):
        assert "PROMPT" not in shown and "laptop" not in shown
    chart = tmp_path / "team.png"
    code, text, _ = alice.cli(capsys, "team", "report", "--chart", str(chart))
    assert code == 0 and f"Chart: {chart}" in text and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the dashboard's team section: the merged usage as alice's TeamSync last got it, in memory
    wait_for(lambda: (alice.core.team_sync.team_usage or {}).get("report", {}).get("members") == 2,
             "alice's lmstudio-tray holds the team's usage")
    endpoint = read_endpoint()
    assert endpoint is not None
    with httpx.Client(base_url=endpoint.url, timeout=30, follow_redirects=True) as browser:
        link = browser.post("/v1/dashboard/code", headers={"authorization": f"Bearer {endpoint.token}"}).json()["url"]
        assert browser.get(link).status_code == 200
        shown = browser.get("/dashboard/api/team").json()
    assert shown["hub"]["state"] == "connected" and shown["usage"]["report"]["names"] == ["alice", "bob"]
    assert "PROMPT" not in json.dumps(shown)


def test_hub_down_the_report_says_so_once_and_shows_the_last_copy(team: Team,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    alice, hub = team.alice, team.hub
    wait_for(lambda: alice.core.team_sync.team_usage is not None, "alice's lmstudio-tray keeps a copy")
    hub.stop()
    code, out, err = alice.cli(capsys, "team", "report")
    assert code == 0, err
    assert err.count("did not answer") == 1 and f"the team hub {hub.url} did not answer" in err
    assert "Source: the copy lmstudio-tray last got from the team hub" in out and QWEN in out
    wait_for(lambda: alice.label("Team hub").startswith("Team hub: unreachable"), "the tray says the hub is down")
    hub.start(port=hub.port)  # nothing acknowledged was lost in the restart
    assert usage(hub.url, team.alice_token)["names"] == ["alice", "bob"]
    code, out, _ = alice.cli(capsys, "team", "report")
    assert code == 0 and "(now)" in out


def test_a_revoked_token_is_a_clear_error_in_the_report_and_the_tray(team: Team,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    alice, hub = team.alice, team.hub
    revoked = subprocess.run([sys.executable, "-m", "lmstudio_tray", "hub", "member", "revoke", "alice",
                              "--state-dir", str(hub.state)], capture_output=True, text=True, timeout=120)
    assert revoked.returncode == 0, revoked.stderr
    code, out, err = alice.cli(capsys, "team", "report")
    assert code == 1 and out == ""
    assert f"the team hub {hub.url} refused this member's token: the token of member 'alice' was revoked" in err
    wait_for(lambda: alice.label("Team hub").startswith("Team hub: refused: the hub refused this member's token"),
             "alice's tray says the token was refused")


def test_the_dashboard_page_shows_the_team_section(team: Team, tmp_path: Path) -> None:
    """The page's script draws the team's usage (headless Chromium, as tests/analytics/test_dashboard.py runs it)."""
    from tests.analytics.test_dashboard import CHROMIUM, chromium

    if CHROMIUM is None:  # the test command installs it; only a hand-run without it may skip
        message = "needs Chromium (Debian: apt install chromium; scripts/deps/desktop.sh installs it)"
        if os.environ.get("LMSTUDIO_TRAY_REQUIRE_DESKTOP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    alice = team.alice
    wait_for(lambda: (alice.core.team_sync.team_usage or {}).get("report", {}).get("members") == 2,
             "alice's lmstudio-tray holds the team's usage")
    endpoint = read_endpoint()
    assert endpoint is not None
    link = httpx.post(f"{endpoint.url}/v1/dashboard/code",
                      headers={"authorization": f"Bearer {endpoint.token}"}).json()["url"]
    dom = chromium(tmp_path, link, "--dump-dom").stdout
    section = dom[dom.index('<section id="team"'):]
    section = section[:section.index("</section>")]
    assert "hidden" not in section.split(">", 1)[0]
    assert "2 member(s): alice, bob" in section and "team hub connected (you are alice)" in section
    assert f"<td>{QWEN}</td><td>4</td>" in section and f"<td>{GEMMA}</td>" in section
    assert "PROMPT" not in dom
