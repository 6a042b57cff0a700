"""`doctor`: every check failing and passing against real things (emulator, dbus-daemon, Xvfb, `serve`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail as fail_backend
from keyrings.alt.file import PlaintextKeyring

from lmstudio_tray.core.config.schema import InstanceConfig
from lmstudio_tray.core.support.endpoint_file import EndpointInfo, write_endpoint
from lmstudio_tray.diagnostics.checks import (
    NOTIFICATIONS,
    SNI_WATCHER,
    Status,
    check_config,
    check_endpoint,
    check_instance,
    check_keyring,
    check_lms,
    check_notifications,
    check_tray_host,
    check_waiting_policy,
    classify_backend,
)
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.platform.x11 import system_tray_owned
from tests.conftest import MemoryKeyring
from tests.diagnostics.conftest import PrivateBus, Xserver
from tests.emulator_fixtures import LmsHome

TOKEN = "sk-lm-doctorPlanted-0a1b2c3d4e5f"


# ---- config ----------------------------------------------------------------------------------------------


def test_config_absent_valid_and_broken(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    result, config = check_config(path)
    assert result.status is Status.OK and "absent: all defaults" in result.detail and config is not None
    path.write_text('[[instances]]\nname = "desk"\nurl = "http://10.0.0.5:1234"\n', encoding="utf-8")
    result, config = check_config(path)
    assert result.status is Status.OK and "instances: desk" in result.detail
    path.write_text('[monitor]\npoll_intervall = 2\n', encoding="utf-8")
    result, config = check_config(path)
    assert result.status is Status.FAIL and config is None
    assert "monitor.poll_intervall" in result.detail and "config validate" in (result.fix or "")
    path.write_text("[[instances]\nname = ", encoding="utf-8")
    result, _ = check_config(path)
    assert result.status is Status.FAIL and "not valid TOML" in result.detail
    assert path.read_text(encoding="utf-8") == "[[instances]\nname = "  # untouched


def test_a_policy_that_sends_requests_during_a_load_is_flagged_with_the_command_that_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What earlier versions' tray menu wrote into config files: `loading = "allow"`."""
    from lmstudio_tray.cli import main

    path = tmp_path / "config.toml"
    path.write_text('[validation.policy]\nloading = "allow"\n', encoding="utf-8")
    _, config = check_config(path)
    assert config is not None
    result = check_waiting_policy(config)
    assert result.status is Status.WARN and "Invalid model identifier" in result.detail
    assert "`lmstudio-tray config set validation.policy.loading ensure`" in (result.fix or "")
    assert main(["--config", str(path), "config", "set", "validation.policy.loading", "ensure"]) == 0
    capsys.readouterr()
    _, config = check_config(path)
    assert config is not None and check_waiting_policy(config).status is Status.OK


# ---- keyring ---------------------------------------------------------------------------------------------


def test_keyring_plaintext_is_a_warning_with_a_fix(tmp_path: Path) -> None:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "plain.cfg")  # type: ignore[misc]
    keyring.set_keyring(backend)
    backend.set_password("lmstudio-tray", "local", TOKEN)
    result = check_keyring([InstanceConfig(name="local", url="http://127.0.0.1:1234")])
    assert result.status is Status.WARN and "PlaintextKeyring" in result.detail
    assert "gnome-keyring" in (result.fix or "")
    assert result.data["tokens_for"] == ["local"] and TOKEN not in json.dumps(result.to_json())


def test_keyring_missing_backend_fails() -> None:
    keyring.set_keyring(fail_backend.Keyring())
    result = check_keyring()
    assert result.status is Status.FAIL and "no keyring backend works" in result.detail and result.fix


def test_keyring_that_does_not_answer_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)  # a Secret Service backend with no bus at all
    keyring.set_keyring(SecretServiceKeyring())
    result = check_keyring()
    assert result.status is Status.FAIL and "does not answer" in result.detail and "unlock" in (result.fix or "")


def test_keyring_classification() -> None:
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    assert classify_backend(SecretServiceKeyring())[1] is True
    assert classify_backend(PlaintextKeyring())[1] is False
    assert classify_backend(MemoryKeyring())[1] is None  # unknown: a warning, not a pass
    result = check_keyring()  # the in-memory keyring of the tests
    assert result.status is Status.WARN and "not a backend doctor knows" in result.detail


# ---- lms -------------------------------------------------------------------------------------------------


def test_lms_found_in_lmstudio_home_and_missing(lms_home: LmsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = check_lms()
    assert result.status is Status.OK and result.detail == str(lms_home.lms)
    lms_home.lms.unlink()
    result = check_lms()
    assert result.status is Status.WARN and "npx lmstudio install-cli" in (result.fix or "")


# ---- instances -------------------------------------------------------------------------------------------


async def test_instance_reachable_with_its_version(emulator: Emulator) -> None:
    emulator.load("qwen/qwen3-4b-2507")
    result = await check_instance(InstanceConfig(name="local", url=emulator.api_url), None)
    assert result.status is Status.OK
    assert "LM Studio 0.4.0 or newer (REST API v1)" in result.detail and "qwen/qwen3-4b-2507" in result.detail
    assert result.data["api"] == "v1" and result.data["models"] == 7


async def test_instance_on_an_old_lm_studio_warns(emulator_factory: object) -> None:
    emu: Emulator = emulator_factory(version="0.3.5")  # type: ignore[operator]
    result = await check_instance(InstanceConfig(name="old", url=emu.api_url), None)
    assert result.status is Status.WARN and "update LM Studio" in (result.fix or "")


async def test_instance_stopped_fails_with_how_to_start_it(emulator: Emulator) -> None:
    emulator.stop_server()
    result = await check_instance(InstanceConfig(name="local", url=emulator.api_url), None)
    assert result.status is Status.FAIL and "offline" in result.detail
    assert "lms server start" in (result.fix or "")


async def test_instance_needing_a_token(emulator_factory: object) -> None:
    emu: Emulator = emulator_factory(auth_token=TOKEN)  # type: ignore[operator]
    cfg = InstanceConfig(name="secured", url=emu.api_url)
    result = await check_instance(cfg, None)
    assert result.status is Status.FAIL and "auth_failed" in result.detail
    assert "lmstudio-tray token set secured" in (result.fix or "")
    result = await check_instance(cfg, TOKEN)
    assert result.status is Status.OK and TOKEN not in json.dumps(result.to_json())


# ---- tray host and notifications -------------------------------------------------------------------------


def test_no_graphical_session_means_no_tray() -> None:
    result = check_tray_host(env={}, platform="linux")
    assert result.status is Status.FAIL and "serve" in (result.fix or "")
    assert check_tray_host(env={}, platform="darwin").status is Status.OK


def test_tray_host_via_status_notifier_watcher(private_bus: PrivateBus, xvfb: Xserver) -> None:
    env = {"DISPLAY": xvfb.display, "DBUS_SESSION_BUS_ADDRESS": private_bus.address}
    result = check_tray_host(env=env, platform="linux")
    assert result.status is Status.FAIL
    assert SNI_WATCHER in result.detail and "XEmbed" in result.detail and "AppIndicator" in (result.fix or "")
    private_bus.own(SNI_WATCHER)
    result = check_tray_host(env=env, platform="linux")
    assert result.status is Status.OK and "StatusNotifierItem" in result.detail


def test_tray_host_via_xembed_selection(private_bus: PrivateBus, xvfb: Xserver) -> None:
    env = {"DISPLAY": xvfb.display, "DBUS_SESSION_BUS_ADDRESS": private_bus.address}
    xvfb.own_tray_selection()
    result = check_tray_host(env=env, platform="linux")
    assert result.status is Status.OK and f"XEmbed system tray on {xvfb.display}" in result.detail


def test_notification_daemon(private_bus: PrivateBus) -> None:
    env = {"DBUS_SESSION_BUS_ADDRESS": private_bus.address}
    result = check_notifications(env=env, platform="linux")
    assert result.status is Status.FAIL and "no notification daemon" in result.detail and "dunst" in (result.fix or "")
    private_bus.own(NOTIFICATIONS)
    assert check_notifications(env=env, platform="linux").status is Status.OK
    result = check_notifications(env={}, platform="linux")
    assert result.status is Status.FAIL and "no D-Bus session bus" in result.detail


# ---- the endpoint ----------------------------------------------------------------------------------------


def test_endpoint_missing_stale_and_silent(tmp_path: Path) -> None:
    file = tmp_path / "endpoint.json"
    result = check_endpoint(file)
    assert result.status is Status.FAIL and "no discovery file" in result.detail
    assert "lmstudio-tray serve" in (result.fix or "")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_endpoint(EndpointInfo(url="http://127.0.0.1:9", token=TOKEN, pid=dead.pid), file)
    result = check_endpoint(file)
    assert result.status is Status.FAIL and f"pid {dead.pid} is gone" in result.detail
    write_endpoint(EndpointInfo(url="http://127.0.0.1:9", token=TOKEN, pid=os.getpid()), file)
    result = check_endpoint(file, timeout=1.0)
    assert result.status is Status.FAIL and "does not answer" in result.detail
    file.write_text("{broken", encoding="utf-8")
    result = check_endpoint(file)
    assert result.status is Status.FAIL and "unreadable" in result.detail


def _serve(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lmstudio_tray", "--config", str(config), "serve", "--port", "0", "--no-notify"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
    )


def _wait_for_endpoint(proc: subprocess.Popen[str], file: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if json.loads(file.read_text(encoding="utf-8"))["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError("serve wrote no discovery file")


def test_endpoint_up_then_killed(tmp_path: Path, emulator: Emulator) -> None:
    from lmstudio_tray.core.support import paths

    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n', encoding="utf-8")
    proc = _serve(config)
    try:
        _wait_for_endpoint(proc, paths.endpoint_file())
        result = check_endpoint()
        assert result.status is Status.OK and f"pid {proc.pid}" in result.detail and " up, version " in result.detail
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        with pytest.MonkeyPatch.context() as env:  # the loopback endpoint is asked directly, whatever the proxy
            env.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
            env.setenv("ALL_PROXY", f"http://127.0.0.1:{dead}")
            assert check_endpoint().status is Status.OK
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    result = check_endpoint()
    assert result.status is Status.FAIL and "is gone" in result.detail


# ---- the command -----------------------------------------------------------------------------------------


def test_doctor_command_json_and_text(tmp_path: Path, emulator: Emulator, private_bus: PrivateBus) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n'
                      f'[[instances]]\nname = "gone"\nurl = "http://127.0.0.1:9"\n', encoding="utf-8")
    private_bus.own(NOTIFICATIONS)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
           "DBUS_SESSION_BUS_ADDRESS": private_bus.address}
    env.pop("DISPLAY", None)
    run = [sys.executable, "-m", "lmstudio_tray", "--config", str(config), "doctor"]
    done = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 1, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["config"]["status"] == "ok"
    assert checks["instance:local"]["status"] == "ok" and checks["instance:gone"]["status"] == "fail"
    assert checks["notifications"]["status"] == "ok"
    assert checks["tray"]["status"] == "fail" and checks["endpoint"]["status"] == "fail"
    assert checks["keyring"]["status"] == "warn"  # the null backend stores nothing
    text = subprocess.run(run, capture_output=True, text=True, timeout=90, env=env).stdout
    assert "✓ LM Studio 'local'" in text and "✗ LM Studio 'gone'" in text
    assert "fix: start LM Studio's server" in text
    assert text.rstrip().endswith("warning(s)")

    config.write_text("version = 'two'\n", encoding="utf-8")
    broken = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=90, env=env)
    checks = {c["name"]: c for c in json.loads(broken.stdout)["checks"]}
    assert broken.returncode == 1 and checks["config"]["status"] == "fail"
    assert not any(name.startswith("instance:") for name in checks)  # nothing to probe without a config


def test_a_chain_is_judged_by_the_backend_that_stores() -> None:
    from keyring.backends.chainer import ChainerBackend
    from keyring.backends.SecretService import Keyring as SecretServiceKeyring

    class Chain(ChainerBackend):  # type: ignore[misc]
        def __init__(self, order: list[object]) -> None:
            self.order = order

        @property
        def backends(self) -> list[object]:  # type: ignore[override]
            return self.order

    for order, expected in (([SecretServiceKeyring(), PlaintextKeyring()], True),
                            ([PlaintextKeyring(), SecretServiceKeyring()], False)):
        name, secure = classify_backend(Chain(order))
        assert secure is expected and name == classify_backend(order[0])[0]


def test_tray_owner_question_names_what_stopped_it(xvfb: Xserver) -> None:
    assert system_tray_owned(xvfb.display) is False  # a bare X server: nobody owns the tray selection
    xvfb.own_tray_selection()
    assert system_tray_owned(xvfb.display) is True
    assert system_tray_owned(":4095") == "cannot open X display :4095"
    assert system_tray_owned(None) == "no X display (DISPLAY is not set)"
