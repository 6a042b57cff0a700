"""What the core gives its parts through their constructors: one record of model use for the shared-instance
guard and the endpoint's router, and the server-control switch of the config in effect."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lmstudio_tray.api.router import make_router
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.runtime import Core


def test_the_guard_reads_the_one_record_of_model_use_the_core_was_given(tmp_path: Path) -> None:
    log = ModelUseLog(tmp_path / "model-use.json")
    core = Core(parse_config({}), lms_path=None, model_uses=log)
    assert core.model_uses is log and core.actions.uses is log
    assert make_router(core).uses is log  # the endpoint's pool router writes it
    fresh = Core(parse_config({}), lms_path=None)
    assert fresh.actions.uses is fresh.model_uses is not None  # also without an endpoint (a CLI command)


def test_server_control_follows_the_config_in_effect() -> None:
    core = Core(parse_config({"actions": {"server_control": False}}), lms_path=None)
    assert core.actions.server_control_enabled() is False
    asyncio.run(core.apply_config(parse_config({"actions": {"server_control": True}})))
    assert core.actions.server_control_enabled() is True
