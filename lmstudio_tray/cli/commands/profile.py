"""`lmstudio-tray profile list|use NAME|off|show [NAME]`: named sets of settings in the config file.

`use` writes `active_profile` through the save API (comments kept, backup, atomic). A running tray or
`serve` watches the file and applies the change within about a second, without a restart.
"""

from __future__ import annotations

import argparse
import json
import sys

from lmstudio_tray.cli._common import EXIT_OK, EXIT_USAGE, config_path, fail, print_json, read_config
from lmstudio_tray.core.config.profiles import get_profile, list_profiles, use_profile
from lmstudio_tray.core.errors import ConfigError
from lmstudio_tray.core.runtime import CONFIG_WATCH_SECONDS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("profile", help="named sets of settings (work, laptop, ...): list, switch, show")
    psub = p.add_subparsers(dest="profile_command", metavar="COMMAND", required=True)
    sp = psub.add_parser("list", help="the profiles in the config file; * marks the active one")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_list)
    sp = psub.add_parser("use", help="make NAME the active profile (a running tray picks it up at once)")
    sp.add_argument("name")
    sp.set_defaults(func=run_use)
    psub.add_parser("off", help="no active profile: the settings as written").set_defaults(func=run_off)
    sp = psub.add_parser("show", help="what a profile changes (default: the active one)")
    sp.add_argument("name", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_show)


def _problem(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"lmstudio-tray: {problem}", file=sys.stderr)
    print("Nothing was changed.", file=sys.stderr)
    return EXIT_USAGE


def run_list(args: argparse.Namespace) -> int:
    cfg = read_config(args)
    profiles = list_profiles(cfg)
    if args.json:
        print_json({"active": cfg.active_profile, "profiles": [p.to_json() for p in profiles]})
        return EXIT_OK
    if not profiles:
        print("no profiles yet; start one from a preset: lmstudio-tray config preset remote --profile work")
        return EXIT_OK
    for p in profiles:
        print(f"{'*' if p.active else ' '} {p.name}" + (f" — {p.description}" if p.description else ""))
    return EXIT_OK


def run_use(args: argparse.Namespace) -> int:
    path = config_path(args)
    try:
        cfg = use_profile(path, args.name, read_config(args))
    except ConfigError as exc:
        return _problem(exc)
    names = ", ".join(i.name for i in cfg.instances) or "none"
    print(f"active profile: {args.name} (instances: {names}); written to {path}")
    print(f"a running tray or `serve` applies it within {CONFIG_WATCH_SECONDS:.0f} s, no restart needed")
    return EXIT_OK


def run_off(args: argparse.Namespace) -> int:
    path = config_path(args)
    try:
        use_profile(path, None)
    except ConfigError as exc:
        return _problem(exc)
    print(f"no active profile: the settings in {path} apply as written")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    cfg = read_config(args)
    name = args.name or cfg.active_profile
    if name is None:
        fail("no active profile; name one: lmstudio-tray profile show NAME (see `profile list`)", EXIT_USAGE)
    try:
        info = get_profile(cfg, name)
    except ConfigError as exc:
        return _problem(exc)
    if args.json:
        print_json(info.to_json())
        return EXIT_OK
    print(f"{info.name}{' (active)' if info.active else ''}" + (f": {info.description}" if info.description else ""))
    if not info.overrides:
        print(f"  changes nothing (add keys under [profiles.{info.name}])")
    for key, value in info.overrides.items():
        shown = json.dumps(value) if not isinstance(value, list) else ", ".join(map(str, value))
        print(f"  {key} = {shown}")
    return EXIT_OK
