"""`ServerControl` against the emulator and the fake `lms`: LM Studio's server settings read and changed (a
restart on the new settings, the old ones back after a refused bind, the network exposure that needs a yes),
and the LM Studio service started and stopped, with every failure path."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psutil
import pytest

from lmstudio_tray.core.config.schema import Config, InstanceConfig
from lmstudio_tray.core.control.server_control import (
    AuthRequired,
    ServerChange,
    ServerSettings,
    bind_refusal,
    network_risk,
)
from lmstudio_tray.core.errors import ActionError, ActionErrorKind
from lmstudio_tray.core.events import (
    ALL_KINDS,
    InstanceOffline,
    InstanceOnline,
    ServerSettingsRead,
    ServerStarted,
    ServerStopped,
)
from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.core.runtime import Core
from tests.core.helpers import Recorder
from tests.emulator_fixtures import EmulatorFactory, LmsHome

TOKEN = "sk-lm-abcd1234:abcdefghij0123456789"


@pytest.fixture
async def core(lms_home: LmsHome) -> AsyncIterator[Core]:
    emu = lms_home.emulator
    made = Core(Config(instances=[InstanceConfig(name="local", url=emu.api_url)]), lms_path=lms_home.lms)
    await made.monitor.warm_up()
    yield made
    await made.monitor.stop()


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- reading ------------------------------------------------------------------------------------------------
async def test_settings_from_lms_and_lmstudios_file(core: Core, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    settings = await core.server_control.settings()
    assert settings == ServerSettings(True, emu.api_port, "127.0.0.1", False, True, AuthRequired.NO)
    assert settings.describe() == f"port {emu.api_port}, this machine only, CORS off"
    assert settings.to_json() == {"running": True, "port": emu.api_port, "bind": "127.0.0.1",
                                  "reach": "this_machine", "cors": False, "jit": True, "auth_required": "no"}
    emu.update(auth_token=TOKEN, jit=False)
    emu.stop_server()
    emu.start_server(cors=True, bind="0.0.0.0")
    settings = await core.server_control.settings()
    assert (settings.bind, settings.cors, settings.jit, settings.auth) == ("0.0.0.0", True, False, AuthRequired.YES)
    assert settings.describe().endswith("local network (0.0.0.0), CORS on")
    emu.stop_server()
    settings = await core.server_control.settings()
    assert (settings.running, settings.port, settings.auth) == (False, emu.api_port, AuthRequired.UNKNOWN)
    assert core.server_control.last == settings


async def test_settings_without_lms_say_how_to_get_it(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    core = Core(Config(instances=[InstanceConfig(name="local", url=emu.api_url)]), lms_path=None)
    with pytest.raises(ActionError, match="`lms` command was not found") as err:
        await core.server_control.settings()
    assert err.value.kind is ActionErrorKind.LMS_MISSING


# --- changing -----------------------------------------------------------------------------------------------
async def test_a_new_port_restarts_the_running_server_and_says_so(core: Core, lms_home: LmsHome) -> None:
    emu, rec = lms_home.emulator, Recorder()
    core.bus.subscribe(rec, *ALL_KINDS)
    port = free_port()
    plan = await core.server_control.plan(ServerChange(port=port, cors=True))
    assert plan.restart and not plan.needs_confirmation
    assert plan.risks == ("CORS on: any website you visit can use the LM Studio server from your browser.",)
    assert emu.api_port != port  # planning changes nothing
    applied = await core.server_control.apply(plan)
    assert emu.server_running and emu.api_port == port and emu.snapshot()["cors"] is True
    assert applied.settings.port == port and applied.settings.cors
    assert "to start it on the new settings" in applied.messages[0]
    assert applied.messages[1] == f"LM Studio's server runs on port {port}, this machine only, CORS on."
    assert applied.warnings == ("CORS is enabled. This means any website you visit can use the LM Studio server.",)
    assert rec.kinds() == ["server.stopped", "server.started"]


async def test_a_stopped_server_is_started_on_the_new_settings(core: Core, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.stop_server()
    plan = await core.server_control.plan(ServerChange(cors=False))
    assert not plan.restart
    applied = await core.server_control.apply(plan)
    assert emu.server_running and applied.messages == (
        f"LM Studio's server runs on port {emu.api_port}, this machine only, CORS off.",)


async def test_serving_the_network_without_tokens_needs_a_yes(core: Core, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    plan = await core.server_control.plan(ServerChange(bind="0.0.0.0"))
    assert plan.needs_confirmation
    assert "answers requests without an API token right now" in plan.risks[0]
    assert "Require Authentication" in plan.risks[0]
    with pytest.raises(ActionError, match="needs a confirmation; nothing was changed") as err:
        await core.server_control.apply(plan)
    assert err.value.kind is ActionErrorKind.NOT_CONFIRMED
    assert emu.snapshot()["network_interface"] == "127.0.0.1" and emu.server_running
    applied = await core.server_control.apply(plan, confirmed=True)
    assert emu.snapshot()["network_interface"] == "0.0.0.0"
    assert applied.warnings == (
        "Server will accept connections from the network. Only use this if you know what you are doing!",)
    # a port change keeps serving the network (lms would fall back to 127.0.0.1): asked again, still exposed
    again = await core.server_control.plan(ServerChange(port=free_port()))
    assert again.after.bind == "0.0.0.0" and again.needs_confirmation


async def test_with_tokens_required_the_network_needs_no_yes(core: Core, lms_home: LmsHome) -> None:
    lms_home.emulator.update(auth_token=TOKEN)
    plan = await core.server_control.plan(ServerChange(bind="0.0.0.0"))
    assert not plan.needs_confirmation and "it requires an API token" in plan.risks[0]
    await core.server_control.apply(plan)
    assert lms_home.emulator.snapshot()["network_interface"] == "0.0.0.0"


def test_what_the_warning_says_when_nothing_is_known() -> None:
    text = network_risk(AuthRequired.UNKNOWN, "0.0.0.0")
    assert "do not say whether it requires an API token" in text and "0.0.0.0" in text


async def test_a_port_in_use_names_the_cause_and_brings_the_old_server_back(
    core: Core, lms_home: LmsHome, busy_port: int
) -> None:
    emu = lms_home.emulator
    old = emu.api_port
    plan = await core.server_control.plan(ServerChange(port=busy_port))
    with pytest.raises(ActionError) as err:
        await core.server_control.apply(plan)
    assert err.value.kind is ActionErrorKind.BIND_REFUSED
    text = str(err.value)
    assert f"could not serve on port {busy_port}: another program uses that port" in text
    assert "`lmstudio-tray server config --port N`" in text
    assert f"runs again on its old settings (port {old}, this machine only, CORS off)" in text
    assert emu.server_running and emu.api_port == old
    await core.monitor.get("local", max_age=0)
    assert core.monitor.snapshot("local").state is not InstanceState.OFFLINE  # type: ignore[union-attr]


async def test_a_refused_start_of_a_stopped_server_leaves_it_stopped(
    core: Core, lms_home: LmsHome, busy_port: int
) -> None:
    lms_home.emulator.stop_server()
    plan = await core.server_control.plan(ServerChange(port=busy_port))
    with pytest.raises(ActionError, match="another program uses that port") as err:
        await core.server_control.apply(plan)
    assert "old settings" not in str(err.value) and not lms_home.emulator.server_running


async def test_an_address_not_on_this_machine_is_named(core: Core, lms_home: LmsHome) -> None:
    plan = await core.server_control.plan(ServerChange(bind="192.0.2.1"))  # TEST-NET-1: never local
    with pytest.raises(ActionError, match=r"192\.0\.2\.1: that address is not one of this machine.s") as err:
        await core.server_control.apply(plan, confirmed=True)
    assert err.value.kind is ActionErrorKind.BIND_REFUSED and "--lan" in str(err.value)
    assert lms_home.emulator.snapshot()["network_interface"] == "127.0.0.1" and lms_home.emulator.server_running


def test_bind_refusal_without_a_known_cause_still_says_what_to_do() -> None:
    assert "pick another port" in bind_refusal("127.0.0.1", free_port())


async def test_server_control_off_in_the_config_refuses_changes(core: Core) -> None:
    core.config = core.config.model_copy(update={"actions": core.config.actions.model_copy(
        update={"server_control": False})})
    with pytest.raises(ActionError, match=r"actions\.server_control = false") as err:
        await core.server_control.plan(ServerChange(port=4321))
    assert err.value.kind is ActionErrorKind.NOT_SUPPORTED


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="use 1-65535"):
        ServerChange(port=70000)


# --- the LM Studio service ----------------------------------------------------------------------------------
async def test_daemon_down_up_and_status(core: Core, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    control = core.server_control
    assert (await control.daemon_status()).running
    said = await control.daemon_down()
    assert said.startswith(f"Stopped LM Studio's daemon (llmster, PID {os.getpid()})") and not emu.alive
    assert await control.daemon_down() == "LM Studio's daemon is not running; nothing to stop."
    status = await control.daemon_up()
    assert status.running and status.is_daemon and emu.alive


async def test_daemon_down_refuses_the_desktop_app(
    emulator_factory: EmulatorFactory, lms_home: LmsHome
) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, daemon=False)
    core = Core(Config(instances=[InstanceConfig(name="local", url=emu.api_url)]), lms_path=lms_home.lms)
    with pytest.raises(ActionError, match="desktop app is running") as err:
        await core.server_control.daemon_down()
    assert err.value.kind is ActionErrorKind.DESKTOP_APP and "Quit LM Studio" in str(err.value)
    assert emu.alive


async def test_a_daemon_that_will_not_start_and_no_installation(core: Core, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    emu.update(launch_error="llmster: the models folder is not readable")
    emu.kill()
    with pytest.raises(ActionError, match="started but did not answer in time") as err:
        await core.server_control.daemon_up()
    assert "server-logs" in str(err.value)
    (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").unlink()
    for attempt in (core.server_control.daemon_up, core.server_control.start_lmstudio):
        with pytest.raises(ActionError, match="LM Studio is not installed here") as err:
            await attempt()
        assert err.value.kind is ActionErrorKind.NOT_INSTALLED


async def test_start_lmstudio_starts_the_service_and_its_server(core: Core, lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    port = emu.api_port
    emu.stop_server()  # LM Studio restores the server's last state when it starts: off here
    emu.kill()
    said = await core.server_control.start_lmstudio(port)
    assert said == f"llmster is running (PID {os.getpid()}); its server is on port {port}."
    assert emu.alive and emu.server_running
    said = await core.server_control.start_lmstudio(port)
    assert said.endswith("its server was already on.")


async def test_start_lmstudio_says_when_the_service_runs_but_its_server_does_not(
    core: Core, lms_home: LmsHome, busy_port: int
) -> None:
    emu = lms_home.emulator
    emu.stop_server()
    emu.kill()
    with pytest.raises(ActionError, match="llmster is running, but its server did not start") as err:
        await core.server_control.start_lmstudio(busy_port)
    assert err.value.kind is ActionErrorKind.BIND_REFUSED and emu.alive


async def test_refresh_on_status_changes_keeps_what_the_tray_shows(core: Core, lms_home: LmsHome) -> None:
    """The tray's menu reads `last` and `service` without waiting: they follow the local instance's changes."""
    emu, rec = lms_home.emulator, Recorder()
    control = core.server_control
    core.bus.subscribe(rec, ServerSettingsRead)
    core.bus.subscribe(control.on_status_change, InstanceOnline, InstanceOffline, ServerStarted, ServerStopped)
    assert control.last is None and control.service is None

    async def settled(check: Callable[[], bool]) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while not check():
            assert asyncio.get_running_loop().time() < deadline, "the refresh never came"
            await asyncio.sleep(0.02)

    emu.stop_server()
    await core.monitor.get("local", max_age=0)  # the poll that sees it: InstanceOffline
    await settled(lambda: control.last is not None and not control.last.running)
    assert control.service is not None and control.service.running and rec.kinds()[-1] == "server.settings"
    emu.kill()
    control.on_status_change(InstanceOffline("local"))
    await settled(lambda: control.service is not None and not control.service.running)
    assert control.last is not None and control.last.auth is AuthRequired.UNKNOWN
    control.on_status_change(InstanceOffline("elsewhere"))  # not this machine's: nothing to read
    await asyncio.sleep(0)
    assert rec.kinds().count("server.settings") == 2  # one read per change of "local"



async def test_stopping_the_core_ends_a_settings_read_in_flight(lms_home: LmsHome, tmp_path: Path) -> None:
    # A local instance coming online starts a read of LM Studio's settings through `lms`; here an `lms` that hangs.
    # A core stopped meanwhile must end the read and its process, not leave both to a loop about to close.
    hung = tmp_path / "lms"
    hung.write_text("#!/bin/sh\nexec sleep 600\n")
    hung.chmod(0o755)
    emu = lms_home.emulator
    made = Core(Config(instances=[InstanceConfig(name="local", url=emu.api_url)]), lms_path=hung)
    await made.monitor.warm_up()
    before = {t for t in asyncio.all_tasks() if not t.done()}
    made.server_control.on_status_change(InstanceOnline("local", emu.api_url))
    reading = {t for t in asyncio.all_tasks() if not t.done()} - before
    assert reading, "the status change started no read"

    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True) if "sleep" in p.name()]

    while not sleepers():  # the read's `lms` is running
        await asyncio.sleep(0.05)
    await made.stop()
    assert all(t.done() for t in reading), "the settings read is still pending after the core stopped"
    assert not sleepers(), "its `lms` process outlived the core"
