"""`opencode install | uninstall | status`: put the OpenCode plugin (and the `lmstudio` provider, or a
provider pointed at a router pool) in place."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmstudio_tray.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    fail,
    instance_arg,
    pick_instance,
    print_json,
    run_with_core,
)
from lmstudio_tray.core.models import InstanceSnapshot, ModelType
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.opencode.installer import (
    InstallError,
    PoolInfo,
    Report,
    Target,
    global_target,
    install,
    project_target,
    status,
    uninstall,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("opencode", help="install the OpenCode plugin and LM Studio provider")
    osub = p.add_subparsers(dest="opencode_command", metavar="COMMAND")

    ip = osub.add_parser("install", help="install the plugin (default: OpenCode's global config dir)")
    _scope_args(ip)
    ip.add_argument("--provider", action="store_true",
                    help="also write the `lmstudio` provider into opencode.json with the models LM Studio has "
                         "and their loaded context limits")
    instance_arg(ip)
    ip.add_argument("--pool", metavar="NAME",
                    help="also write a provider `lmstudio-pool-NAME` pointed at the endpoint's router for the "
                         "[[pools]] table NAME, with the models its instances have loaded (no token is written: "
                         "the plugin adds it)")
    ip.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    ip.add_argument("--json", action="store_true", help="print the report as JSON")
    ip.set_defaults(func=run_install)

    up = osub.add_parser("uninstall", help="remove exactly what install added (values you changed stay)")
    _scope_args(up)
    up.add_argument("--dry-run", action="store_true")
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=run_uninstall)

    sp = osub.add_parser("status", help="is the plugin installed, current, and is the endpoint running")
    _scope_args(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=run_status)

    def usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return EXIT_FAILURE

    p.set_defaults(func=usage)


def _scope_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--project", metavar="DIR", type=Path, help="a project: DIR/.opencode/plugins and DIR/opencode.json")
    g.add_argument("--global", dest="global_", action="store_true",
                   help="OpenCode's global config dir (~/.config/opencode; the default)")


def _target(args: argparse.Namespace) -> Target:
    try:
        return project_target(args.project) if args.project else global_target()
    except InstallError as exc:
        fail(str(exc), 2)


def _snapshot(args: argparse.Namespace) -> InstanceSnapshot:
    async def body(core: Core) -> InstanceSnapshot:
        name = pick_instance(core, args.instance)
        return await core.monitor.get(name)

    snap = run_with_core(args, body)
    if snap.failure is not None:
        fail(f"cannot read the models of LM Studio '{snap.name}' ({snap.url}): {snap.error}. Start LM Studio "
             "(or its server: `lmstudio-tray server start`) and run this again; nothing was changed.")
    if not any(m.type is not ModelType.EMBEDDING for m in snap.models):
        fail(f"LM Studio '{snap.name}' lists no chat models; download one first. Nothing was changed.")
    return snap


def _pool(args: argparse.Namespace) -> PoolInfo:
    async def body(core: Core) -> PoolInfo | str:
        pools = {p.name: p for p in core.config.pools}
        if args.pool not in pools:
            known = ", ".join(sorted(pools)) or "none"
            return (f"no pool named {args.pool!r} in the config (pools: {known}); add a [[pools]] table with "
                    "name and instances first. Nothing was changed.")
        port = core.config.endpoint.port
        if not port:
            return ("endpoint.port is 0 (a new port at every start), so a provider URL would not stay valid; "
                    "set endpoint.port to a fixed port (e.g. 47823) first. Nothing was changed.")
        members = tuple([await core.monitor.get(name) for name in pools[args.pool].instances
                         if name in core.monitor.names])
        return PoolInfo(args.pool, port, members)

    found = run_with_core(args, body)
    if isinstance(found, str):
        fail(found, 2)
    pool = found
    if not pool.loaded_models():
        states = ", ".join(f"{s.name}: {s.state.value}" for s in pool.members) or "no members"
        fail(f"no instance of pool {pool.name!r} has a chat model loaded ({states}); the router only sends "
             "requests to loaded models. Load one (`lmstudio-tray load KEY --instance NAME`) and run this again. "
             "Nothing was changed.")
    return pool


def run_install(args: argparse.Namespace) -> int:
    target = _target(args)
    snap = _snapshot(args) if args.provider else None
    pool = _pool(args) if args.pool else None
    try:
        report = install(target, snap, dry_run=args.dry_run, pool=pool)
    except InstallError as exc:
        fail(str(exc))
    if args.json:
        print_json(report.to_json())
        return EXIT_OK
    head = "Would install" if args.dry_run else "Installed"
    print(f"{head} the lmstudio-tray plugin for OpenCode ({target.scope}: {target.root}).")
    _print_changes(report)
    if report.models and snap is not None:
        print(f"Provider `lmstudio` -> {snap.url}/v1 with {len(report.models)} model(s):")
        for key, ctx in report.models.items():
            print(f"  {key}: context {ctx if ctx else 'unknown'}")
    if pool is not None:
        print(f"Provider `{pool.provider_id}` -> {pool.base_url} (the router; the plugin adds the endpoint token):")
        for key, (_m, ctx) in sorted(pool.loaded_models().items()):
            print(f"  {key}: context {ctx if ctx else 'unknown'}")
    for kept in report.kept:
        print(f"  kept your value of {kept}")
    for note in report.notes:
        print(f"Note: {note}")
    if not args.dry_run:
        print("Start the endpoint with `lmstudio-tray serve` (or the tray), then use OpenCode as usual.")
        if snap is not None and report.models:
            loaded = [m.key for m in snap.models if m.loaded and m.key in report.models]
            first = (loaded or list(report.models))[0]
            print(f"Try: opencode run -m lmstudio/{first} \"hello\"")
        if pool is not None:
            first = sorted(pool.loaded_models())[0]
            print(f"Try: opencode run -m {pool.provider_id}/{first} \"hello\"")
    return EXIT_OK


def run_uninstall(args: argparse.Namespace) -> int:
    target = _target(args)
    try:
        report = uninstall(target, dry_run=args.dry_run)
    except InstallError as exc:
        fail(str(exc))
    if args.json:
        print_json(report.to_json())
        return EXIT_OK
    print(f"{'Would uninstall' if args.dry_run else 'Uninstalled'} lmstudio-tray from OpenCode "
          f"({target.scope}: {target.root}).")
    _print_changes(report)
    for kept in report.kept:
        print(f"  left {kept} in place (you changed it since install)")
    for note in report.notes:
        print(f"  {note}")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    from lmstudio_tray.core.support import paths
    from lmstudio_tray.core.support.endpoint_file import read_endpoint

    target = _target(args)
    st = status(target)
    endpoint = read_endpoint()
    data = {**st.to_json(), "endpoint": {"file": str(paths.endpoint_file()),
                                        "running": endpoint is not None,
                                        "url": endpoint.url if endpoint else None}}
    if args.json:
        print_json(data)
    else:
        words = {"missing": "not installed", "current": "installed, current", "outdated":
                 "installed, older version (run `lmstudio-tray opencode install` to update)",
                 "modified": "present but changed by hand (install would back it up and replace it)"}
        print(f"OpenCode {target.scope} ({target.root})")
        print(f"  plugin:   {words[st.plugin]}  [{target.plugin_file}]")
        if st.provider is None:
            print(f"  provider: no `lmstudio` provider in {target.config_file}")
        else:
            print(f"  provider: `lmstudio` -> {st.provider['baseURL']} in {target.config_file}")
            for key, ctx in st.provider["models"].items():
                print(f"    {key}: context {ctx if ctx else 'not set'}")
        running = f"running at {endpoint.url}" if endpoint else "not running (start `lmstudio-tray serve` or the tray)"
        print(f"  endpoint: {running}")
    return EXIT_OK if st.plugin in ("current", "outdated") else EXIT_FAILURE


def _print_changes(report: Report) -> None:
    for change in report.changes:
        extra = f" (backup: {change.backup})" if change.backup else ""
        detail = f" — {change.detail}" if change.detail else ""
        print(f"  {change.action:<16} {change.path}{extra}{detail}")
