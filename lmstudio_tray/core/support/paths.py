"""Every path the app writes or reads, through platformdirs (one place to look)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from lmstudio_tray import APP_NAME

CONFIG_ENV = "LMSTUDIO_TRAY_CONFIG"
ENDPOINT_FILE_ENV = "LMSTUDIO_TRAY_ENDPOINT_FILE"


def _dirs() -> platformdirs.PlatformDirs:
    # appauthor=False keeps Windows paths as %LOCALAPPDATA%\lmstudio-tray rather than ...\Author\lmstudio-tray
    return platformdirs.PlatformDirs(APP_NAME, appauthor=False)


def config_dir() -> Path:
    """The user's config dir: `config.toml` lives here unless `--config` or `$LMSTUDIO_TRAY_CONFIG` say otherwise."""
    return Path(_dirs().user_config_dir)


def state_dir() -> Path:
    """The state dir: the endpoint's discovery file, single-instance locks, load marks, the model-use record."""
    return Path(_dirs().user_state_dir)


def data_dir() -> Path:
    """The data dir: the analytics store, the telemetry counts, the token file when no keyring works."""
    return Path(_dirs().user_data_dir)


def log_dir() -> Path:
    """The log dir: the rotating log file and its backups."""
    return Path(_dirs().user_log_dir)


def cache_dir() -> Path:
    """The cache dir: the last good copies of team profiles."""
    return Path(_dirs().user_cache_dir)


def config_file(override: str | os.PathLike[str] | None = None) -> Path:
    """`--config PATH` beats `$LMSTUDIO_TRAY_CONFIG`, which beats the platform config dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return config_dir() / "config.toml"


def endpoint_file() -> Path:
    """`$LMSTUDIO_TRAY_ENDPOINT_FILE` (honoured by the OpenCode plugin too) beats the state dir."""
    env = os.environ.get(ENDPOINT_FILE_ENV)
    if env:
        return Path(env).expanduser()
    return state_dir() / "endpoint.json"


def opencode_config_dir() -> Path:
    """OpenCode's global config dir. OpenCode follows XDG on every platform (not platformdirs):
    `$XDG_CONFIG_HOME/opencode`, else `~/.config/opencode`."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "opencode"


def lmstudio_home() -> Path:
    """LM Studio's own home, resolved the way its CLI does it."""
    home = Path.home()
    pointer = home / ".lmstudio-home-pointer"
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    if text:
        return Path(text).expanduser()
    legacy = home / ".cache" / "lm-studio"
    if legacy.is_dir():
        return legacy
    return home / ".lmstudio"
