"""`lmstudio-tray instances list|add|remove|use|discover`: several LM Studio servers, one active.

Changes go through the config store (comments kept, validated, backed up); a running tray picks them up
from its config watch. Tokens are read from stdin into the keyring, never taken as an argument.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import httpx

from lmstudio_tray.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    config_path,
    print_json,
    read_config,
    run_with_core,
)
from lmstudio_tray.core.config import instances as inst
from lmstudio_tray.core.control import health
from lmstudio_tray.core.errors import ConfigError
from lmstudio_tray.core.lmstudio import discovery
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.support.secrets import open_store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("instances", help="list, add, remove and choose LM Studio instances")
    isub = p.add_subparsers(dest="instances_command", metavar="COMMAND", required=True)

    sp = isub.add_parser("list", help="every instance with its health (polls each once)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=run_list)

    sp = isub.add_parser("add", help="add an LM Studio server by name and URL")
    sp.add_argument("name", help="short name, e.g. gpu-box")
    sp.add_argument("url", help="its base URL, e.g. http://10.0.0.7:1234")
    sp.add_argument("--token-stdin", action="store_true", help="read its API token from stdin into the keyring")
    # kept for scripts written for older versions; `lms server start|stop` cannot reach another machine
    sp.add_argument("--lms-host", metavar="HOST", help=argparse.SUPPRESS)
    sp.add_argument("--use", action="store_true", help="make it the active instance too")
    sp.set_defaults(func=run_add)

    sp = isub.add_parser("remove", help="remove an instance (and forget its token)")
    sp.add_argument("name")
    sp.add_argument("--keep-token", action="store_true", help="keep its API token in the keyring")
    sp.set_defaults(func=run_remove)

    sp = isub.add_parser("use", help="make an instance the one the CLI and tools act on by default")
    sp.add_argument("name")
    sp.set_defaults(func=run_use)

    sp = isub.add_parser("discover", help="find the local LM Studio server from LM Studio's own settings")
    sp.add_argument("--add", metavar="NAME", nargs="?", const="local",
                    help="add it if it is not configured yet (default name: local)")
    sp.set_defaults(func=run_discover)


def _problem(exc: ConfigError) -> int:
    for line in exc.problems:
        print(f"lmstudio-tray: {line}", file=sys.stderr)
    print("Nothing was changed.", file=sys.stderr)
    return EXIT_USAGE


# ---- list ------------------------------------------------------------------------------------------


def _live() -> tuple[dict[str, Any], dict[str, Any]]:
    """The running tray's /v1/status and router figures (best effort: empty when it is not running)."""
    from lmstudio_tray.core.support.endpoint_file import read_endpoint

    ep = read_endpoint()
    if ep is None:
        return {}, {}
    headers = {"authorization": f"Bearer {ep.token}"}
    out: list[dict[str, Any]] = []
    for path in ("/v1/status", "/v1/route/"):
        try:
            # the loopback endpoint, never through a proxy: the token would travel there
            r = httpx.get(ep.url + path, headers=headers, timeout=1.0, trust_env=False)
            out.append(r.json() if r.status_code == 200 else {})
        except (httpx.HTTPError, ValueError):
            out.append({})
    return out[0], out[1]


def _seen_only(status: dict[str, Any], configured: set[str]) -> list[health.InstanceHealth]:
    """Instances the running tray monitors only because an OpenCode provider pointed at them."""
    rows = []
    for s in status.get("instances", []):
        if not isinstance(s, dict) or s.get("name") in configured:
            continue
        state = str(s.get("state"))
        loaded = tuple(i["id"] for m in s.get("models", []) for i in m.get("instances", []) if "id" in i)
        rows.append(health.InstanceHealth(
            name=str(s.get("name")), url=str(s.get("url")), active=False, configured=False, state=state,
            reachable=state in ("idle", "ready", "loading"), latency_ms=s.get("latency_ms"), api=s.get("api"),
            loaded=loaded, error=s.get("error"), has_token=False, pools=(),
        ))
    return rows


def run_list(args: argparse.Namespace) -> int:
    config = read_config(args)

    async def body(core: Core) -> list[health.InstanceHealth]:
        tokens: dict[str, bool] = {}
        for name in core.monitor.names:
            try:
                tokens[name] = bool(core.secrets.get(name))
            except Exception:  # a locked keyring: say "unknown" as no token rather than fail the listing
                tokens[name] = False
        return health.health(config, core.monitor.snapshots(), active=core.active_instance, has_token=tokens,
                           failures=failures)

    status, router = _live()
    failures = {name: list(u.get("recent_failures", [])) for name, u in router.get("instances", {}).items()}
    rows = run_with_core(args, body)
    rows += _seen_only(status, {r.name for r in rows})
    if args.json:
        print_json([r.to_json() for r in rows])
    else:
        print(format_health(rows))
    return EXIT_OK if all(r.reachable for r in rows if r.configured) else EXIT_FAILURE


def format_health(rows: list[health.InstanceHealth]) -> str:
    if not rows:
        return "no instances configured; add one with `lmstudio-tray instances add NAME URL`"
    lines = []
    for r in rows:
        mark = "*" if r.active else " "
        latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None and r.reachable else "-"
        extra = [f"API {r.api}" if r.api else None, "token" if r.has_token else None,
                 f"pools: {', '.join(r.pools)}" if r.pools else None]
        lines.append(f"{mark} {r.name:<14} {r.state:<11} {latency:>7}  {r.url}"
                     + (f"  ({', '.join(x for x in extra if x)})" if any(extra) else ""))
        if r.loaded:
            lines.append(f"    loaded: {', '.join(r.loaded)}")
        if r.error and not r.reachable:
            lines.append(f"    {r.error}")
        if not r.configured:
            lines.append(f"    seen through an OpenCode provider; keep it with "
                         f"`lmstudio-tray instances add NAME {r.url}`")
        if r.recent_failures:
            last = r.recent_failures[-1]
            lines.append(f"    {len(r.recent_failures)} recent router failure(s), last: {last.get('reason')}")
    lines.append("(* = active: the instance the CLI and tools use unless told otherwise)")
    return "\n".join(lines)


# ---- changes ---------------------------------------------------------------------------------------


def _read_token() -> str:
    # Never an argument: it would land in the shell history and in `ps`.
    if sys.stdin.isatty():
        return getpass.getpass("API token: ").strip()
    return sys.stdin.readline().strip()


def run_add(args: argparse.Namespace) -> int:
    path = config_path(args)
    token = _read_token() if args.token_stdin else None
    if args.token_stdin and not token:
        print("lmstudio-tray: --token-stdin given but no token was read; nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = inst.add_instance(path, args.name, args.url, lms_host=args.lms_host)
        if args.use:
            config = inst.use_instance(path, args.name)
    except ConfigError as exc:
        return _problem(exc)
    url = next(i.url for i in config.instances if i.name == args.name)
    where = ""
    if token:
        store = open_store()
        store.set(args.name, token)
        where = f"; its API token is in {store.backend}"
    print(f"Added {args.name} ({url}) to {path}{where}.")
    if not asyncio.run(discovery.greets(url, token)):
        print(f"Note: {url} does not answer as LM Studio right now (start its server, or check the URL); "
              "it is monitored anyway.", file=sys.stderr)
    if args.use:
        print(f"{args.name} is now the active instance.")
    return EXIT_OK


def run_remove(args: argparse.Namespace) -> int:
    path = config_path(args)
    try:
        config = inst.remove_instance(path, args.name)
    except ConfigError as exc:
        return _problem(exc)
    note = ""
    if not args.keep_token:
        store = open_store()
        if store.get(args.name):
            store.delete(args.name)
            note = " and forgot its API token"
    active = config.active_instance or (config.instances[0].name if config.instances else "none")
    print(f"Removed {args.name}{note}. Active instance: {active}.")
    return EXIT_OK


def run_use(args: argparse.Namespace) -> int:
    path = config_path(args)
    try:
        inst.use_instance(path, args.name)
    except ConfigError as exc:
        return _problem(exc)
    print(f"{args.name} is now the active instance (the CLI and the OpenCode tools act on it by default).")
    return EXIT_OK


def run_discover(args: argparse.Namespace) -> int:
    found = asyncio.run(discovery.discover_local())
    if found is None:
        print("No local LM Studio found: its settings file (.internal/http-server-config.json in LM Studio's "
              "home) is missing or names no port. Start LM Studio once, or add the server by hand with "
              "`lmstudio-tray instances add NAME URL`.", file=sys.stderr)
        return EXIT_FAILURE
    config = read_config(args)
    known = next((i.name for i in config.instances if i.url == found.url), None)
    state = "answers as LM Studio" if found.confirmed else "does not answer right now (server stopped?)"
    print(f"Local LM Studio: {found.url} (from {found.source}); {state}.")
    if known:
        print(f"It is configured as {known!r}.")
        return EXIT_OK if found.confirmed else EXIT_FAILURE
    if args.add is None:
        print("It is not configured; add it with `lmstudio-tray instances discover --add [NAME]`.")
        return EXIT_OK if found.confirmed else EXIT_FAILURE
    if not found.confirmed:
        print("lmstudio-tray: not adding a server that does not answer; start it and run this again.",
              file=sys.stderr)
        return EXIT_FAILURE
    try:
        inst.add_instance(config_path(args), args.add, found.url)
    except ConfigError as exc:
        return _problem(exc)
    print(f"Added it as {args.add!r}.")
    return EXIT_OK
