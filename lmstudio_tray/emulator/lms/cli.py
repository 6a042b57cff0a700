"""A fake `lms` CLI that drives an lmstudio-tray emulator through its control port.

Texts, streams (logger text on stderr, JSON and `console.info` on stdout) and exit codes follow the real CLI
(lmstudio-ai/lms). How it finds the emulator is in `connect.py`; each command group has its own module.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from lmstudio_tray.emulator.lms.base import Exit, LmsError, log_line
from lmstudio_tray.emulator.lms.daemon import cmd_daemon_down, cmd_daemon_status, cmd_daemon_up
from lmstudio_tray.emulator.lms.get import cmd_get
from lmstudio_tray.emulator.lms.models import cmd_load, cmd_ls, cmd_ps, cmd_unload
from lmstudio_tray.emulator.lms.server import cmd_server_start, cmd_server_status, cmd_server_stop, cmd_status


def gpu_ratio(text: str) -> float:
    """`--gpu off|max|0..1`, parsed like the real CLI's gpuOptionParser."""
    value = text.strip().lower()
    if value == "off":
        return 0.0
    if value == "max":
        return 1.0
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("Not a number") from None
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError("Number out of range, must be between 0 and 1")
    return number


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("Not an integer") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"Must be at least {minimum}")
        return number
    return parse


def _logging_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--log-level", choices=["debug", "info", "warn", "error", "none"], default=None)
    flags.add_argument("--quiet", action="store_true")
    flags.add_argument("--verbose", action="store_true")
    return flags


def _client_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False, parents=[_logging_flags()])
    flags.add_argument("--host", default=None)
    flags.add_argument("--port", type=int, default=None, dest="port")
    return flags


def _server_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logging_flags, client = _logging_flags(), _client_flags()
    server = commands.add_parser("server", help="Commands for managing the local server")
    server_commands = server.add_subparsers(dest="server_command", required=True)
    # Here -p/--port is the HTTP server port, not the global remote-mode port.
    start = server_commands.add_parser("start", parents=[logging_flags])
    start.add_argument("-p", "--port", dest="port_option", type=at_least(0), default=None)
    start.add_argument("--bind", default=None)
    start.add_argument("--cors", action="store_true")
    start.set_defaults(func=cmd_server_start, port=None, host=None)
    server_commands.add_parser("stop", parents=[client]).set_defaults(func=cmd_server_stop)
    status = server_commands.add_parser("status", parents=[logging_flags])
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_server_status)
    commands.add_parser("status", parents=[client], help="LM Studio status").set_defaults(func=cmd_status)


def _daemon_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    daemon = commands.add_parser("daemon", help="Commands for managing the LM Studio daemon")
    daemon_commands = daemon.add_subparsers(dest="daemon_command", required=True)
    for name, func in (("up", cmd_daemon_up), ("status", cmd_daemon_status)):
        command = daemon_commands.add_parser(name, parents=[_logging_flags()])
        command.add_argument("--json", action="store_true")
        command.set_defaults(func=func)
    daemon_commands.add_parser("down", parents=[_logging_flags()]).set_defaults(func=cmd_daemon_down)


def _model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = _client_flags()
    ps = commands.add_parser("ps", parents=[client], help="List loaded models")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_ps)

    ls = commands.add_parser("ls", parents=[client], help="List downloaded models")
    ls.add_argument("model_key", nargs="?")
    ls.add_argument("--json", action="store_true")
    kinds = ls.add_mutually_exclusive_group()
    kinds.add_argument("--llm", action="store_true")
    kinds.add_argument("--embedding", action="store_true")
    ls.set_defaults(func=cmd_ls)

    load = commands.add_parser("load", parents=[client], help="Load a model")
    load.add_argument("model_key", nargs="?")
    load.add_argument("-c", "--context-length", type=at_least(1), default=None)
    load.add_argument("--identifier", default=None)
    load.add_argument("--ttl", type=at_least(1), default=None)
    load.add_argument("--gpu", type=gpu_ratio, default=None)
    load.add_argument("--parallel", type=at_least(1), default=None)
    load.add_argument("--estimate-only", action="store_true")
    load.add_argument("-y", "--yes", action="store_true")
    load.set_defaults(func=cmd_load)

    unload = commands.add_parser("unload", parents=[client], help="Unload a model")
    unload.add_argument("identifier", nargs="?")
    unload.add_argument("-a", "--all", action="store_true")
    unload.set_defaults(func=cmd_unload)

    get = commands.add_parser("get", parents=[client], help="Search and download local models")
    get.add_argument("name", nargs="?")
    get.add_argument("--mlx", action="store_true")
    get.add_argument("--gguf", action="store_true")
    get.add_argument("-y", "--yes", action="store_true")
    get.add_argument("--select", action="store_true")
    get.set_defaults(func=cmd_get)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lms", description="LM Studio CLI (lmstudio-tray emulator)")
    commands = parser.add_subparsers(dest="command", required=True)
    _server_commands(commands)
    _daemon_commands(commands)
    _model_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The real lms (Node) handles Ctrl-C itself, even when started with SIGINT ignored (a background
    # job, a service); do the same so a cancel always reaches the load.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except LmsError as exc:
        log_line(str(exc))
        return 1
    except Exit as exc:
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
