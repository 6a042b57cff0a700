"""Profiles: named sets of overrides in the config file, which one is active, and where a change goes.

The file holds the base settings plus `[profiles.NAME]` tables; `active_profile` names the one that
applies. Loading the file (`loader.load_config`) already applies it, so everything downstream sees the
effective settings. Switching writes `active_profile` through the save API; a running core notices the
file changed and applies the new settings without a restart (`runtime.Core.apply_config`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.presets import get_preset
from lmstudio_tray.core.config.schema import PROFILE_SECTIONS, Config, ProfileConfig
from lmstudio_tray.core.config.store import DELETE, get_in, update_config
from lmstudio_tray.core.errors import ConfigError


@dataclass(frozen=True)
class ProfileInfo:
    """One profile as `profile list` and `profile show` present it: whether it is active and what it overrides."""

    name: str
    description: str
    active: bool
    overrides: dict[str, Any]  # dotted key -> value, what the profile changes

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON data (`profile list --json`, `profile show --json`)."""
        return {"name": self.name, "description": self.description, "active": self.active,
                "overrides": self.overrides}


def overrides_of(profile: ProfileConfig) -> dict[str, Any]:
    """What a profile changes, as dotted keys (instances as a list of names and urls)."""
    out: dict[str, Any] = {}
    if profile.instances is not None:
        out["instances"] = [f"{i.name} {i.url}" for i in profile.instances]
    if profile.active_instance is not None:
        out["active_instance"] = profile.active_instance
    for section in PROFILE_SECTIONS:
        _flatten(getattr(profile, section), f"{section}.", out)
    return out


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


def list_profiles(config: Config) -> list[ProfileInfo]:
    """Every profile of `config`, in file order, marking the active one."""
    return [
        ProfileInfo(name, p.description, name == config.active_profile, overrides_of(p))
        for name, p in config.profiles.items()
    ]


def get_profile(config: Config, name: str) -> ProfileInfo:
    """The profile `name` of `config`; ConfigError listing the profiles (and how to start one) when there is none."""
    for info in list_profiles(config):
        if info.name == name:
            return info
    raise ConfigError(None, [f"no profile named {name!r}; profiles: {', '.join(config.profiles) or 'none defined'}"
                             " (start one with `lmstudio-tray config preset NAME --profile NEW`)"])


def use_profile(path: Path, name: str | None, current: Config | None = None) -> Config:
    """Make `name` the active profile (None: no profile). Returns the new effective config."""
    if name is not None and current is not None:
        get_profile(current, name)  # a clear message before touching the file
    return update_config(path, {"active_profile": DELETE if name is None else name})


def preference_key(config: Config, key: str) -> str:
    """Where a setting changed from the tray goes: the active profile when it overrides the key (so the
    change takes effect), otherwise the base settings."""
    name = config.active_profile
    if name is None or name not in config.profiles:
        return key
    profile = config.profiles[name]
    section, _, rest = key.partition(".")
    if section in PROFILE_SECTIONS and rest:
        try:
            get_in(getattr(profile, section), rest)
        except KeyError:
            return key
        return f"profiles.{name}.{key}"
    return key


def save_preference(path: Path, config: Config, changes: Mapping[str, Any]) -> Config:
    """Persist tray preferences (dotted key -> value) where they take effect; returns the new config."""
    return update_config(path, {preference_key(config, k): v for k, v in changes.items()})


def apply_preset(path: Path, preset: str, profile: str | None = None, *, description: str | None = None) -> Config:
    """Write a preset's settings into the base config, or into `profiles.<profile>` (created if new)."""
    chosen = get_preset(preset)
    changes = chosen.changes(profile)
    if profile is not None and (description or profile not in load_config(path).profiles):
        changes[f"profiles.{profile}.description"] = description or f"{chosen.name} preset: {chosen.summary}"
    return update_config(path, changes)
