"""`lmstudio-tray server config|status` and `lmstudio-tray daemon up|down|status` against the emulator and the
fake `lms`: output, exit codes, the confirmation before serving the network, and every failure path."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmstudio_tray.cli import main
from tests.emulator_fixtures import EmulatorFactory, LmsHome


def config_for(tmp_path: Path, url: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{url}"\n')
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cfg(tmp_path: Path, lms_home: LmsHome) -> str:
    return config_for(tmp_path, lms_home.emulator.api_url)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


class Tty:
    """stdin as a terminal a person types `answer` into."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return self.answer + "\n"


def test_config_shows_the_settings_and_where_the_rest_is_changed(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]
) -> None:
    port = lms_home.emulator.api_port
    code, out, _ = run(capsys, "--config", cfg, "server", "config")
    assert code == 0
    assert f"  port:             {port}" in out and "this machine only (127.0.0.1)" in out
    assert "not required (a request without a token was answered)" in out
    assert "Developer → Server Settings → Just in Time Model Loading" in out
    assert "Auto Unload Unused JIT Models" in out and "Only Keep Last JIT Loaded Model" in out
    code, out, _ = run(capsys, "--config", cfg, "server", "config", "--json")
    data = json.loads(out)
    assert (data["running"], data["port"], data["bind"], data["cors"], data["jit"]) == (True, port, "127.0.0.1",
                                                                                       False, True)
    assert set(data["only_in_lmstudio"]) == {"jit", "idle_ttl", "auto_evict"}


def test_config_applies_cors_and_restarts_the_running_server(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--config", cfg, "server", "config", "--cors")
    assert code == 0, err
    assert "Stopped LM Studio's server" in out and "CORS on." in out
    assert "Warning: CORS on: any website you visit" in err
    assert lms_home.emulator.snapshot()["cors"] is True and lms_home.emulator.server_running


def test_lan_without_a_terminal_or_yes_is_refused(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "--config", cfg, "server", "config", "--lan")
    assert code == 1
    # the risk is told before anything happens, then the refusal says how to go ahead
    assert err.index("Warning: LM Studio will accept connections from your local network") < err.index("--yes")
    assert "there is no terminal to ask in" in err and "Nothing was changed." in err
    assert lms_home.emulator.snapshot()["network_interface"] == "127.0.0.1"
    monkeypatch.setattr("sys.stdin", Tty("n"))
    code, _, err = run(capsys, "--config", cfg, "server", "config", "--lan")
    assert code == 1 and "not confirmed; nothing was changed." in err
    assert lms_home.emulator.snapshot()["network_interface"] == "127.0.0.1"


def test_lan_after_a_yes_at_the_prompt_or_with_yes(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", Tty("y"))
    code, out, err = run(capsys, "--config", cfg, "server", "config", "--lan")
    assert code == 0, err
    assert "Serve LM Studio on the local network anyway? [y/N]" in out
    assert lms_home.emulator.snapshot()["network_interface"] == "0.0.0.0"
    monkeypatch.setattr("sys.stdin", Tty(""))  # --yes never asks
    code, out, err = run(capsys, "--config", cfg, "server", "config", "--localhost")
    assert code == 0 and lms_home.emulator.snapshot()["network_interface"] == "127.0.0.1"
    code, out, err = run(capsys, "--config", cfg, "server", "config", "--lan", "--yes", "--json")
    assert code == 0 and json.loads(out)["settings"]["bind"] == "0.0.0.0" and "[y/N]" not in out


def test_a_refused_port_says_why_and_the_server_keeps_running(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    code, _, err = run(capsys, "--config", cfg, "server", "config", "--port", str(busy_port))
    assert code == 1
    assert f"could not serve on port {busy_port}: another program uses that port" in err
    assert "runs again on its old settings" in err and lms_home.emulator.server_running


def test_a_new_port_notes_the_instance_that_watches_the_old_one(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    code, out, err = run(capsys, "--config", cfg, "server", "config", "--port", str(port))
    assert code == 0 and f"port {port}" in out
    assert f"not port {port}: change that instance's url" in err and "`lmstudio-tray config path`" in err


def test_bad_port_is_a_usage_error(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", cfg, "server", "config", "--port", "70000")
    assert code == 2 and "--port: port 70000 is not a TCP port: use 1-65535" in err


def test_status_json_keeps_its_fields_and_adds_the_settings(
    cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = lms_home.emulator
    code, out, _ = run(capsys, "--config", cfg, "server", "status", "--json")
    data = json.loads(out)
    assert code == 0
    assert {k: data[k] for k in ("instance", "url", "running", "state", "port", "can_control")} == {
        "instance": "local", "url": emu.api_url, "running": True, "state": "idle", "port": emu.api_port,
        "can_control": True}
    assert (data["bind"], data["reach"], data["cors"], data["jit"], data["auth_required"]) == (
        "127.0.0.1", "this_machine", False, True, "no")
    code, out, _ = run(capsys, "--config", cfg, "server", "status")
    assert "Settings: this machine only, CORS off, JIT loading on." in out


def test_status_of_a_remote_instance_has_no_settings(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_for(tmp_path, "http://192.0.2.7:1234")
    code, out, _ = run(capsys, "--config", cfg, "server", "status", "--json")
    data = json.loads(out)
    assert code == 1 and data["running"] is False and data["bind"] is None and data["jit"] is None


def test_daemon_status_down_up(cfg: str, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]) -> None:
    emu = lms_home.emulator
    code, out, _ = run(capsys, "--config", cfg, "daemon", "status", "--json")
    assert code == 0 and json.loads(out)["kind"] == "llmster"
    code, out, _ = run(capsys, "--config", cfg, "daemon", "down")
    assert code == 0 and out.startswith("Stopped LM Studio's daemon (llmster") and not emu.alive
    code, out, _ = run(capsys, "--config", cfg, "daemon", "status")
    assert code == 1 and "start it with `lmstudio-tray daemon up`" in out
    code, out, _ = run(capsys, "--config", cfg, "daemon", "down")
    assert code == 0 and "not running; nothing to stop" in out
    code, out, _ = run(capsys, "--config", cfg, "daemon", "up")
    assert code == 0 and "LM Studio runs as llmster (the LM Studio daemon)" in out and emu.alive


def test_daemon_failures_say_what_to_do(
    cfg: str, lms_home: LmsHome, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = lms_home.emulator
    emu.update(launch_error="llmster: the models folder is not readable")
    emu.kill()
    code, _, err = run(capsys, "--config", cfg, "daemon", "up")
    assert code == 1 and "started but did not answer in time" in err
    (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").unlink()
    code, _, err = run(capsys, "--config", cfg, "daemon", "up", "--json")
    assert code == 1 and "LM Studio is not installed here" in err
    emu.close()
    app = emulator_factory(home=lms_home.lmstudio_home, daemon=False)
    code, _, err = run(capsys, "--config", cfg, "daemon", "down")
    assert code == 1 and "desktop app is running" in err and app.alive


def test_daemon_without_lms(tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = config_for(tmp_path, emulator_factory().api_url)
    code, _, err = run(capsys, "--config", cfg, "daemon", "status")
    assert code == 1 and "the `lms` command was not found" in err
