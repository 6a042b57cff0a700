"""Shipped bundles of settings a user applies to the config or starts a profile from.

A preset has the shape of a profile's overrides (section -> keys), so applying it to the base config
and starting a profile from it are the same edit with a different prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.core.config.schema import VALIDATION_CATEGORIES


@dataclass(frozen=True)
class Preset:
    """A shipped bundle of settings: `overrides` maps a section to its keys (a profile's shape); `summary` is the line
    `config preset` lists, `details` the longer text of docs/configuration.md."""

    name: str
    summary: str
    details: str
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def changes(self, profile: str | None = None) -> dict[str, Any]:
        """Dotted keys for `store.update_config`, under `profiles.<profile>.` when given."""
        prefix = f"profiles.{profile}." if profile else ""
        out: dict[str, Any] = {}
        for section, keys in self.overrides.items():
            _flatten(keys, f"{prefix}{section}.", out)
        return out


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping):
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "strict",
            "block every request whose model is not loaded and ready",
            "Every validation category except `ready` blocks: JIT loads, loads in progress, unloaded or unknown "
            "models, ambiguous names, too small a context, offline or unauthorised servers. OpenCode sends "
            "nothing to LM Studio unless the model is loaded right now.",
            {"validation": {"policy": {c: ("allow" if c == "ready" else "block") for c in VALIDATION_CATEGORIES}}},
        ),
        Preset(
            "jit-friendly",
            "let LM Studio load models on demand; load unloaded models first",
            "`jit` proceeds (LM Studio loads the model for the request), `not_loaded` becomes `ensure` (the tray "
            "loads the model, time-boxed by validation.ensure_timeout, then lets the request through), a request "
            "for a model that is loading waits for that load (`loading` = `ensure`: sent at once, it could start "
            "a second copy of the model), an ambiguous name only warns.",
            {"validation": {"policy": {
                "jit": "allow", "loading": "ensure", "not_loaded": "ensure", "ambiguous": "warn",
            }}},
        ),
        Preset(
            "quiet",
            "only failures raise a notification",
            "notifications.quiet = true: load failed, offline, auth and failing sessions still notify; loading, "
            "loaded, back online and server started/stopped stay silent.",
            {"notifications": {"quiet": True}},
        ),
        Preset(
            "remote",
            "a server across the network: longer timeouts, no server start/stop",
            "Status requests wait up to 10 s and poll every 2 s, an offline server is retried at most every "
            "60 s, the plugin waits 3 s for a verdict and `ensure` loads may take 10 minutes. Server start/stop "
            "is hidden everywhere (actions.server_control = false).",
            {
                "monitor": {"request_timeout": 10.0, "poll_interval": 2.0, "offline_backoff_max": 60.0},
                "validation": {"hook_timeout_ms": 3000, "ensure_timeout": 600.0},
                "actions": {"server_control": False},
            },
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset named `name`; KeyError listing the presets when there is none."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"no preset named {name!r}; presets: {', '.join(PRESETS)}") from None
