"""What every command shares: logging, reading the config, running the core for one command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from lmstudio_tray.core.config.loader import TeamProfiles, load_config
from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.errors import ConfigError
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.logs import configure_logging, register_secret, set_file_level
from lmstudio_tray.core.support.secrets import SecretStore, open_store

T = TypeVar("T")
log = logging.getLogger("lmstudio_tray.cli")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def configure_cli_logging(level: str | None) -> None:
    """JSON lines to the rotating log file, plain text on stderr (warnings only unless --log-level)."""
    configure_logging(level)


class RegisteringStore:
    """Wraps the token store so every token read or written is known to the log redaction."""

    def __init__(self, inner: SecretStore | None = None) -> None:
        self._inner = inner
        self.backend = "not opened yet"

    @property
    def inner(self) -> SecretStore:
        if self._inner is None:
            self._inner = open_store()
            self.backend = self._inner.backend
        return self._inner

    def get(self, name: str) -> str | None:
        inner = self.inner
        value = inner.get(name)
        register_secret(value)
        log.debug("API token of %s: %s", name, f"found in {inner.backend}" if value else "none")
        return value

    def set(self, name: str, token: str) -> None:
        register_secret(token)
        self.inner.set(name, token)

    def delete(self, name: str) -> None:
        self.inner.delete(name)


def config_path(args: argparse.Namespace) -> Path:
    return paths.config_file(getattr(args, "config", None))


def read_config(args: argparse.Namespace, teams: TeamProfiles | None = None) -> Config:
    """The config, or exit 2 with the problems spelled out (the file is never touched). `teams` remembers the
    team profile the load found: give the same to a core built from this config (it then never loads again)."""
    path = config_path(args)
    try:
        config = load_config(path, teams)
    except ConfigError as exc:
        print(f"lmstudio-tray: the config file {path} has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Fix them (or run with --config to use another file); nothing was changed.", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    if getattr(args, "log_level", None) is None:
        set_file_level(config.logging.level)
    log.debug("config %s: %d instance(s)", path if path.exists() else f"{path} (absent, defaults)",
              len(config.instances))
    return config


def make_core(args: argparse.Namespace) -> Core:
    """A core for the command's config (read here; exit 2 when it has problems)."""
    teams = TeamProfiles()
    cfg = read_config(args, teams)
    return Core(cfg, config_path=config_path(args), secrets=RegisteringStore(), teams=teams)


def run_with_core(args: argparse.Namespace, body: Callable[[Core], Awaitable[T]], *, warm: bool = True) -> T:
    """Start a core just long enough for one command: a single poll of each instance, then `body`."""
    core = make_core(args)
    telemetry = None
    if core.config.logging.telemetry:  # opt-in; off means not even the module is imported
        from lmstudio_tray.diagnostics.telemetry import Telemetry

        telemetry = Telemetry.for_core(core, command=getattr(args, "command", None))

    async def main() -> T:
        try:
            if warm:
                await core.monitor.warm_up()
            result = await body(core)
            log.info("command %s done", getattr(args, "command", None))
            return result
        finally:
            await core.monitor.stop()
            if telemetry is not None:
                telemetry.close()

    return asyncio.run(main())


def instance_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instance", "-i", metavar="NAME", help="instance to act on (default: the active one)")


def pick_instance(core: Core, name: str | None) -> str:
    wanted = name or core.active_instance
    if wanted is None or wanted not in core.monitor.names:
        known = ", ".join(core.monitor.names) or "none"
        fail(f"no instance named {wanted!r}; configured: {known}", EXIT_USAGE)
    assert wanted is not None
    return wanted


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    print(f"lmstudio-tray: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def human_size(num: int | None) -> str:
    if not num:
        return "?"
    size = float(num)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"
