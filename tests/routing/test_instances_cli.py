"""`lmstudio-tray instances ...` against emulators: the config file keeps its comments, tokens stay out of
it, health is measured, the local server is found from LM Studio's own settings."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import keyring
import pytest

from lmstudio_tray.cli import main
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.emulator import Emulator
from tests.emulator_fixtures import EmulatorFactory, LmsHome
from tests.routing.conftest import GEMMA, QWEN, chat

COMMENTED = """# my LM Studio servers
[[instances]]
name = "desk"  # the one under the desk
url = "http://127.0.0.1:{port}"
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_keeps_comments_and_the_default_instance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "add", "gpu", "http://127.0.0.1:9/v1")
    assert code == 0 and "Added gpu (http://127.0.0.1:9)" in out
    # the file did not exist: the implicit default `local` is kept next to the new one
    assert [(i.name, i.url) for i in load_config(cfg).instances] == [
        ("local", "http://127.0.0.1:1234"), ("gpu", "http://127.0.0.1:9")]

    cfg.write_text(COMMENTED.format(port=1234))
    code, _, _ = run(capsys, "--config", str(cfg), "instances", "add", "gpu", "http://127.0.0.1:9")
    assert code == 0
    text = cfg.read_text()
    assert "# my LM Studio servers" in text and "# the one under the desk" in text
    assert [i.name for i in load_config(cfg).instances] == ["desk", "gpu"]
    assert (tmp_path / "config.toml.bak").read_text() == COMMENTED.format(port=1234)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["desk", "http://127.0.0.1:5"], ["'desk' exists already"]),
        (["other", "http://127.0.0.1:1234"], ["configured already as 'desk'"]),
        (["bad name", "http://127.0.0.1:5"], ["name", "letters"]),
        (["x", "ftp://nope"], ["url", "not an http(s) URL"]),
    ],
)
def test_bad_adds_change_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                 words: list[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(COMMENTED.format(port=1234))
    code, _, err = run(capsys, "--config", str(cfg), "instances", "add", *args)
    assert code == 2
    for word in words:
        assert word in err
    assert "Nothing was changed" in err
    assert cfg.read_text() == COMMENTED.format(port=1234)


def test_token_from_stdin_goes_to_the_keyring_not_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    emulator_factory: EmulatorFactory,
) -> None:
    emu = emulator_factory(auth_token="s3cret-token")
    cfg = tmp_path / "config.toml"
    cfg.write_text(COMMENTED.format(port=1))
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-token\n"))
    code, out, err = run(capsys, "--config", str(cfg), "instances", "add", "secure", emu.api_url, "--token-stdin")
    assert code == 0, err
    assert keyring.get_password("lmstudio-tray", "secure") == "s3cret-token"
    assert "s3cret-token" not in cfg.read_text() and "s3cret-token" not in out + err
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "list", "--json")
    row = next(r for r in json.loads(out) if r["name"] == "secure")
    assert row["has_token"] is True and row["state"] == "idle" and row["reachable"] is True
    assert "s3cret-token" not in out

    code, out, _ = run(capsys, "--config", str(cfg), "instances", "remove", "secure")
    assert code == 0 and "forgot its API token" in out
    assert keyring.get_password("lmstudio-tray", "secure") is None


def test_list_shows_health_of_each_instance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emulator_factory: EmulatorFactory
) -> None:
    up: Emulator = emulator_factory()
    up.load(QWEN, context_length=4096)
    up.load(GEMMA)
    down: Emulator = emulator_factory()
    down.stop_server()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'active_instance = "up"\n[[instances]]\nname = "up"\nurl = "{up.api_url}"\n'
                   f'[[instances]]\nname = "down"\nurl = "{down.api_url}"\n'
                   '[[pools]]\nname = "team"\ninstances = ["up", "down"]\n')
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "list", "--json")
    assert code == 1  # one is unreachable
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["up"]["active"] is True and rows["down"]["active"] is False
    assert rows["up"]["reachable"] is True and rows["up"]["state"] == "ready"
    assert rows["up"]["api"] == "v1" and rows["up"]["latency_ms"] > 0
    assert sorted(rows["up"]["loaded"]) == sorted([QWEN, GEMMA])
    assert rows["up"]["pools"] == ["team"] == rows["down"]["pools"]
    assert rows["down"]["reachable"] is False and rows["down"]["state"] == "offline"
    assert "cannot connect" in rows["down"]["error"]
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "list")
    assert out.splitlines()[0].startswith("* up ") and "ready" in out and f"loaded: {QWEN}" in out
    assert "down" in out and "offline" in out


def test_use_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(COMMENTED.format(port=1234) + '[[instances]]\nname = "gpu"\nurl = "http://10.0.0.7:1234"\n')
    assert run(capsys, "--config", str(cfg), "instances", "use", "gpu")[0] == 0
    assert load_config(cfg).active_instance == "gpu"
    code, _, err = run(capsys, "--config", str(cfg), "instances", "use", "nope")
    assert code == 2 and "no instance named 'nope'" in err and "desk, gpu" in err
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "remove", "gpu")
    assert code == 0 and "Active instance: desk" in out
    cfg_now = load_config(cfg)
    assert [i.name for i in cfg_now.instances] == ["desk"] and cfg_now.active_instance is None
    assert "# the one under the desk" in cfg.read_text()


def test_remove_refuses_a_pool_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    text = COMMENTED.format(port=1234) + '[[pools]]\nname = "team"\ninstances = ["desk"]\n'
    cfg.write_text(text)
    code, _, err = run(capsys, "--config", str(cfg), "instances", "remove", "desk")
    assert code == 2 and "pool(s) team" in err
    assert cfg.read_text() == text


def test_discover_finds_the_local_server_from_lm_studios_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lms_home: LmsHome
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(COMMENTED.format(port=1))
    url = lms_home.emulator.api_url
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "discover")
    assert code == 0 and f"Local LM Studio: {url}" in out and "answers as LM Studio" in out
    assert "not configured" in out
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "discover", "--add", "studio")
    assert code == 0 and "Added it as 'studio'" in out
    assert ("studio", url) in [(i.name, i.url) for i in load_config(cfg).instances]
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "discover")
    assert "configured as 'studio'" in out

    lms_home.emulator.stop_server()  # the settings still name the port; the greeting no longer answers
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "discover")
    assert code == 1 and "does not answer" in out


def test_discover_without_lm_studio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "c.toml"), "instances", "discover")
    assert code == 1 and "No local LM Studio found" in err


def test_list_includes_what_the_running_tray_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pool_factory: Any, emulator_factory: EmulatorFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = pool_factory({"a": [QWEN]}, poll_interval=60, fast_window=0)
    stray: Emulator = emulator_factory()
    stray.load(GEMMA)
    # an OpenCode provider pointing at a server that is not configured: the tray monitors it ad hoc
    r = httpx.post(pool.server.url + "/v1/validate", json={"model": GEMMA, "base_url": stray.api_url + "/v1"},
                   headers={"authorization": f"Bearer {pool.server.token}"}, timeout=10)
    assert r.status_code == 200
    # and the router saw a dead member once
    pool.emus["a"].stop_server()
    r = httpx.post(pool.server.url + "/v1/route/team/v1/chat/completions", json=chat(QWEN),
                   headers={"authorization": f"Bearer {pool.server.token}"}, timeout=10)
    assert r.status_code == 502
    pool.emus["a"].start_server()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[instances]]\nname = "a"\nurl = "{pool.emus["a"].api_url}"\n')
    # a proxy that is down: the running tray is still asked directly (its token must not go to a proxy)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", urlsplit(pool.emus["a"].api_url).netloc)  # LM Studio itself directly
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "list", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["a"]["configured"] is True and rows["a"]["recent_failures"]
    assert "connection refused" in rows["a"]["recent_failures"][-1]["reason"]
    seen = [row for row in rows.values() if not row["configured"]]
    assert len(seen) == 1 and seen[0]["url"] == stray.api_url and seen[0]["loaded"] == [GEMMA]
    code, out, _ = run(capsys, "--config", str(cfg), "instances", "list")
    assert "seen through an OpenCode provider" in out and f"instances add NAME {stray.api_url}" in out
    assert "recent router failure(s), last: connection refused" in out
