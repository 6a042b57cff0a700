"""`lms server start|stop|status` against the emulator: the real CLI's flags, warnings and texts, LM Studio's
server config file, and a bind the system refuses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.emulator.helpers import http
from tests.emulator_fixtures import LmsHome

CORS_WARNING = "W CORS is enabled. This means any website you visit can use the LM Studio server."
NETWORK_WARNING = "W Server will accept connections from the network. Only use this if you know what you are doing!"
VERIFY_FAILED = "Error: Failed to verify the server is running. Please try to use another port."


def lms(home: LmsHome, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(home.lms), *args], capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}
    )


def config_of(home: LmsHome) -> dict[str, object]:
    data: dict[str, object] = json.loads((home.lmstudio_home / ".internal" / "http-server-config.json").read_text())
    return data


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_start_with_cors_and_bind_warns_and_saves_the_settings(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    r = lms(lms_home, "server", "start", "--cors", "--bind", "0.0.0.0")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.splitlines() == [
        CORS_WARNING, NETWORK_WARNING, f"Success! Server is now running on port {emu.api_port}",
    ]
    config = config_of(lms_home)
    assert config["networkInterface"] == "0.0.0.0" and config["cors"] is True and config["port"] == emu.api_port
    assert config["fileLoggingMode"] == "succinct"  # the rest of LM Studio's shape is kept
    preflight = http.options(f"{emu.api_url}/v1/models", headers={"Origin": "https://example.org"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    status = lms(lms_home, "server", "status", "--json")
    assert json.loads(status.stdout) == {"running": True, "port": emu.api_port}


def test_start_takes_the_port_and_the_bind_from_the_environment(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    r = lms(lms_home, "server", "start", "-p", str(port), env={"LMS_SERVER_HOST": "127.0.0.2"})
    assert r.returncode == 0, r.stderr
    # 127.0.0.2 is not 127.0.0.1: the real CLI warns about the network for any other address
    assert r.stderr.splitlines() == [NETWORK_WARNING, f"Success! Server is now running on port {port}"]
    assert emu.api_port == port and config_of(lms_home)["networkInterface"] == "127.0.0.2"
    assert http.get(f"http://127.0.0.1:{port}/lmstudio-greeting").json() == {"lmstudio": True}
    # --bind beats the environment, and an empty LMS_SERVER_HOST counts as unset; no --cors turns CORS off
    r = lms(lms_home, "server", "start", env={"LMS_SERVER_HOST": ""})
    assert r.returncode == 0 and r.stderr.splitlines() == [f"Success! Server is now running on port {port}"]
    assert config_of(lms_home)["networkInterface"] == "127.0.0.1" and config_of(lms_home)["cors"] is False


def test_a_port_in_use_is_refused_and_the_server_stays_where_it_was(lms_home: LmsHome, busy_port: int) -> None:
    emu = lms_home.emulator
    before = emu.api_port
    r = lms(lms_home, "server", "start", "--port", str(busy_port))
    assert r.returncode == 1 and r.stderr.splitlines() == [VERIFY_FAILED]
    assert emu.server_running and emu.api_port == before
    assert config_of(lms_home)["port"] == before  # LM Studio saves only what it could start
    error = emu.snapshot()["server_error"]
    assert error == {"code": "EADDRINUSE", "errno": -98, "syscall": "listen", "address": "127.0.0.1",
                     "port": busy_port}
    assert lms(lms_home, "server", "start").returncode == 0
    assert emu.snapshot()["server_error"] is None


def test_an_address_that_is_not_on_this_machine_is_refused(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    r = lms(lms_home, "server", "start", "--bind", "192.0.2.1")  # TEST-NET-1: never a local address
    assert r.returncode == 1 and r.stderr.splitlines() == [NETWORK_WARNING, VERIFY_FAILED]
    assert emu.snapshot()["server_error"]["code"] == "EADDRNOTAVAIL"  # type: ignore[index]
    assert config_of(lms_home)["networkInterface"] == "127.0.0.1"


def test_start_when_the_server_was_stopped_reuses_the_saved_port(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    port = emu.api_port
    assert lms(lms_home, "server", "stop").returncode == 0
    assert json.loads(lms(lms_home, "server", "status", "--json").stdout) == {"running": False, "port": port}
    r = lms(lms_home, "server", "start", "--quiet")
    assert r.returncode == 0 and r.stderr == ""  # --quiet silences every log line
    assert emu.server_running and emu.api_port == port


def test_status_without_a_config_file_has_no_port(lms_home: LmsHome) -> None:
    (lms_home.lmstudio_home / ".internal" / "http-server-config.json").unlink()
    r = lms(lms_home, "server", "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"running": False}
    r = lms(lms_home, "server", "stop")
    assert r.returncode == 1 and r.stderr.strip() == "Error: The server is not running."


def test_status_needs_no_running_lm_studio(lms_home: LmsHome) -> None:
    """It reads the config file and probes the port; it never wakes LM Studio."""
    lms_home.emulator.kill()
    r = lms(lms_home, "server", "status")
    assert r.returncode == 0 and r.stderr.strip() == "The server is not running."
    assert not lms_home.emulator.alive


def test_bad_port_is_a_usage_error(lms_home: LmsHome) -> None:
    r = lms(lms_home, "server", "start", "--port", "-5")
    assert r.returncode == 2 and "--port" in r.stderr
