"""Tray preferences that live in the config file: notifications, their types, validation, profile,
active instance.

A click saves at once through the config save API (comments kept, validated, atomic, backup), into the
active profile when that profile sets the key (so the change takes effect), and the running core
applies the new settings without a restart. No GUI imports: tests drive it without a display.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from lmstudio_tray.core.config.loader import TeamProfiles
from lmstudio_tray.core.config.presets import PRESETS
from lmstudio_tray.core.config.schema import VALIDATION_CATEGORIES, Config, Policy, ValidationConfig, dump_config
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.support.files import atomic_write

log = logging.getLogger(__name__)

Submit = Callable[[Coroutine[Any, Any, Any]], "concurrent.futures.Future[Any]"]
VALIDATION_CHOICES = ("default", "strict", "jit-friendly")


def validation_policy(choice: str) -> dict[str, str]:
    """The full policy a tray validation choice stands for."""
    policy = {k: v.value for k, v in ValidationConfig().policy.items()}
    if choice != "default":
        preset_policy = PRESETS[choice].overrides.get("validation", {}).get("policy", {})
        policy.update({k: str(v) for k, v in preset_policy.items()})
    return policy


def validation_choice(config: Config) -> str | None:
    current = {k: v.value for k, v in config.validation.policy.items()}
    for choice in VALIDATION_CHOICES:
        if validation_policy(choice) == current:
            return choice
    return None


def menu_prefs(config: Config, teams: TeamProfiles) -> dict[str, Any]:
    """The MenuPrefs fields that come from the config (and the team profile it names, as `teams` loaded it:
    the core's `teams`)."""
    return {
        "notifications": config.notifications.enabled,
        "notify_categories": tuple(config.notifications.categories.items()),
        "validation": validation_choice(config),
        "validation_choices": VALIDATION_CHOICES,
        "profile": config.active_profile,
        "profiles": tuple((name, p.description) for name, p in config.profiles.items()),
        **instance_prefs(config, teams),
    }


def instance_prefs(config: Config, teams: TeamProfiles) -> dict[str, Any]:
    """Configured instances, the active one, and which the team profile shares (as the core loaded it:
    this runs on the core's loop when settings change, where nothing may fetch)."""
    profile = teams.known_for(config)
    names = tuple(i.name for i in config.instances)
    return {
        "instances": names,
        "active_instance": config.active_instance if config.active_instance in names else (names[0] if names else None),
        "shared_instances": profile.shared_instances if profile else (),
        "team": profile.name if profile else None,
        "busy_minutes": profile.busy_minutes if profile else 0.0,
    }


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("applying the new settings failed", exc_info=future.exception())


class ConfigPreferences:
    def __init__(self, core: Core, path: Path, submit: Submit) -> None:
        self.core = core
        self.path = path
        self._submit = submit

    def _apply(self, new: Config) -> dict[str, Any]:
        # The file is written already; the core switches on its own loop (the click must not wait).
        future = self._submit(self.core.apply_config(new))
        future.add_done_callback(_log_failure)
        return menu_prefs(new, self.core.teams)

    def _ensure_file(self) -> None:
        # Without a file the running settings came from defaults (or demo mode): write them first, so
        # saving one preference does not reset everything else to the defaults.
        if not self.path.exists():
            atomic_write(self.path, dump_config(self.core.config))

    def save(self, changes: dict[str, Any]) -> dict[str, Any]:
        # the file editor (tomlkit, ~1.8 MiB) loads on the first change, not in every tray that never saves
        from lmstudio_tray.core.config.profiles import save_preference

        self._ensure_file()
        return self._apply(save_preference(self.path, self.core.config, changes))

    def set_notifications(self, enabled: bool) -> None:
        self.save({"notifications.enabled": enabled})

    def set_notification_category(self, category: str, enabled: bool) -> dict[str, Any]:
        return self.save({f"notifications.categories.{category}": enabled})

    def set_validation(self, choice: str) -> dict[str, Any]:
        if choice not in VALIDATION_CHOICES:
            raise ValueError(f"unknown validation choice {choice!r}; choose one of {', '.join(VALIDATION_CHOICES)}")
        policy = validation_policy(choice)
        return self.save({f"validation.policy.{c}": Policy(policy[c]) for c in VALIDATION_CATEGORIES})

    def use_instance(self, name: str) -> dict[str, Any]:
        """The instance the CLI and the OpenCode tools act on; into the active profile when it sets one."""
        config = self.core.config
        names = [i.name for i in config.instances]
        if name not in names:
            raise ValueError(f"no instance named {name!r} in the config (configured: {', '.join(names)})")
        key = "active_instance"
        profile = config.profiles.get(config.active_profile or "")
        if profile is not None and profile.active_instance is not None:
            key = f"profiles.{config.active_profile}.active_instance"
        return self.save({key: name})

    def use_profile(self, name: str | None) -> dict[str, Any]:
        from lmstudio_tray.core.config.profiles import use_profile

        self._ensure_file()
        return self._apply(use_profile(self.path, name, self.core.config))
