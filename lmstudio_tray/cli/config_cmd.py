"""`lmstudio-tray config path|show|validate` and `token set|delete|status`."""

from __future__ import annotations

import argparse
import getpass
import sys

from lmstudio_tray.cli._common import EXIT_OK, config_path, print_json, read_config
from lmstudio_tray.core.config import dump_config
from lmstudio_tray.core.secrets import open_store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="where the config is, what it says, whether it is valid")
    csub = p.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    csub.add_parser("path", help="print the config file path").set_defaults(func=run_path)
    sp = csub.add_parser("show", help="print the effective config (defaults included)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_show)
    csub.add_parser("validate", help="check the config file; exit 2 with the problems").set_defaults(
        func=run_validate
    )

    p = sub.add_parser("token", help="API tokens of instances (kept in the keyring, never in the config)")
    tsub = p.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    sp = tsub.add_parser("set", help="store an instance's API token (read from stdin or a prompt)")
    sp.add_argument("instance")
    sp.set_defaults(func=run_token_set)
    sp = tsub.add_parser("delete", help="forget an instance's API token")
    sp.add_argument("instance")
    sp.set_defaults(func=run_token_delete)
    sp = tsub.add_parser("status", help="which instances have a token, and where tokens are kept")
    sp.set_defaults(func=run_token_status)


def run_path(args: argparse.Namespace) -> int:
    print(config_path(args))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    cfg = read_config(args)
    if args.json:
        print_json(cfg.model_dump(mode="json"))
    else:
        print(dump_config(cfg), end="")
    return EXIT_OK


def run_validate(args: argparse.Namespace) -> int:
    cfg = read_config(args)  # exits 2 with the problems
    path = config_path(args)
    where = str(path) if path.exists() else f"{path} (not created yet: defaults apply)"
    print(f"{where}: valid; {len(cfg.instances)} instance(s): {', '.join(i.name for i in cfg.instances)}")
    return EXIT_OK


def run_token_set(args: argparse.Namespace) -> int:
    # Never a command-line argument: it would land in the shell history and `ps`.
    token = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("API token: ").strip()
    if not token:
        print("lmstudio-tray: no token given; nothing stored", file=sys.stderr)
        return 2
    store = open_store()
    store.set(args.instance, token)
    print(f"Stored the API token of {args.instance} in {store.backend}.")
    return EXIT_OK


def run_token_delete(args: argparse.Namespace) -> int:
    store = open_store()
    store.delete(args.instance)
    print(f"Deleted the API token of {args.instance} from {store.backend}.")
    return EXIT_OK


def run_token_status(args: argparse.Namespace) -> int:
    cfg = read_config(args)
    store = open_store()
    print(f"tokens are kept in {store.backend}")
    for inst in cfg.instances:
        print(f"  {inst.name}: {'set' if store.get(inst.name) else 'not set'}")
    return EXIT_OK
