"""The config's schema (pydantic) and what turns raw data into a `Config`: migration of older layouts,
validation with errors a person can act on, the active profile applied. Reading the file (with the team
profile's layer) is `loader`; every write goes through `store`.

A config file the user wrote is never overwritten because it failed to parse: the error names the
key, the value and the fix, and the file stays as it was.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmstudio_tray.core.errors import ConfigError

CURRENT_VERSION = 2
DEFAULT_URL = "http://127.0.0.1:1234"
DEFAULT_ENDPOINT_PORT = 47823
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Strict(BaseModel):
    """Base of every config table: unknown keys are errors (a typo like `poll_intervall` must not be ignored), and
    assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InstanceConfig(Strict):
    """One `[[instances]]` table: an LM Studio server to monitor, by name and base URL (normalised by
    `normalize_url`)."""

    name: str = Field(description="Short unique name shown in the tray, CLI and plugin messages.")
    url: str = Field(description="Base URL of the LM Studio HTTP server, e.g. http://127.0.0.1:1234.")
    lms_host: str | None = Field(
        default=None,
        description="No effect, kept so older config files stay valid: LM Studio's `lms server start|stop` act "
        "only on the machine they run on, so a remote server is started and stopped on its own machine.",
    )
    timeout: float | None = Field(
        default=None, gt=0, le=120, description="Per-request timeout in seconds (overrides monitor.request_timeout)."
    )
    enabled: bool = Field(default=True, description="Monitor this instance.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return normalize_url(v)


# The docstrings of the table models below are the section intros of docs/configuration.md
# (`devtools/config_docs.py` writes it): they are written for users.
class MonitorConfig(Strict):
    """How often and how patiently each LM Studio instance is polled, and how long a status answer may come from the
    cache."""

    poll_interval: float = Field(1.0, ge=0.1, le=300, description="Seconds between polls while nothing changes.")
    fast_poll_interval: float = Field(
        0.25, ge=0.05, le=60, description="Seconds between polls while a load runs or right after a change."
    )
    fast_window: float = Field(10.0, ge=0, le=600, description="How long polling stays fast after a change.")
    offline_backoff_max: float = Field(
        15.0, ge=0.1, le=3600, description="Longest wait between polls of an offline instance (backoff doubles)."
    )
    cache_max_age: float = Field(
        30.0, ge=0, le=3600, description="Age in seconds after which a status read refreshes the snapshot."
    )
    request_timeout: float = Field(2.0, gt=0, le=120, description="Timeout of each status request to LM Studio.")
    retries: int = Field(1, ge=0, le=5, description="Retries of a failed status request inside one refresh.")
    jit_check_interval: float = Field(
        30.0, ge=1, le=3600, description="How often to re-check whether LM Studio's JIT loading is on."
    )


class Policy(str, Enum):
    """What the plugin does with a request of one verdict category (the values of `validation.policy`)."""

    ALLOW = "allow"  # proceed silently
    WARN = "warn"  # toast, then proceed
    BLOCK = "block"  # the plugin throws: no request reaches LM Studio
    ENSURE = "ensure"  # load the model (time-boxed), then proceed


def _default_policy() -> dict[str, Policy]:
    return {
        "ready": Policy.ALLOW,
        "jit": Policy.ALLOW,
        # with JIT off LM Studio refuses a request for a model until its load has finished: wait for it
        "loading": Policy.ENSURE,
        "not_loaded": Policy.BLOCK,
        "unknown_model": Policy.BLOCK,
        "ambiguous": Policy.WARN,
        "offline": Policy.BLOCK,
        "auth_failed": Policy.BLOCK,
        "context_too_small": Policy.WARN,
        "error": Policy.BLOCK,
    }


VALIDATION_CATEGORIES = tuple(_default_policy())


class ValidationConfig(Strict):
    """What the OpenCode plugin does with a request, per verdict category, and how long it and an `ensure` may wait."""

    policy: dict[str, Policy] = Field(
        default_factory=_default_policy,
        description="What the OpenCode plugin does per verdict category: allow, warn, block or ensure.",
    )
    ensure_timeout: float = Field(
        120.0, gt=0, le=3600,
        description="Longest time an `ensure` may take: its load, or its wait for a load already running.",
    )
    hook_timeout_ms: int = Field(800, ge=50, le=30000, description="How long the plugin waits for a verdict.")

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: dict[str, Policy]) -> dict[str, Policy]:
        unknown = sorted(set(v) - set(VALIDATION_CATEGORIES))
        if unknown:
            raise ValueError(
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                f"known: {', '.join(VALIDATION_CATEGORIES)}"
            )
        merged = _default_policy()
        merged.update(v)
        return merged


NOTIFY_CATEGORIES = (
    "loading", "loaded", "load_failed", "offline", "online", "auth", "server", "session", "downloaded",
    "download_failed", "bench",
)


class NotificationsConfig(Strict):
    """Which desktop notifications appear, and how often."""

    enabled: bool = Field(True, description="Show desktop notifications at all.")
    quiet: bool = Field(
        False, description="Only failures notify (load failed, offline, auth, session failing, download failed)."
    )
    window: float = Field(
        60.0, ge=0, le=86400, description="At most one notification per kind and instance per window (s)."
    )
    loading_threshold: float = Field(
        3.0, ge=0, le=600, description="Only loads expected to take longer than this (s) raise a 'loading' bubble."
    )
    flap_window: float = Field(
        120.0, ge=0, le=86400, description="Offline/online changes within this many seconds collapse into one message."
    )
    categories: dict[str, bool] = Field(
        default_factory=lambda: dict.fromkeys(NOTIFY_CATEGORIES, True),
        description="Per-category switches: " + ", ".join(NOTIFY_CATEGORIES) + ".",
    )

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(v) - set(NOTIFY_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {', '.join(unknown)}; known: {', '.join(NOTIFY_CATEGORIES)}")
        merged = dict.fromkeys(NOTIFY_CATEGORIES, True)
        merged.update(v)
        return merged


class EndpointConfig(Strict):
    """The loopback endpoint the OpenCode plugin talks to."""

    port: int = Field(DEFAULT_ENDPOINT_PORT, ge=0, le=65535, description="Loopback port; 0 picks any free port.")
    max_body_bytes: int = Field(1_000_000, ge=1024, le=64_000_000, description="Largest request body accepted.")


class AnalyticsConfig(Strict):
    """The local store of usage and performance figures behind `lmstudio-tray stats` and the dashboard: whether it
    records, and how much it keeps."""

    enabled: bool = Field(True, description="Record usage and performance in a local SQLite store (never sent, but for "
                          "the anonymised counts of `lmstudio-tray team export` to a team hub).")
    retention_days: float = Field(90.0, gt=0, le=3650, description="Records older than this many days are deleted.")
    max_rows: int = Field(200_000, ge=1000, le=50_000_000, description="Most rows kept per table; the oldest go first.")


class LoggingConfig(Strict):
    """The log file, and the opt-in local telemetry."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    telemetry: bool = Field(
        False,
        description="Opt-in local telemetry: aggregated counts only, written to telemetry.json in the data dir "
        "for you to read and share yourself. Nothing is ever sent over the network.",
    )


class PoolConfig(Strict):
    """One `[[pools]]` table: the name in the router's address and the instances the pool balances over."""

    name: str = Field(description="Name in the router's address: /v1/route/<name>/v1/... on the endpoint.")
    instances: list[str] = Field(min_length=1, description="Names of the [[instances]] this pool balances over.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v


class ActionsConfig(Strict):
    """Which actions the tray, the command line and the plugin's tools offer."""

    server_control: bool = Field(
        True,
        description="Offer server start/stop (tray, CLI, plugin tools) where `lms` can reach the server; "
        "false hides them everywhere.",
    )


class OpenCodeToolsConfig(Strict):
    """What the OpenCode plugin's tools may do when an agent calls them."""

    downloads: Literal["off", "allowlist"] = Field(
        "off",
        description="Whether the lmstudio_download_model tool may start a download: off (never, the default) or "
        "allowlist (only models that match download_allow). Downloads are gigabytes: a person decides.",
    )
    download_allow: list[str] = Field(
        default_factory=list,
        description="Models the tool may download while downloads = \"allowlist\": names or shell-style patterns "
        "(`qwen/*`, `ibm/granite-4-micro`, `https://huggingface.co/lmstudio-community/*`), case-insensitive.",
    )

    @field_validator("download_allow")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        empty = [i for i, p in enumerate(v) if not p.strip()]
        if empty:
            raise ValueError(f"entry {empty[0]} is empty; give a model name or a pattern such as \"qwen/*\"")
        return [p.strip() for p in v]


TOAST_CATEGORIES = ("loading", "loaded", "load_failed", "offline", "auth", "session", "downloaded", "connected")


class OpenCodeToastsConfig(Strict):
    """The toasts the OpenCode plugin shows in OpenCode's window, apart from desktop notifications. A key left unset
    follows [notifications], as toasts did before they had settings of their own."""

    enabled: bool | None = Field(None, description="Show toasts at all; unset: as [notifications] enabled.")
    quiet: bool | None = Field(
        None, description="Only failures toast (load failed, offline, auth); unset: as [notifications] quiet."
    )
    categories: dict[str, bool] = Field(
        default_factory=dict,
        description="Per-category switches: " + ", ".join(TOAST_CATEGORIES) + " (connected: once per session, when "
        "the plugin first reaches the tray). Unset ones follow [notifications] categories, connected is on.",
    )

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(v) - set(TOAST_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {', '.join(unknown)}; known: {', '.join(TOAST_CATEGORIES)}")
        return v

    def effective(self, notifications: NotificationsConfig) -> dict[str, Any]:
        """What the plugin follows: `enabled`, `quiet` and every category's switch, each as set here or, unset,
        as [notifications] has it."""
        categories = {c: notifications.categories.get(c, True) for c in TOAST_CATEGORIES}
        categories.update(self.categories)
        return {
            "enabled": notifications.enabled if self.enabled is None else self.enabled,
            "quiet": notifications.quiet if self.quiet is None else self.quiet,
            "categories": categories,
        }


class OpenCodeConfig(Strict):
    """The OpenCode plugin."""

    tools: OpenCodeToolsConfig = Field(default_factory=OpenCodeToolsConfig)  # type: ignore[arg-type]
    toasts: OpenCodeToastsConfig = Field(default_factory=OpenCodeToastsConfig)  # type: ignore[arg-type]

class FitCheck(str, Enum):
    """What happens before a load when LM Studio's memory estimate says the model will not fit."""

    WARN = "warn"
    REFUSE = "refuse"
    OFF = "off"


class LoadConfig(Strict):
    """Model loads from the tray, the command line and the plugin's tools."""

    fit_check: FitCheck = Field(
        FitCheck.WARN,
        description="Before a load on this machine's LM Studio, ask its memory estimate (`lms load --estimate-only`): "
        "`warn` says when the model will not fit and loads anyway, `refuse` does not load it, `off` skips the "
        "estimate. Remote instances have no estimate; the load says so.",
    )


PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
PROFILE_SECTIONS = ("monitor", "validation", "notifications", "actions")  # tables a profile may override


class ProfileConfig(Strict):
    """One `[profiles.NAME]` table: the overrides that apply while `active_profile` names the profile."""

    description: str = Field("", description="What the profile is for; shown by `profile list` and in the tray.")
    active_instance: str | None = Field(None, description="Replaces active_instance while the profile is active.")
    instances: list[InstanceConfig] | None = Field(
        None,
        description="Replaces the [[instances]] list while the profile is active, as "
        "[[profiles.NAME.instances]] tables; unset keeps the list above.",
    )
    monitor: dict[str, Any] = Field(default_factory=dict, description="Overrides of [monitor] keys.")
    validation: dict[str, Any] = Field(default_factory=dict, description="Overrides of [validation] keys.")
    notifications: dict[str, Any] = Field(default_factory=dict, description="Overrides of [notifications] keys.")
    actions: dict[str, Any] = Field(default_factory=dict, description="Overrides of [actions] keys.")


class Config(Strict):
    """The whole validated config, the schema of `config.toml`; `parse_config` (through `loader.load_config`) gives it
    with the active profile applied.

    The app never changes a `Config` in place: new settings are a new object (see `runtime.Core.apply_config`).
    """

    version: int = Field(CURRENT_VERSION, description="Layout version of this file; migrated automatically.")
    active_instance: str | None = Field(None, description="Instance the CLI and tools act on by default.")
    instances: list[InstanceConfig] = Field(
        default_factory=lambda: [InstanceConfig(name="local", url=DEFAULT_URL)],
        description="LM Studio servers to monitor, as [[instances]] tables with name and url.",
    )
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)  # type: ignore[arg-type]
    validation: ValidationConfig = Field(default_factory=ValidationConfig)  # type: ignore[arg-type]
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)  # type: ignore[arg-type]
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]
    actions: ActionsConfig = Field(default_factory=ActionsConfig)  # type: ignore[arg-type]
    opencode: OpenCodeConfig = Field(default_factory=OpenCodeConfig)  # type: ignore[arg-type]
    loads: LoadConfig = Field(default_factory=LoadConfig)  # type: ignore[arg-type]
    active_profile: str | None = Field(
        None, description="Profile whose overrides apply; unset: the settings as written, without a profile."
    )
    profiles: dict[str, ProfileConfig] = Field(
        default_factory=dict,
        description="Named sets of overrides, as [profiles.NAME] tables; switch with `lmstudio-tray profile use NAME`.",
    )

    @model_validator(mode="after")
    def _profiles_known(self) -> Config:
        bad = sorted(n for n in self.profiles if not PROFILE_NAME_RE.match(n))
        if bad:
            raise ValueError(
                f"profile name(s) {', '.join(map(repr, bad))}: use 1-32 letters, digits, '_' or '-', "
                "starting with a letter or digit"
            )
        if self.active_profile is not None and self.active_profile not in self.profiles:
            known = ", ".join(self.profiles) or "none defined"
            raise ValueError(
                f"active_profile {self.active_profile!r} is not one of the profiles ({known}); "
                "add a [profiles.NAME] table or remove active_profile"
            )
        return self
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)  # type: ignore[arg-type]
    pools: list[PoolConfig] = Field(
        default_factory=list, description="Router pools, as [[pools]] tables with name and instances."
    )
    team_profile: str | None = Field(
        None, description="Path or https:// URL of a team profile (TOML) layered under this file; "
        "$LMSTUDIO_TRAY_TEAM_PROFILE beats it. See docs/multi-instance.md."
    )

    @model_validator(mode="after")
    def _pools_name_instances(self) -> Config:
        names = {i.name for i in self.instances}
        pools = [p.name for p in self.pools]
        dupes = sorted({n for n in pools if pools.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(dupes)}")
        for pool in self.pools:
            missing = [n for n in pool.instances if n not in names]
            if missing:
                raise ValueError(
                    f"pool {pool.name!r} names unknown instance(s) {', '.join(missing)}; "
                    f"add them as [[instances]] or use one of: {', '.join(sorted(names)) or 'none'}"
                )
        return self

    @model_validator(mode="after")
    def _unique_instances(self) -> Config:
        names = [i.name for i in self.instances]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance names must be unique; repeated: {', '.join(dupes)}")
        if self.active_instance is not None and self.active_instance not in names:
            raise ValueError(
                f"active_instance {self.active_instance!r} is not one of the instances ({', '.join(names)})"
            )
        return self

    def instance(self, name: str | None = None) -> InstanceConfig:
        """The named instance, else the active one, else the first."""
        wanted = name or self.active_instance
        if wanted is None:
            if not self.instances:
                raise ConfigError(None, ["no instances configured: add an [[instances]] table with name and url"])
            return self.instances[0]
        for inst in self.instances:
            if inst.name == wanted:
                return inst
        known = ", ".join(i.name for i in self.instances) or "none"
        raise ConfigError(None, [f"no instance named {wanted!r} (configured: {known})"])


def normalize_url(url: str) -> str:
    """`url` stripped, without a trailing `/` or `/v1` (OpenCode names LM Studio by its OpenAI base URL). ValueError
    when it is not an http(s) URL."""
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{url!r} is not an http(s) URL; write it like http://127.0.0.1:1234")
    # OpenCode providers name LM Studio by its OpenAI base (…/v1); the instance is the server itself.
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


# ---- migration -------------------------------------------------------------------------------------


def migrate(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Bring a parsed file of any earlier layout to CURRENT_VERSION. Returns the data and what changed."""
    data = dict(raw)
    notes: list[str] = []
    version = data.get("version", 1)
    if not isinstance(version, int):
        raise ConfigError(None, [f"version = {version!r} must be a whole number (current: {CURRENT_VERSION})"])
    if version > CURRENT_VERSION:
        raise ConfigError(
            None,
            [f"version = {version} was written by a newer lmstudio-tray (this one reads up to {CURRENT_VERSION}); "
             "upgrade lmstudio-tray or remove the version key"],
        )
    if version < 2:
        # 0.0.x layout: one server under [server], poll period in whole seconds.
        server = data.pop("server", None)
        if server is not None and not isinstance(server, dict):
            raise ConfigError(None, [f"server = {server!r} must be a [server] table with url (old layout)"])
        if isinstance(server, dict):
            url = server.get("url", DEFAULT_URL)
            data.setdefault("instances", [{"name": server.get("name", "local"), "url": url}])
            notes.append("[server] became [[instances]]")
            if "poll_seconds" in server:
                seconds = server["poll_seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                    raise ConfigError(None, [f"server.poll_seconds = {seconds!r} must be a number of seconds"])
                data.setdefault("monitor", {})["poll_interval"] = float(seconds)
                notes.append("server.poll_seconds became monitor.poll_interval")
        if "notify" in data:
            data.setdefault("notifications", {})["enabled"] = bool(data.pop("notify"))
            notes.append("notify became notifications.enabled")
        data["version"] = 2
    return data, notes


# ---- reading ---------------------------------------------------------------------------------------


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Validate `data` (any layout) and every profile in it; the result has the active profile applied."""
    try:
        migrated, _ = migrate(dict(data))
    except ConfigError as exc:
        raise ConfigError(path, exc.problems) from None
    try:
        base = Config.model_validate(migrated)
    except ValidationError as exc:
        raise ConfigError(path, [_explain(err, migrated) for err in exc.errors()]) from None
    # A profile is checked as the config it produces, so switching to it can never fail later.
    problems: list[str] = []
    effective = base
    for name, profile in base.profiles.items():
        applied = apply_profile(migrated, name)
        try:
            cfg = Config.model_validate(applied)
        except ValidationError as exc:
            problems += [_explain_profile(name, profile, err, applied) for err in exc.errors()]
            continue
        if name == base.active_profile:
            effective = cfg
    if problems:
        raise ConfigError(path, problems)
    return effective


def apply_profile(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The raw config with profile `name`'s overrides applied (tables merge key by key)."""
    out = copy.deepcopy(dict(data))
    overrides = (data.get("profiles") or {}).get(name) or {}
    if "instances" in overrides:
        out["instances"] = copy.deepcopy(overrides["instances"])
        names = {i.get("name") for i in out["instances"] if isinstance(i, Mapping)}
        if out.get("active_instance") not in names and "active_instance" not in overrides:
            out.pop("active_instance", None)  # the base's choice is not in the profile's list
    if "active_instance" in overrides:
        out["active_instance"] = overrides["active_instance"]
    for section in PROFILE_SECTIONS:
        if isinstance(overrides.get(section), Mapping):
            out[section] = _deep_merge(out.get(section) or {}, overrides[section])
    return out


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, Mapping) and isinstance(
            out.get(key), Mapping) else copy.deepcopy(value)
    return out


def _explain_profile(name: str, profile: ProfileConfig, err: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    text = _explain(err, data)
    loc = err.get("loc", ())
    overridden = {k for k in ("instances", "active_instance") if getattr(profile, k) is not None}
    overridden |= {k for k in PROFILE_SECTIONS if getattr(profile, k)}
    if loc and loc[0] in overridden:
        return f"profiles.{name}.{text}"
    return f"profile {name!r} (its overrides applied to the settings above): {text}"


def _explain(err: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    loc = ""
    for part in err.get("loc", ()):
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    key = loc or "(top level)"
    msg = str(err.get("msg", "invalid"))
    etype = str(err.get("type", ""))
    if etype == "extra_forbidden":
        return f"{key}: unknown key; remove it or check its spelling (see `lmstudio-tray config explain`)"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    msg = msg.removeprefix("Value error, ")
    return f"{key} = {shown}: {msg}"


# ---- writing ---------------------------------------------------------------------------------------


def dump_config(config: Config) -> str:
    """The config as TOML (defaults included), for `config show` and first-time creation."""
    import tomlkit

    data = config.model_dump(mode="json", exclude_none=True)
    return tomlkit.dumps(data)
