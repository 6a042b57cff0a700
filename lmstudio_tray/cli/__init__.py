"""`lmstudio-tray` command line. Each command group lives in its own module and registers itself.

No arguments (or `run`) starts the tray; every other command works without a display.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lmstudio_tray import __version__

COMMANDS_PACKAGE = "lmstudio_tray.cli.commands"
# Modules under lmstudio_tray.cli.commands that define `register(subparsers)`; each adds its commands and sets
# `func` (taking the parsed args, returning an exit code) on its parsers.
COMMAND_MODULES = (
    "status",
    "models",
    "server",
    "config",
    "serve",
    "emulator",
    "tray",
    "opencode",
    "autostart",
    "profile",
    "instances",
    "team",
    "stats",
    "doctor",
)
# Which module a command lives in, so a command imports only what it needs (the tray stays small).
COMMAND_HOME = {
    "status": "status",
    "load": "models",
    "switch": "models",
    "unload": "models",
    "get": "models",
    "models": "models",
    "server": "server",
    "daemon": "server",
    "config": "config",
    "token": "config",
    "serve": "serve",
    "emulator": "emulator",
    "run": "tray",
    "opencode": "opencode",
    "autostart": "autostart",
    "profile": "profile",
    "instances": "instances",
    "team": "team",
    "hub": "team",
    "stats": "stats",
    "doctor": "doctor",
    "dashboard": "stats",
}
_OPTIONS_WITH_VALUE = {"--config", "--log-level"}

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmstudio-tray",
        description="System-tray companion for LM Studio. With no command, starts the tray.",
    )
    parser.add_argument("--version", action="version", version=f"lmstudio-tray {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (default: platform config dir)")
    parser.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"], help="log verbosity"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{COMMANDS_PACKAGE}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{COMMANDS_PACKAGE}.{name}":
                continue  # a command group not built into this copy
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `lmstudio-tray` program. As the entry point it opts into the import trims of
    `platform.process` (uvicorn's and httpx's command lines left out, see there for what they save)."""
    from lmstudio_tray.platform.process import skip_httpx_command_line, skip_uvicorn_command_line

    skip_httpx_command_line()
    skip_uvicorn_command_line()
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `lmstudio-tray emulator ...` hands everything after it to the emulator's own parser.
    if args_list[:1] == ["emulator"]:
        from lmstudio_tray.emulator.cli import main as emulator_main

        return int(emulator_main(args_list[1:]))
    command = _command_of(args_list)
    parser = build_parser(COMMAND_HOME.get(command or "run") if command in COMMAND_HOME or command is None else None)
    if command is None and _has_command(parser, "run"):
        args_list = default_to_run(args_list)  # `lmstudio-tray --demo` means `lmstudio-tray run --demo`
    args = parser.parse_args(args_list)
    if args.command is None:
        args = parser.parse_args([*args_list, "run"]) if _has_command(parser, "run") else args
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    from lmstudio_tray.cli._common import configure_cli_logging

    configure_cli_logging(args.log_level)
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130


def default_to_run(args: list[str]) -> list[str]:
    """No command given: the global options stay in front, everything else belongs to `run`."""
    front: list[str] = []
    rest: list[str] = []
    takes_value = False
    for arg in args:
        if takes_value:
            front.append(arg)
            takes_value = False
        elif arg in _OPTIONS_WITH_VALUE or arg.split("=", 1)[0] in _OPTIONS_WITH_VALUE:
            front.append(arg)
            takes_value = arg in _OPTIONS_WITH_VALUE
        else:
            rest.append(arg)
    return [*front, "run", *rest]


def _command_of(args: list[str]) -> str | None:
    """The command word, skipping global options; None when there is none (the tray starts)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUE:
            skip = True
        elif arg in ("-h", "--help", "--version"):
            return "-"  # a global flag: build the full parser so --help lists every command
        elif not arg.startswith("-"):
            return arg
    return None


def _has_command(parser: argparse.ArgumentParser, name: str) -> bool:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return name in action.choices
    return False
