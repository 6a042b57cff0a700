"""LM Studio's server settings file, read as the core reads it: written by the emulator the way LM Studio
writes it, after `lms server start` with a bind and CORS."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmstudio_tray.core.lmstudio.lms import Lms
from lmstudio_tray.core.lmstudio.server_config import (
    Reach,
    ServerConfigError,
    load_server_config,
    reach_of,
    read_server_config,
)
from tests.emulator_fixtures import LmsHome


async def test_the_settings_lm_studio_saved(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    config = await load_server_config(lms_home.lmstudio_home)
    assert config is not None
    assert (config.port, config.network_interface, config.reach) == (emu.api_port, "127.0.0.1", Reach.THIS_MACHINE)
    assert config.cors is False and config.jit is True and config.auto_start is True
    assert config.source == lms_home.lmstudio_home / ".internal" / "http-server-config.json"
    await Lms(lms_home.lms).start_server(bind="0.0.0.0", cors=True)
    emu.update(jit=False)
    config = await load_server_config(lms_home.lmstudio_home)
    assert config is not None
    assert config.network_interface == "0.0.0.0" and config.reach is Reach.LOCAL_NETWORK
    assert config.cors is True and config.jit is False


async def test_the_default_home_is_lm_studios(lms_home: LmsHome) -> None:
    # HOME is the fixture's, so LM Studio's home is ~/.lmstudio, resolved like its CLI does
    config = await load_server_config()
    assert config is not None and config.port == lms_home.emulator.api_port


def test_no_file_means_the_server_was_never_started(tmp_path: Path) -> None:
    assert read_server_config(tmp_path) is None


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "is not valid JSON"),
    ('{"port": "1234"}', "has no valid `port`"),
    ('{"port": 70000}', "has no valid `port`"),
    ("[]", "has no valid `port`"),
])
def test_a_broken_file_is_named_with_what_is_wrong(lms_home: LmsHome, text: str, fragment: str) -> None:
    path = lms_home.lmstudio_home / ".internal" / "http-server-config.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ServerConfigError, match=fragment) as err:
        read_server_config(lms_home.lmstudio_home)
    assert str(path) in str(err.value)


def test_reach() -> None:
    assert [reach_of(a) for a in ("127.0.0.1", "127.0.0.2", "::1", "localhost")] == [Reach.THIS_MACHINE] * 4
    assert [reach_of(a) for a in ("0.0.0.0", "192.168.1.20", "::")] == [Reach.LOCAL_NETWORK] * 3
