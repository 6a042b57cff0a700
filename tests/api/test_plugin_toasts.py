"""`GET /v1/plugin`'s toasts follow `[opencode.toasts]`; a key left unset follows `[notifications]`, as toasts did
before they had settings of their own. The categories the plugin toasts under are the ones the config knows."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.core.config.schema import TOAST_CATEGORIES, parse_config
from lmstudio_tray.core.errors import ConfigError
from tests.api.conftest import Api
from tests.opencode.conftest import PLUGIN_FILE


async def toasts(api: Api) -> dict[str, Any]:
    r = await api.client.get("/v1/plugin")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["toasts"]
    return data


async def test_defaults_show_every_toast(api: Api) -> None:
    assert await toasts(api) == {"enabled": True, "quiet": False, "categories": dict.fromkeys(TOAST_CATEGORIES, True)}


async def test_toasts_have_settings_of_their_own(api_factory: Callable[..., Api]) -> None:
    api = api_factory(notifications={"enabled": False, "quiet": True, "categories": {"loading": False}},
                      opencode={"toasts": {"enabled": True, "quiet": False, "categories": {"connected": False}}})
    t = await toasts(api)
    assert t["enabled"] is True and t["quiet"] is False
    assert t["categories"]["connected"] is False
    assert t["categories"]["loading"] is False  # not set for toasts: as [notifications] has it
    assert t["categories"]["loaded"] is True


async def test_someone_who_turned_notifications_off_gets_no_toasts_until_they_set_them(
    api_factory: Callable[..., Api],
) -> None:
    api = api_factory(notifications={"enabled": False, "quiet": True})
    t = await toasts(api)
    assert t["enabled"] is False and t["quiet"] is True


def test_unknown_toast_categories_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown categories popups; known: loading"):
        parse_config({"opencode": {"toasts": {"categories": {"popups": False}}}})


def test_every_category_the_plugin_toasts_under_is_a_config_key() -> None:
    used = set(re.findall(r'toast\(\s*"(\w+)"', Path(PLUGIN_FILE).read_text()))
    used |= set(re.findall(r'toast\(v\.category === "\w+" \? "(\w+)" : "(\w+)"', Path(PLUGIN_FILE).read_text())[0])
    assert "connected" in used and "loading" in used
    assert used <= set(TOAST_CATEGORIES), used - set(TOAST_CATEGORIES)
