"""`lmstudio-tray config path|show|validate|set|unset|explain|preset|export|import` and `token ...`.

Every command that changes the file goes through `core.config.store`: comments kept, validated first
(a bad change leaves the file byte-identical), previous file kept as `.bak`, atomic write.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
from pathlib import Path

from lmstudio_tray.cli._common import EXIT_OK, EXIT_USAGE, config_path, print_json, read_config
from lmstudio_tray.core.config.schema import dump_config
from lmstudio_tray.core.errors import ConfigError
from lmstudio_tray.core.support.secrets import open_store


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
    _register_edits(csub)

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
    _tell_running_tray(args.instance)
    return EXIT_OK


def run_token_delete(args: argparse.Namespace) -> int:
    store = open_store()
    store.delete(args.instance)
    print(f"Deleted the API token of {args.instance} from {store.backend}.")
    _tell_running_tray(args.instance)
    return EXIT_OK


def _tell_running_tray(name: str) -> None:
    """Ask the running lmstudio-tray, if any, to read `name`'s token again (it keeps the one it read at start); only
    the name travels, over the loopback endpoint."""
    import httpx

    from lmstudio_tray.core.support.endpoint_file import read_endpoint

    ep = read_endpoint()
    if ep is None:
        return  # none runs: it reads the token when it starts
    try:
        # never through a proxy: the endpoint's token would travel there
        answer = httpx.post(ep.url + "/v1/tokens/reload", json={"name": name}, timeout=10.0, trust_env=False,
                            headers={"authorization": f"Bearer {ep.token}"})
        answer.raise_for_status()
        used = bool(answer.json().get("used"))
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        print(f"lmstudio-tray: the running lmstudio-tray at {ep.url} was not told ({type(exc).__name__}); restart "
              "it to use the new token", file=sys.stderr)
        return
    if used:
        print("The running lmstudio-tray uses it from now on.")
    else:
        print(f"The running lmstudio-tray monitors no instance {name!r}; it reads the token when one is added.")


def run_token_status(args: argparse.Namespace) -> int:
    cfg = read_config(args)
    store = open_store()
    print(f"tokens are kept in {store.backend}")
    for inst in cfg.instances:
        print(f"  {inst.name}: {'set' if store.get(inst.name) else 'not set'}")
    return EXIT_OK


# ---- editing: set, unset, explain, preset, export, import -------------------------------------------


def _register_edits(csub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = csub.add_parser("set", help="change one setting, keeping the file's comments (validated first)")
    sp.add_argument("key", help="dotted name, e.g. notifications.enabled or instances.local.url")
    sp.add_argument("value", help="a TOML value (true, 2.5, \"text\"); bare words are taken as text")
    sp.set_defaults(func=run_set)
    sp = csub.add_parser("unset", help="remove a setting from the file (its default applies again)")
    sp.add_argument("key")
    sp.set_defaults(func=run_unset)
    sp = csub.add_parser("explain", help="what a setting does: type, default, allowed values")
    sp.add_argument("key", nargs="?", help="a key or a section (no key: list every key)")
    sp.set_defaults(func=run_explain)
    sp = csub.add_parser("preset", help="apply a shipped preset, or start a profile from one (no NAME: list)")
    sp.add_argument("name", nargs="?", help="strict, jit-friendly, quiet or remote")
    sp.add_argument("--profile", metavar="NAME", help="write it into this profile (created if new) instead")
    sp.add_argument("--use", action="store_true", help="with --profile: also make that profile active")
    sp.set_defaults(func=run_preset)
    sp = csub.add_parser("export", help="write the settings as TOML or JSON (never any API token)")
    sp.add_argument("file", nargs="?", type=Path, help="target file; .json means JSON (default: stdout)")
    sp.add_argument("--format", choices=["toml", "json"], help="override the format chosen by extension")
    sp.set_defaults(func=run_export)
    sp = csub.add_parser("import", help="replace (or --merge into) the settings from a TOML or JSON file")
    sp.add_argument("file", type=Path)
    sp.add_argument("--merge", action="store_true", help="merge its keys into the current settings")
    sp.add_argument("--format", choices=["toml", "json"], help="override the format chosen by extension")
    sp.set_defaults(func=run_import)


def _refuse(exc: ConfigError, what: str = "Nothing was changed.") -> int:
    where = f" ({exc.path})" if exc.path else ""
    print(f"lmstudio-tray: not applied{where}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
    print(what, file=sys.stderr)
    return EXIT_USAGE


def run_set(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.config.store import backup_path, parse_value, set_value

    path = config_path(args)
    try:
        set_value(path, args.key, parse_value(args.value))
    except ConfigError as exc:
        return _refuse(exc)
    print(f"{args.key} = {args.value} written to {path} (previous file: {backup_path(path)})")
    return EXIT_OK


def run_unset(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.config.store import unset_value

    path = config_path(args)
    try:
        unset_value(path, args.key)
    except ConfigError as exc:
        return _refuse(exc)
    print(f"{args.key} removed from {path}; its default applies")
    return EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.config.reference import explain, iter_keys

    if not args.key:
        for doc in iter_keys():
            print(f"{doc.key}  ({doc.type}, default {doc.default})")
        return EXIT_OK
    try:
        print(explain(args.key))
    except KeyError as exc:
        print(f"lmstudio-tray: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def run_preset(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.config.presets import PRESETS
    from lmstudio_tray.core.config.profiles import apply_preset, use_profile

    if not args.name:
        for p in PRESETS.values():
            print(f"{p.name:13} {p.summary}")
        print("apply one: lmstudio-tray config preset NAME [--profile NEW]")
        return EXIT_OK
    if args.name not in PRESETS:
        print(f"lmstudio-tray: no preset named {args.name!r}; presets: {', '.join(PRESETS)}", file=sys.stderr)
        return EXIT_USAGE
    path = config_path(args)
    try:
        apply_preset(path, args.name, args.profile)
        if args.use and args.profile:
            use_profile(path, args.profile)
    except ConfigError as exc:
        return _refuse(exc)
    target = f"profile {args.profile}" if args.profile else "your settings"
    print(f"preset {args.name} written into {target} in {path}")
    for key, value in PRESETS[args.name].changes(args.profile).items():
        print(f"  {key} = {json.dumps(value)}")
    if args.profile and not args.use:
        print(f"switch to it with: lmstudio-tray profile use {args.profile}")
    return EXIT_OK


def _format_of(file: Path | None, forced: str | None) -> str:
    if forced:
        return forced
    return "json" if file is not None and file.suffix.lower() == ".json" else "toml"


def run_export(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.config.store import export_data, render_toml

    read_config(args)  # a broken file is reported, not exported
    data = export_data(config_path(args))
    fmt = _format_of(args.file, args.format)
    text = json.dumps(data, indent=2) + "\n" if fmt == "json" else render_toml(
        data, header=f"lmstudio-tray settings exported {datetime.date.today().isoformat()} (API tokens are "
        "never exported)")
    if args.file is None:
        print(text, end="")
        return EXIT_OK
    from lmstudio_tray.core.support.files import atomic_write

    atomic_write(args.file, text)
    print(f"exported {config_path(args)} to {args.file} ({fmt})", file=sys.stderr)
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.config.store import backup_path, import_file

    path = config_path(args)
    try:
        import_file(path, args.file, merge=args.merge, fmt=_format_of(args.file, args.format))
    except ConfigError as exc:
        return _refuse(exc, f"Nothing was changed; {path} is as it was.")
    how = "merged into" if args.merge else "replaced"
    print(f"{args.file} {how} {path}; the previous file is {backup_path(path)}")
    return EXIT_OK
