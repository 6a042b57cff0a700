"""Loading the config: the user's file read and validated, with the team profile's layer merged under it.

`TeamProfiles` remembers the team profile each load found, per source (`known_for`), so code on the core's
loop can ask for it without ever fetching; the next config load tries an unusable one again. The core holds
one (`Core.teams`); the command line loads its config with the one it then gives the core.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lmstudio_tray.core.config.schema import DEFAULT_URL, Config, parse_config
from lmstudio_tray.core.config.team import KEY, TeamProfile, merge_layers, overridden_locks, team_source
from lmstudio_tray.core.config.team_fetch import load_team
from lmstudio_tray.core.errors import ConfigError, TeamProfileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)


def load_config(path: Path, teams: TeamProfiles | None = None) -> Config:
    """Read and validate `path`. A missing file means all defaults; a bad one raises ConfigError.

    `teams` remembers the team profile this load found (a new, throwaway one without)."""
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            path, [f"not valid TOML: {exc}; fix the line it names (the file was left untouched)"]
        ) from None
    except RecursionError:
        raise ConfigError(
            path, ["not valid TOML: arrays or tables nested too deeply (the file was left untouched)"]
        ) from None
    # the team profile's layer goes under the user's file
    return parse_config((teams if teams is not None else TeamProfiles()).apply(data), path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file ({exc.strerror}); check its permissions"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path, [f"not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8 (the file was left untouched)"]
        ) from None


class TeamProfiles:
    """The team profile each config load found, per source: None when it and every copy were unusable. A
    failure is remembered too, so the hook path never retries a fetch; the next config load tries again."""

    def __init__(self) -> None:
        self._last: dict[str, TeamProfile | None] = {}

    def apply(self, user: Mapping[str, Any]) -> dict[str, Any]:
        """The loader's hook: the user's raw config with the team layer merged under it (unchanged when no
        team profile is set, or when it and all copies of it are unusable: a warning, never a failed start)."""
        source = team_source(user)
        if source is None:
            return dict(user)
        try:
            profile = load_team(source)
        except TeamProfileError as exc:
            log.warning("%s", exc)
            self._last[source] = None
            return dict(user)
        self._last[source] = profile
        for key in overridden_locks(profile, user):
            log.warning("%s is locked by team profile %r; the value in your config is ignored", key, profile.name)
        # without [[instances]] of their own, members keep the default local server next to the shared ones
        defaults = {} if "instances" in user else {"instances": [{"name": "local", "url": DEFAULT_URL}]}
        return merge_layers(defaults, profile.layer, user, profile.locked)

    def for_config(self, config: Config) -> TeamProfile | None:
        """The team profile a loaded config was built with (None without one, or when it is unusable).

        Loads it when no config load did yet: that may fetch over HTTPS, so never call it on the core's loop
        (see `known_for`)."""
        return self.current(_user(config))

    def known_for(self, config: Config) -> TeamProfile | None:
        """What `for_config` would return, without ever loading: None when the profile was not loaded yet.
        For the core's loop, where `load_config` (and `Core`, for a config it was given) loaded it before."""
        source = team_source(_user(config))
        return self._last.get(source) if source is not None else None

    def current(self, user: Mapping[str, Any]) -> TeamProfile | None:
        """The profile the last load applied for this raw config (loading it when not loaded yet)."""
        source = team_source(user)
        if source is None:
            return None
        if source not in self._last:
            try:
                self._last[source] = load_team(source)
            except TeamProfileError:
                self._last[source] = None
        return self._last[source]

    def known_source(self, config: Callable[[], Config]) -> Callable[[], TeamProfile | None]:
        """What `Actions.team` needs: the profile of the config in effect now (it may change while running),
        as loaded already: the actions and the endpoint ask on the core's loop, where nothing may fetch."""
        return lambda: self.known_for(config())


def _user(config: Config) -> dict[str, Any]:
    return {KEY: config.team_profile} if config.team_profile else {}
