"""`team status` and `team report` about the team hub without a running lmstudio-tray, and the member side's usage
rounds: a summary at most every minute, and a hub from before team usage (404) is no failure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.cli import main
from lmstudio_tray.core.config import team_fetch
from lmstudio_tray.core.control import team_sync
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.control.team_sync import HubState, TeamSync

QWEN = "qwen/qwen3-4b-2507"


def config(tmp_path: Path, hub: str) -> Path:
    profile = tmp_path / "team.toml"
    profile.write_text(f'[team]\nname = "ml"\nbusy_minutes = 5\nhub = "{hub}"\n\n'
                       '[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n')
    path = tmp_path / "config.toml"
    path.write_text(f'team_profile = "{profile}"\n')
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_team_status_without_a_running_tray_says_so_and_lists_what_the_hub_last_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    now = time.time()
    team_sync.others_file().parent.mkdir(parents=True, exist_ok=True)
    team_sync.others_file().write_text(json.dumps({"gpu": {QWEN: [["bob", now - 30]], "old": [["carol", now - 900]]},
                                                   "private-box": {QWEN: [["bob", now - 5]]}}))
    cfg = config(tmp_path, "https://hub.lan:8765")
    code, out, err = run(capsys, "--config", str(cfg), "team", "status")
    assert code == 0, err
    assert "team hub: https://hub.lan:8765 (its state is known to a running `lmstudio-tray serve` or tray" in out
    assert f"gpu: {QWEN} used by bob 3" in out and "(in use)" in out.split(QWEN)[1].splitlines()[0]
    assert "gpu: old used by carol 15 min ago" in out and "carol 15 min ago (in use)" not in out
    assert "private-box" not in out  # not an instance the team shares
    data = json.loads(run(capsys, "--config", str(cfg), "team", "status", "--json")[1])["team_hub"]
    assert data["status"] is None and [r["member"] for r in data["others"]] == ["bob", "carol"]


def test_team_report_without_a_folder_needs_a_hub_and_a_token(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "team", "report")
    assert code == 2 and "no team profile" in err and "lmstudio-tray team report DIR" in err
    cfg = config(tmp_path, "https://hub.lan:8765")
    code, _, err = run(capsys, "--config", str(cfg), "team", "report")
    assert code == 1 and "lmstudio-tray token set team-hub" in err
    plain = config(tmp_path, "http://10.0.0.7:8765")
    code, _, err = run(capsys, "--config", str(plain), "team", "report")
    assert code == 1 and "not sent over plain HTTP" in err


class OldHub(BaseHTTPRequestHandler):
    """A hub from before team usage: /v1/uses only."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer({"member": "alice", "stored": 0} if self.path == "/v1/uses" else None)

    def do_GET(self) -> None:
        self._answer({"uses": []} if self.path == "/v1/uses" else None)

    def _answer(self, payload: dict[str, Any] | None) -> None:
        body = json.dumps(payload or {"error": "no such route"}).encode()
        self.send_response(200 if payload is not None else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def old_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OldHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class CountingUsage:
    def __init__(self) -> None:
        self.asked = 0

    def summary(self, shared_instances: Sequence[str], team: str | None, days: float) -> dict[str, Any]:
        self.asked += 1
        return {"format": 1, "days": days, "models": {}, "instances": {}}


def test_a_summary_goes_at_most_every_minute_and_an_old_hub_without_usage_is_no_failure(
    tmp_path: Path, old_hub: str,
) -> None:
    profile = team_fetch.load_team(str(config(tmp_path, old_hub).parent / "team.toml"))
    usage = CountingUsage()
    sync = TeamSync(lambda: profile, ModelUseLog(tmp_path / "uses.json"), lambda: "t",
                    others=tmp_path / "others.json", usage_path=tmp_path / "usage.json")
    sync._usage = usage  # what `start(usage)` keeps; the rounds are run by hand here
    for _ in range(3):
        status = sync._round(profile)
        assert status.state is HubState.CONNECTED, status.message
    assert usage.asked == 1  # the first round only: the store is read once a minute, not every `hub_every`
    assert sync.team_usage is None and not (tmp_path / "usage.json").exists()


def test_team_status_says_a_connected_hubs_note_and_the_report_source_is_a_kind() -> None:
    """A connected hub that refused the usage summary says why (the uses still go through); the state and where a
    report's figures come from are enums, their values what `--json` prints."""
    from lmstudio_tray.cli.team_hub import HubReport, ReportSource, status_line

    note = "the hub refused this member's usage summary (400): models has more than 500 names"
    connected = {"state": "connected", "member": "alice", "message": note}
    assert status_line("https://hub.lan", connected) == f"  team hub: https://hub.lan, connected as alice: {note}"
    refused = {"state": "refused", "member": None, "message": "the hub refused this member's token: revoked"}
    assert status_line("https://hub.lan", refused) == ("  team hub: https://hub.lan, refused: the hub refused this "
                                                       "member's token: revoked")
    copy = HubReport({}, ReportSource.COPY, "https://hub.lan", 0.0, "no answer")
    assert copy.source_json()["kind"] == "copy" and json.dumps(copy.source_json()).startswith('{"kind": "copy"')
    assert copy.where().startswith("the copy lmstudio-tray last got")
    assert HubReport({}, ReportSource.HUB, "https://hub.lan", 0.0).where() == "the team hub https://hub.lan (now)"
