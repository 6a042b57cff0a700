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

from lmstudio_tray.core import paths
from lmstudio_tray.core.config import Config, ConfigError, load_config
from lmstudio_tray.core.runtime import Core

T = TypeVar("T")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def configure_cli_logging(level: str | None) -> None:
    logging.basicConfig(
        level=getattr(logging, (level or "warning").upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def config_path(args: argparse.Namespace) -> Path:
    return paths.config_file(getattr(args, "config", None))


def read_config(args: argparse.Namespace) -> Config:
    """The config, or exit 2 with the problems spelled out (the file is never touched)."""
    path = config_path(args)
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"lmstudio-tray: the config file {path} has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Fix them (or run with --config to use another file); nothing was changed.", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def make_core(args: argparse.Namespace, config: Config | None = None) -> Core:
    cfg = config or read_config(args)
    return Core(cfg, config_path=config_path(args))


def run_with_core(args: argparse.Namespace, body: Callable[[Core], Awaitable[T]], *, warm: bool = True) -> T:
    """Start a core just long enough for one command: a single poll of each instance, then `body`."""
    core = make_core(args)

    async def main() -> T:
        try:
            if warm:
                await core.monitor.warm_up()
            return await body(core)
        finally:
            await core.monitor.stop()

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
