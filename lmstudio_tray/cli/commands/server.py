"""`lmstudio-tray server start|stop|status`: LM Studio's HTTP server, through `lms`."""

from __future__ import annotations

import argparse

from lmstudio_tray.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    fail,
    instance_arg,
    pick_instance,
    print_json,
    run_with_core,
)
from lmstudio_tray.core.errors import ActionError
from lmstudio_tray.core.runtime import Core


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("server", help="start, stop or check LM Studio's HTTP server")
    ssub = p.add_subparsers(dest="server_command", metavar="COMMAND", required=True)
    for name, helptext in (
        ("start", "start the server (needs `lms`)"),
        ("stop", "stop the server (needs `lms`)"),
        ("status", "is the server running?"),
    ):
        sp = ssub.add_parser(name, help=helptext)
        sp.add_argument("--json", action="store_true")
        instance_arg(sp)
        sp.set_defaults(func=run, action=name)


def run(args: argparse.Namespace) -> int:
    async def body(core: Core) -> dict[str, object]:
        name = pick_instance(core, args.instance)
        if args.action == "start":
            return {"instance": name, "message": await core.actions.server_start(name)}
        if args.action == "stop":
            return {"instance": name, "message": await core.actions.server_stop(name)}
        return await core.actions.server_status(name)

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
    else:
        print(result["message"])
    if args.action == "status" and not result["running"]:
        return EXIT_FAILURE
    return EXIT_OK
