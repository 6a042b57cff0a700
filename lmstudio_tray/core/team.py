"""Team profiles: a shared TOML file (a path, or an HTTPS URL) layered between the defaults and the
user's own config, and the guard that keeps models that served requests lately on shared instances loaded.

A team profile looks like a config file plus two tables of its own:

    [team]
    name = "ml-team"
    locked = ["validation.policy.not_loaded", "notifications.quiet"]   # members cannot override these
    busy_minutes = 5          # a model that served requests this recently is not switched away lightly

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
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from lmstudio_tray.core import paths
from lmstudio_tray.core.config import DEFAULT_URL, Config, ConfigError, Strict, parse_config
from lmstudio_tray.core.files import atomic_write
from lmstudio_tray.core.models import InstanceSnapshot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)
ENV = "LMSTUDIO_TRAY_TEAM_PROFILE"
KEY = "team_profile"
FETCH_TIMEOUT = 3.0
REFRESH_SECONDS = 600.0  # a fetched URL is reused this long before it is fetched again
TEAM_ONLY = ("team", "models")  # tables of the profile that are not config keys


class TeamMeta(Strict):
    name: str = Field("team", description="Shown in the tray and in `team` commands.")
    locked: list[str] = Field(default_factory=list, description="Dotted config keys members cannot override.")
    busy_minutes: float = Field(5.0, ge=0, le=1440, description="How recently a model must have served requests "
                                "for a switch or unload on a shared instance to need --force.")


class RecommendedModel(Strict):
    key: str
    context_length: int | None = Field(None, ge=256, le=10_000_000)


class ModelPolicy(Strict):
    allowed: list[str] = Field(default_factory=list, description="Models members may use; empty: any.")
    recommended: list[RecommendedModel] = Field(default_factory=list)


@dataclass(frozen=True)
class TeamProfile:
    name: str
    source: str
    layer: dict[str, Any]  # the config part, merged under the user's file
    locked: tuple[str, ...]
    shared_instances: tuple[str, ...]
    allowed: tuple[str, ...]
    recommended: tuple[RecommendedModel, ...]
    busy_minutes: float
    fetched_at: float
    from_cache: bool = False
    warning: str | None = None

    def allows(self, model: str) -> bool:
        return not self.allowed or model in self.allowed

    def context_for(self, model: str) -> int | None:
        return next((r.context_length for r in self.recommended if r.key == model), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "locked": list(self.locked),
            "shared_instances": list(self.shared_instances), "allowed": list(self.allowed),
            "recommended": [r.model_dump() for r in self.recommended], "busy_minutes": self.busy_minutes,
            "fetched_at": self.fetched_at, "from_cache": self.from_cache, "warning": self.warning,
        }


class TeamProfileError(Exception):
    """The profile (and every cached copy) is unusable; the message says why."""


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


# ---- loading ----------------------------------------------------------------------------------------


def cache_file(source: str) -> Path:
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return paths.cache_dir() / "team" / f"{digest}.toml"


def _fetch(source: str) -> str:
    if source.startswith("https://") or source.startswith("http://"):
        if source.startswith("http://"):
            raise TeamProfileError(f"{source}: team profiles are fetched over https:// only")
        import httpx

        try:
            r = httpx.get(source, timeout=FETCH_TIMEOUT, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise TeamProfileError(f"cannot fetch {source} ({type(exc).__name__}: {exc})") from None
        if r.status_code != 200:
            raise TeamProfileError(f"{source} answered HTTP {r.status_code}")
        return r.text
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TeamProfileError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None


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
        fetched_at=fetched_at,
    )


def _cached(source: str, reason: str) -> TeamProfile:
    path = cache_file(source)
    try:
        text = path.read_text(encoding="utf-8")
        fetched_at = path.stat().st_mtime
        profile = parse_profile(text, source, fetched_at=fetched_at)
    except (OSError, TeamProfileError):
        raise TeamProfileError(f"team profile {source} is unusable ({reason}) and there is no good copy "
                               "from before; fix it or unset team_profile") from None
    age = time.strftime("%Y-%m-%d %H:%M", time.localtime(fetched_at))
    warning = f"team profile {source}: {reason}; using the last good copy from {age}"
    log.warning("%s", warning)
    return _replace(profile, from_cache=True, warning=warning)


def _replace(profile: TeamProfile, **changes: Any) -> TeamProfile:
    from dataclasses import replace

    return replace(profile, **changes)


def load_team(source: str, *, refresh_seconds: float = REFRESH_SECONDS) -> TeamProfile:
    """The profile at `source`; when it is unreachable or invalid, the last good copy with a warning."""
    cache = cache_file(source)
    remote = source.startswith("https://")
    if remote and refresh_seconds > 0:
        try:
            fresh = time.time() - cache.stat().st_mtime < refresh_seconds
        except OSError:
            fresh = False
        if fresh:
            try:
                return parse_profile(cache.read_text(encoding="utf-8"), source, fetched_at=cache.stat().st_mtime)
            except (OSError, TeamProfileError):
                pass  # a damaged cache: fetch again below
    try:
        text = _fetch(source)
        profile = parse_profile(text, source, fetched_at=time.time())
    except TeamProfileError as exc:
        reason = str(exc).removeprefix(f"{source}: ")
        return _cached(source, reason)
    try:
        if not cache.exists() or cache.read_text(encoding="utf-8") != text or remote:
            atomic_write(cache, text, 0o600)
    except OSError as exc:  # a read-only cache dir only costs the fallback
        log.info("could not keep a copy of the team profile in %s: %s", cache, exc)
    return profile


def team_source(user: Mapping[str, Any]) -> str | None:
    value = os.environ.get(ENV) or user.get(KEY)
    return str(value).strip() or None if value else None


# What the last config load found per source: None when it and every copy were unusable. A failure is
# remembered too, so the hook path never retries a fetch; the next config load tries again.
_last: dict[str, TeamProfile | None] = {}


def apply_team(user: Mapping[str, Any]) -> dict[str, Any]:
    """The loader's hook: the user's raw config with the team layer merged under it (unchanged when no
    team profile is set, or when it and all copies of it are unusable: a warning, never a failed start)."""
    source = team_source(user)
    if source is None:
        return dict(user)
    try:
        profile = load_team(source)
    except TeamProfileError as exc:
        log.warning("%s", exc)
        _last[source] = None
        return dict(user)
    _last[source] = profile
    for key in overridden_locks(profile, user):
        log.warning("%s is locked by team profile %r; the value in your config is ignored", key, profile.name)
    # without [[instances]] of their own, members keep the default local server next to the shared ones
    defaults = {} if "instances" in user else {"instances": [{"name": "local", "url": DEFAULT_URL}]}
    return merge_layers(defaults, profile.layer, user, profile.locked)


def for_config(config: Config) -> TeamProfile | None:
    """The team profile a loaded config was built with (None without one, or when it is unusable).

    Loads it when no config load did yet: that may fetch over HTTPS, so never call it on the core's loop
    (see `known_for`)."""
    return current_team(_user(config))


def known_for(config: Config) -> TeamProfile | None:
    """What `for_config` would return, without ever loading: None when the profile was not loaded yet.
    For the core's loop, where `load_config` (and `Core`, for a config it was given) loaded it before."""
    source = team_source(_user(config))
    return _last.get(source) if source is not None else None


def _user(config: Config) -> dict[str, Any]:
    return {KEY: config.team_profile} if config.team_profile else {}


def current_team(user: Mapping[str, Any]) -> TeamProfile | None:
    """The profile the last load applied for this config (loading it when not loaded yet)."""
    source = team_source(user)
    if source is None:
        return None
    if source not in _last:
        try:
            _last[source] = load_team(source)
        except TeamProfileError:
            _last[source] = None
    return _last[source]


# ---- last use of models, and the shared-instance guard -----------------------------------------------


def use_file() -> Path:
    return paths.state_dir() / "model-use.json"


@dataclass
class ModelUseLog:
    """When each model last served a request through this machine (router or validate), per instance.

    Kept in a small JSON file so a CLI command in another process sees what the tray's router saw.
    Writes are throttled: a busy model rewrites the file at most every `every` seconds.
    """

    path: Path = field(default_factory=use_file)
    every: float = 5.0
    _data: dict[str, dict[str, float]] | None = None
    _written: float = 0.0

    def read(self) -> dict[str, dict[str, float]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {str(i): {str(m): float(t) for m, t in v.items() if isinstance(t, (int, float))}
                for i, v in raw.items() if isinstance(v, dict)}

    def record(self, instance: str, model: str, when: float | None = None) -> bool:
        """Note a use; returns True when the file should be written now (call `flush`)."""
        if self._data is None:
            self._data = self.read()
        now = time.time() if when is None else when
        previous = self._data.setdefault(instance, {}).get(model, 0.0)
        self._data[instance][model] = max(previous, now)
        return now - self._written >= self.every or previous == 0.0

    def pending(self) -> dict[str, dict[str, float]]:
        """A copy of what is to be written (taken on the caller's thread; `write` may run on another)."""
        self._written = time.time()
        return {i: dict(m) for i, m in (self._data or {}).items()}

    def write(self, data: dict[str, dict[str, float]]) -> None:
        merged = self.read()  # another process may have recorded meanwhile
        for instance, models in data.items():
            for model, t in models.items():
                merged.setdefault(instance, {})[model] = max(t, merged.get(instance, {}).get(model, 0.0))
        atomic_write(self.path, json.dumps(merged), 0o600)

    def flush(self) -> None:
        if self._data is not None:
            self.write(self.pending())

    def last_use(self, instance: str, model: str) -> float | None:
        data = self.read()
        if self._data:
            data = _merge(data, self._data)
        return data.get(instance, {}).get(model)


class SharedInstanceBusy(Exception):
    """A change on a shared instance would take away a model that served requests lately; the message says
    what this machine saw, what it cannot see, and how a person forces it.

    `reason` is the refusal without that hint, for surfaces whose caller may not force (the agent's tools).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}, or repeat with --force once you have checked with the team.")
        self.reason = reason


def guard_change(
    team: TeamProfile | None,
    instance: str,
    models: list[str],
    *,
    force: bool = False,
    uses: ModelUseLog | None = None,
    now: float | None = None,
) -> None:
    """Refuse unloading/switching away `models` on a shared instance while any served requests within the
    team's busy window, unless `force`. Instances the team does not share are never guarded.

    Only this machine's record of use is known (requests that went through its lmstudio-tray), so the
    message says that much and no more: other machines' sessions on the instance are not visible here."""
    if force or team is None or instance not in team.shared_instances or team.busy_minutes <= 0:
        return
    log_ = uses or ModelUseLog()
    moment = time.time() if now is None else now
    busy = []
    for model in models:
        last = log_.last_use(instance, model)
        if last is not None and moment - last < team.busy_minutes * 60:
            busy.append(f"{model} {max(0, int(moment - last))} s ago")
    if busy:
        raise SharedInstanceBusy(
            f"{instance} is shared by team {team.name!r}, and requests through lmstudio-tray on this machine "
            f"last used {' and '.join(busy)}. Requests from other machines are not visible here, so whether "
            f"anyone is using it now is not known. Wait until no request has gone through here for "
            f"{team.busy_minutes:g} minutes"
        )


def models_affected(snapshot: InstanceSnapshot | None, *, unload: str | None = None,
                    switch_to: str | None = None) -> list[str]:
    """Model keys an unload (a key, an instance id, or "all") or a switch would take away."""
    if snapshot is None:
        return []
    loaded = snapshot.loaded_models
    if switch_to is not None:
        # a switch keeps embedding models and the target (see actions.switch)
        return [m.key for m in loaded if m.key != switch_to and m.type not in ("embedding", "embeddings")]
    if unload == "all":
        return [m.key for m in loaded]
    if unload:
        found = snapshot.find_instance(unload)
        if found is not None:
            return [found[0].key]
        return [m.key for m in loaded if m.key == unload]
    return []


def guard_action(config_team: TeamProfile | None, snapshot: InstanceSnapshot | None, *, unload: str | None = None,
                 switch_to: str | None = None, force: bool = False, uses: ModelUseLog | None = None) -> None:
    """The guard for one `models unload/switch` (or the tools' and tray's): SharedInstanceBusy when refused."""
    if snapshot is None:
        return
    guard_change(config_team, snapshot.name, models_affected(snapshot, unload=unload, switch_to=switch_to),
                 force=force, uses=uses)


def known_source(config: Callable[[], Config]) -> Callable[[], TeamProfile | None]:
    """What `Actions.team` needs: the profile of the config in effect now (it may change while running),
    as loaded already: the actions and the endpoint ask on the core's loop, where nothing may fetch."""
    return lambda: known_for(config())
