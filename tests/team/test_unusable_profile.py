"""An unusable team profile costs one failed fetch per config load, never one per validate."""

from __future__ import annotations

import pytest

from lmstudio_tray.core.config import loader, team_fetch
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.errors import TeamProfileError


def test_a_failed_fetch_is_remembered_until_the_next_config_load(monkeypatch: pytest.MonkeyPatch) -> None:
    source = "https://team.invalid/unusable-profile.toml"
    fetches: list[str] = []

    def unreachable(url: str) -> str:
        fetches.append(url)
        raise TeamProfileError(f"{url}: cannot reach the server")

    monkeypatch.setattr(team_fetch, "_fetch", unreachable)
    config = parse_config({"team_profile": source})
    teams = loader.TeamProfiles()  # the core's
    for _ in range(50):  # what 50 validate calls ask
        assert teams.for_config(config) is None
    assert len(fetches) == 1

    teams.apply({"team_profile": source})  # a config load (file change, profile switch) tries again
    assert len(fetches) == 2
    assert teams.for_config(config) is None and len(fetches) == 2
