"""Actions with a team profile, against the emulator: the shared-instance guard sits in Actions itself (so the
tray, the CLI and the tools refuse the same way), and loads without a context use the team's default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lmstudio_tray.core.config import team, team_fetch
from lmstudio_tray.core.control import model_use
from lmstudio_tray.core.errors import ActionError
from tests.core.helpers import make_core
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"
GEMMA = "google/gemma-3-12b"


def profile(tmp_path: Path) -> team.TeamProfile:
    path = tmp_path / "team.toml"
    path.write_text('[team]\nname = "ml"\nbusy_minutes = 2\n'
                    '[models]\nrecommended = [{ key = "google/gemma-3-12b", context_length = 12288 }]\n'
                    '[[instances]]\nname = "local"\nurl = "http://127.0.0.1:9"\n')
    return team_fetch.load_team(str(path))


async def test_a_loaded_copy_in_use_is_guarded_by_its_instance_id(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    second = emu.load(QWEN)  # qwen/qwen3-4b-2507:2
    core = make_core(emu.api_url)
    p = profile(tmp_path)
    uses = model_use.ModelUseLog(tmp_path / "use.json")
    core.actions.team = lambda: p
    core.actions.uses = uses
    try:
        await core.monitor.warm_up()
        uses.record("local", QWEN, time.time() - 30)
        with pytest.raises(ActionError) as err:
            await core.actions.unload("local", second)
        assert err.value.kind == "shared_busy" and "30 s ago" in str(err.value)
        assert len(emu.loaded()) == 2
        assert (await core.actions.unload("local", second, force=True)).unloaded == (second,)

        # outside the busy window nobody is cut off: no force needed
        fresh = model_use.ModelUseLog(tmp_path / "other.json")
        fresh.record("local", QWEN, time.time() - 2 * 60 - 5)
        core.actions.uses = fresh
        assert (await core.actions.unload_all("local")).unloaded == (QWEN,)
    finally:
        await core.monitor.stop()


async def test_a_kept_model_in_use_does_not_stop_a_switch_on_a_shared_instance(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # the session calling the tool is the one using qwen lately: the switch keeps qwen, so it cuts off nobody
    emu = emulator_factory()
    emu.load(QWEN)
    core = make_core(emu.api_url)
    p = profile(tmp_path)
    uses = model_use.ModelUseLog(tmp_path / "use.json")
    core.actions.team = lambda: p
    core.actions.uses = uses
    try:
        await core.monitor.warm_up()
        uses.record("local", QWEN, time.time() - 30)
        with pytest.raises(ActionError) as err:
            await core.actions.switch("local", GEMMA)
        assert err.value.kind == "shared_busy"
        result = await core.actions.switch("local", GEMMA, keep=[QWEN])
        assert result.kept == (QWEN,)
        assert sorted(i["modelKey"] for i in emu.loaded()) == sorted([GEMMA, QWEN])
        # ... and unloading what the session does not use goes ahead too
        assert (await core.actions.unload_all("local", keep=[QWEN])).unloaded == (GEMMA,)
    finally:
        await core.monitor.stop()


async def test_loads_without_a_context_use_the_teams_default(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = emulator_factory()
    emu.load(GEMMA, context_length=4096)
    core = make_core(emu.api_url)
    p = profile(tmp_path)
    core.actions.team = lambda: p
    try:
        await core.monitor.warm_up()
        # already loaded: no second copy just because the team recommends another context
        r = await core.actions.load("local", GEMMA)
        assert r.already_loaded and r.context_length == 4096
        emu.unload_all()
        await core.monitor.get("local", max_age=0)
        r = await core.actions.load("local", GEMMA)
        assert r.context_length == 12288
        assert emu.loaded()[0]["contextLength"] == 12288
        r = await core.actions.load("local", QWEN)  # no recommendation: LM Studio's default
        assert {i["modelKey"]: i["contextLength"] for i in emu.loaded()}[QWEN] != 12288
    finally:
        await core.monitor.stop()


async def test_a_broken_team_source_does_not_stop_actions(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory()
    emu.load(QWEN)
    core = make_core(emu.api_url)

    def broken() -> team.TeamProfile | None:
        raise OSError("network drive gone")

    core.actions.team = broken
    try:
        await core.monitor.warm_up()
        assert (await core.actions.unload("local", QWEN)).unloaded == (QWEN,)
    finally:
        await core.monitor.stop()


async def test_a_core_applies_its_configs_team_profile_without_any_surface(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # the tray's core, even when its endpoint could not start: the team's default context still applies
    from lmstudio_tray.core.config.schema import parse_config
    from lmstudio_tray.core.runtime import Core

    emu = emulator_factory()
    profile(tmp_path)
    core = Core(parse_config({"instances": [{"name": "local", "url": emu.api_url}],
                              "team_profile": str(tmp_path / "team.toml")}), lms_path=None)
    try:
        await core.monitor.warm_up()
        assert (await core.actions.load("local", GEMMA)).context_length == 12288
    finally:
        await core.monitor.stop()
