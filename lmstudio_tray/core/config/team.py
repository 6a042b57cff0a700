"""Team profiles: a shared TOML file (a path, or an HTTPS URL) layered between the defaults and the
user's own config. Fetching and caching the file is `team_fetch`; the guard that keeps models in use on
shared instances is `core.control.shared_guard`.

A team profile looks like a config file plus two tables of its own:

    [team]
    name = "ml-team"
    locked = ["validation.policy.not_loaded", "notifications.quiet"]   # members cannot override these
    busy_minutes = 5          # a model that served requests this recently is not switched away lightly
    hub = "https://hub.lan:8765"   # optional: the team hub, where members see each other's model use

    [models]
    allowed = ["qwen/qwen3-4b-2507", "google/gemma-3-12b"]             # empty: everything is allowed
    recommended = [{ key = "qwen/qwen3-4b-2507", context_length = 32768 }]

    [[instances]]             # shared instances: every member monitors them
    name = "gpu-box"
    url = "http://10.0.0.7:1234"

    [notifications]           # defaults for the members
    quiet = true

The rest of the file is config (instances, pools, monitor, validation, notifications, ...), merged under
the user's file: the user's values win except for the locked keys. An invalid or unreachable profile
falls back to the last good copy (kept in the cache dir) with a warning; nothing fails to start for it.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError

from lmstudio_tray.core.config.schema import Strict, parse_config
from lmstudio_tray.core.errors import ConfigError, TeamProfileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)
ENV = "LMSTUDIO_TRAY_TEAM_PROFILE"
KEY = "team_profile"
TEAM_ONLY = ("team", "models")  # tables of the profile that are not config keys


class TeamMeta(Strict):
    """The profile's `[team]` table: its name, the keys members cannot override, and the busy window of the
    shared-instance guard."""

    name: str = Field("team", description="Shown in the tray and in `team` commands.")
    locked: list[str] = Field(default_factory=list, description="Dotted config keys members cannot override.")
    busy_minutes: float = Field(5.0, ge=0, le=1440, description="How recently a model must have served requests "
                                "for a switch or unload on a shared instance to need --force.")
    hub: str | None = Field(None, description="The team hub's URL (`lmstudio-tray serve --hub`): members report "
                            "which models they use there and read the others'. https:// unless on this machine.")
    hub_every: float = Field(5.0, ge=0.2, le=3600, description="Seconds between two reports to the team hub.")


class RecommendedModel(Strict):
    """One entry of `[models] recommended`: a model key and the context length members load it with by default."""

    key: str
    context_length: int | None = Field(None, ge=256, le=10_000_000)


class ModelPolicy(Strict):
    """The profile's `[models]` table: the models members may use (empty: any) and the recommended ones."""

    allowed: list[str] = Field(default_factory=list, description="Models members may use; empty: any.")
    recommended: list[RecommendedModel] = Field(default_factory=list)


@dataclass(frozen=True)
class TeamProfile:
    """A parsed team profile: its config layer, locked keys, shared instances and model rules, with where and when it
    was read (`from_cache` and `warning` when the last good copy stands in)."""

    name: str
    source: str
    layer: dict[str, Any]  # the config part, merged under the user's file
    locked: tuple[str, ...]
    shared_instances: tuple[str, ...]
    allowed: tuple[str, ...]
    recommended: tuple[RecommendedModel, ...]
    busy_minutes: float
    fetched_at: float
    hub: str | None = None
    hub_every: float = 5.0
    from_cache: bool = False
    warning: str | None = None

    def allows(self, model: str) -> bool:
        """Whether members may use `model` (always, when the profile names no allowed models)."""
        return not self.allowed or model in self.allowed

    def context_for(self, model: str) -> int | None:
        """The recommended context length of `model`, or None when the profile recommends none."""
        return next((r.context_length for r in self.recommended if r.key == model), None)

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON data, for `team status --json`."""
        return {
            "name": self.name, "source": self.source, "locked": list(self.locked),
            "shared_instances": list(self.shared_instances), "allowed": list(self.allowed),
            "recommended": [r.model_dump() for r in self.recommended], "busy_minutes": self.busy_minutes,
            "fetched_at": self.fetched_at, "from_cache": self.from_cache, "warning": self.warning, "hub": self.hub,
        }


# ---- layering ---------------------------------------------------------------------------------------


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in over.items():
            out[key] = _merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def _merge_named(base: list[Any], over: list[Any]) -> list[Any]:
    """Lists of named tables ([[instances]], [[pools]]): entries merge by name, new names are appended."""
    out = [copy.deepcopy(e) for e in base]
    index = {e.get("name"): i for i, e in enumerate(out) if isinstance(e, Mapping)}
    for entry in over:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if name is not None and name in index:
            out[index[name]] = _merge(out[index[name]], entry)
        else:
            out.append(copy.deepcopy(entry))
    return out


def _get(data: Mapping[str, Any], parts: list[str]) -> tuple[bool, Any]:
    current: Any = data
    for part in parts:
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _set(data: dict[str, Any], parts: list[str], value: Any, present: bool) -> None:
    current = data
    for part in parts[:-1]:
        nxt = current.get(part)
        if not isinstance(nxt, dict):
            if not present:
                return
            nxt = current[part] = {}
        current = nxt
    if present:
        current[parts[-1]] = copy.deepcopy(value)
    else:
        current.pop(parts[-1], None)


def merge_layers(
    defaults: Mapping[str, Any], team: Mapping[str, Any], user: Mapping[str, Any], locked: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """defaults < team < user, except that each locked dotted key keeps the team's value (or the default's,
    when the team does not set it). Named lists ([[instances]], [[pools]]) merge entry by entry."""
    merged: dict[str, Any] = {}
    for layer in (defaults, team, user):
        for key, value in layer.items():
            if key in ("instances", "pools") and isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = _merge_named(merged[key], value)
            elif key in merged:
                merged[key] = _merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    for key in locked:
        parts = [p for p in key.split(".") if p]
        if not parts:
            continue
        present, value = _get(team, parts)
        if not present:
            present, value = _get(defaults, parts)
        _set(merged, parts, value, present)
    return merged


def overridden_locks(team: TeamProfile, user: Mapping[str, Any]) -> list[str]:
    """Locked keys the user's file tries to set: they are ignored, and the user should know."""
    return [k for k in team.locked if _get(user, [p for p in k.split(".") if p])[0]]


# ---- parsing ----------------------------------------------------------------------------------------


def parse_profile(text: str, source: str, *, fetched_at: float) -> TeamProfile:
    """A TeamProfile from TOML text; TeamProfileError naming the problem when it is not a valid one."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TeamProfileError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise TeamProfileError(f"{source}: not valid TOML: arrays or tables nested too deeply") from None
    try:
        meta = TeamMeta.model_validate(data.get("team") or {})
        models = ModelPolicy.model_validate(data.get("models") or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TeamProfileError(f"{source}: {problems}") from None
    layer = {k: v for k, v in data.items() if k not in TEAM_ONLY}
    if "instances" not in layer:
        layer["instances"] = []  # a profile without instances must not drop the user's default `local`
    try:
        # the layer must be a valid config on its own, so no member's start can fail because of it
        parse_config({**layer, "instances": layer["instances"] or [{"name": "x", "url": "http://127.0.0.1:1"}]})
    except ConfigError as exc:
        raise TeamProfileError(f"{source}: {'; '.join(exc.problems)}") from None
    if not layer["instances"]:
        del layer["instances"]
    shared = tuple(str(i.get("name")) for i in data.get("instances", []) if isinstance(i, Mapping))
    return TeamProfile(
        name=meta.name, source=source, layer=layer, locked=tuple(meta.locked), shared_instances=shared,
        allowed=tuple(models.allowed), recommended=tuple(models.recommended), busy_minutes=meta.busy_minutes,
        fetched_at=fetched_at, hub=meta.hub, hub_every=meta.hub_every,
    )


def team_source(user: Mapping[str, Any]) -> str | None:
    """Where the team profile comes from: `$LMSTUDIO_TRAY_TEAM_PROFILE`, else the user's `team_profile` key; None when
    neither is set (or blank)."""
    value = os.environ.get(ENV) or user.get(KEY)
    return str(value).strip() or None if value else None
