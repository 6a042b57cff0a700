"""`lmstudio-tray server start|stop|status|config` (LM Studio's HTTP server) and `lmstudio-tray daemon
up|down|status` (the LM Studio service), through `lms`."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from lmstudio_tray.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    instance_arg,
    pick_instance,
    print_json,
    run_with_core,
)
from lmstudio_tray.core.control.server_control import (
    ALL_INTERFACES,
    EVICT_WHERE,
    JIT_WHERE,
    LOOPBACK,
    TTL_WHERE,
    AuthRequired,
    Reach,
    ServerApplied,
    ServerChange,
    ServerPlan,
    ServerSettings,
)
from lmstudio_tray.core.errors import ActionError
from lmstudio_tray.core.runtime import Core

CONFIRM = "Serve LM Studio on the local network anyway? [y/N] "
NO_TTY = ("serving LM Studio on the local network without API tokens needs a confirmation, and there is no "
          "terminal to ask in; run it again with --yes if you mean it. Nothing was changed.")
AUTH_TEXT = {
    AuthRequired.YES: "required (a request without a token got 401)",
    AuthRequired.NO: "not required (a request without a token was answered)",
    AuthRequired.UNKNOWN: "unknown (LM Studio's files do not record it; the server is not running to ask)",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("server", help="start, stop, check or configure LM Studio's HTTP server")
    ssub = p.add_subparsers(dest="server_command", metavar="COMMAND", required=True)
    for name, helptext in (
        ("start", "start the server (needs `lms`)"),
        ("stop", "stop the server (needs `lms`)"),
        ("status", "is the server running, and with which settings?"),
    ):
        sp = ssub.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true")
        instance_arg(sp)
        sp.set_defaults(func=run, action=name)
    _register_config(ssub)
    _register_daemon(sub)


def _register_config(ssub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cp = ssub.add_parser(
        "config", help="show or change this machine's LM Studio server settings (port, network, CORS)",
        description="Without options: show LM Studio's server settings. With options: apply them through "
        "`lms server start` (a running server is restarted on the new settings).",
    )
    cp.add_argument("--port", type=int, metavar="N", help="serve on port N (1-65535)")
    reach = cp.add_mutually_exclusive_group()
    reach.add_argument("--lan", dest="bind", action="store_const", const=ALL_INTERFACES,
                       help="accept connections from the local network (asks first unless API tokens are required)")
    reach.add_argument("--localhost", dest="bind", action="store_const", const=LOOPBACK,
                       help="accept connections from this machine only")
    cors = cp.add_mutually_exclusive_group()
    cors.add_argument("--cors", dest="cors", action="store_const", const=True, help="allow calls from web pages")
    cors.add_argument("--no-cors", dest="cors", action="store_const", const=False, help="turn CORS off")
    cp.add_argument("--yes", "-y", action="store_true", help="confirm serving the network without asking")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=run_config, bind=None, cors=None)


def _register_daemon(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("daemon", help="start, stop or check the LM Studio service (llmster), through `lms daemon`")
    dsub = p.add_subparsers(dest="daemon_command", metavar="COMMAND", required=True)
    for name, helptext in (
        ("up", "start LM Studio (llmster, or the desktop app where that is installed) unless it runs"),
        ("down", "stop llmster (the desktop app is quit from its own window)"),
        ("status", "does LM Studio run, and as what?"),
    ):
        sp = dsub.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true")
        sp.set_defaults(func=run_daemon, action=name)


def run(args: argparse.Namespace) -> int:
    async def body(core: Core) -> dict[str, object]:
        name = pick_instance(core, args.instance)
        if args.action == "start":
            return {"instance": name, "message": await core.actions.server_start(name)}
        if args.action == "stop":
            return {"instance": name, "message": await core.actions.server_stop(name)}
        return await core.server_control.status_of(await core.actions.server_status(name))

    try:
        result = run_with_core(args, body, warm=args.action == "status")
    except ActionError as exc:
        fail(str(exc))
        return EXIT_FAILURE
    if args.json:
        print_json(result)
    elif args.action == "status":
        state = "running" if result["running"] else "not running"
        print(f"The server of {result['instance']} ({result['url']}) is {state}.")
        if result.get("bind") is not None:
            where = "this machine only" if result["reach"] == "this_machine" else f"local network ({result['bind']})"
            print(f"Settings: {where}, CORS {'on' if result['cors'] else 'off'}, JIT loading "
                  f"{_on_off(result['jit'])}.")
    else:
        print(result["message"])
    if args.action == "status" and not result["running"]:
        return EXIT_FAILURE
    return EXIT_OK


def _on_off(value: object) -> str:
    return "unknown" if value is None else ("on" if value else "off")


# ---- server config ---------------------------------------------------------------------------------------------

def run_config(args: argparse.Namespace) -> int:
    try:
        change = ServerChange(port=args.port, bind=args.bind, cors=args.cors)
    except ValueError as exc:
        fail(f"--port: {exc}", EXIT_USAGE)
    try:
        if change.empty:
            settings = run_with_core(args, lambda core: core.server_control.settings(), warm=False)
            _show(settings, args.json)
            return EXIT_OK
        applied, instances = run_with_core(args, lambda core: _apply(core, change, args), warm=False)
    except ActionError as exc:
        fail(str(exc))
    if args.json:
        print_json({"settings": applied.settings.to_json(), "messages": list(applied.messages),
                    "warnings": list(applied.warnings)})
    else:
        for line in applied.messages:
            print(line)
    _note_instances(applied.settings, instances)
    return EXIT_OK


async def _apply(core: Core, change: ServerChange, args: argparse.Namespace) -> tuple[ServerApplied, list[str]]:
    control = core.server_control
    plan = await control.plan(change)
    for risk in plan.risks:
        print(f"Warning: {risk}", file=sys.stderr)
    confirmed = plan.needs_confirmation and _confirm(plan, args.yes)
    applied = await control.apply(plan, confirmed=confirmed)
    return applied, [url for _name, url in core.local_instances()]


def _confirm(plan: ServerPlan, yes: bool) -> bool:
    """Ask before exposing LM Studio: --yes, else a y/N question on a terminal, else refuse (exit 1)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        fail(NO_TTY)
    try:
        answer = input(CONFIRM)
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        fail("not confirmed; nothing was changed.")
    return True


def _note_instances(settings: ServerSettings, urls: list[str]) -> None:
    for url in urls:
        if settings.port is not None and urlsplit(url).port != settings.port:
            print(f"Note: lmstudio-tray watches {url}, not port {settings.port}: change that instance's url in "
                  "the config file (`lmstudio-tray config path` shows where).", file=sys.stderr)


def _show(settings: ServerSettings, as_json: bool) -> None:
    if as_json:
        print_json({**settings.to_json(), "only_in_lmstudio": {
            "jit": JIT_WHERE, "idle_ttl": TTL_WHERE, "auto_evict": EVICT_WHERE}})
        return
    where = "this machine only" if settings.reach is Reach.THIS_MACHINE else "the local network"
    print(f"LM Studio's server on this machine: {'running' if settings.running else 'not running'}")
    print(f"  port:             {settings.port if settings.port is not None else 'not set yet (1234 on first start)'}")
    print(f"  who can connect:  {where} ({settings.bind})")
    print(f"  CORS:             {'on' if settings.cors else 'off'}")
    print(f"  API tokens:       {AUTH_TEXT[settings.auth]}")
    print(f"  JIT loading:      {_on_off(settings.jit)} (change it in {JIT_WHERE})")
    print("  idle TTL and auto-evict: not visible to programs; change them in")
    print(f"    {TTL_WHERE}")
    print(f"    {EVICT_WHERE}")
    print("Change port, network and CORS with `lmstudio-tray server config --port N --lan|--localhost "
          "--cors|--no-cors`.")


# ---- daemon ----------------------------------------------------------------------------------------------------

def run_daemon(args: argparse.Namespace) -> int:
    async def body(core: Core) -> dict[str, object]:
        control = core.server_control
        if args.action == "down":
            return {"running": False, "message": await control.daemon_down()}
        status = await (control.daemon_up() if args.action == "up" else control.daemon_status())
        kind = None if not status.running else ("llmster" if status.is_daemon is not False else "desktop_app")
        return {"running": status.running, "pid": status.pid, "kind": kind, "version": status.version}

    try:
        result = run_with_core(args, body, warm=False)
    except ActionError as exc:
        fail(str(exc))
    if args.json:
        print_json(result)
    elif "message" in result:
        print(result["message"])
    elif result["running"]:
        what = "llmster (the LM Studio daemon)" if result["kind"] == "llmster" else "the LM Studio desktop app"
        print(f"LM Studio runs as {what}, PID {result['pid']}.")
    else:
        print("LM Studio is not running; start it with `lmstudio-tray daemon up`.")
    return EXIT_OK if result["running"] or args.action == "down" else EXIT_FAILURE
