"""`lmstudio-tray hub member add|list|revoke`: the team hub's member tokens (the hub itself is `serve --hub`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lmstudio_tray.cli._common import EXIT_FAILURE, EXIT_OK
from lmstudio_tray.core.support import paths


def hub_state(arg: str | None) -> Path:
    """The hub's state dir: `--state-dir`, else `hub/` in lmstudio-tray's state dir."""
    return Path(arg) if arg else paths.state_dir() / "hub"


def add_hub_parser(sub: Any) -> None:
    """Add `hub member add|list|revoke` (registered by the `team` group, whose profile names the hub)."""
    p: argparse.ArgumentParser = sub.add_parser("hub", help="the team hub's members and their tokens")
    hsub = p.add_subparsers(dest="hub_command", metavar="COMMAND", required=True)
    mp = hsub.add_parser("member", help="add, list or revoke the members who may use this hub")
    msub = mp.add_subparsers(dest="member_command", metavar="COMMAND", required=True)
    add = msub.add_parser("add", help="add a member and print its token (shown once)")
    add.add_argument("name")
    lst = msub.add_parser("list", help="the members, with when they were added or revoked")
    lst.add_argument("--json", action="store_true")
    rev = msub.add_parser("revoke", help="revoke a member's token (a running hub refuses it at once)")
    rev.add_argument("name")
    for sp in (add, lst, rev):
        sp.add_argument("--state-dir", metavar="DIR", help="the hub's state dir (default: hub/ in the state dir)")
        sp.set_defaults(func=run_member)


def run_member(args: argparse.Namespace) -> int:
    from lmstudio_tray.hub.members import MemberError, MemberTokens

    tokens = MemberTokens(hub_state(args.state_dir))
    try:
        if args.member_command == "add":
            token = tokens.add(args.name)
            print(f"member {args.name} added; its token (shown only now, keep it in the member's keyring with "
                  f"`lmstudio-tray token set team-hub` on their machine):", file=sys.stderr)
            print(token)
        elif args.member_command == "revoke":
            tokens.revoke(args.name)
            print(f"member {args.name}'s token is revoked")
        else:
            members = tokens.members()
            if args.json:
                print(json.dumps([{"name": m.name, "added": m.added, "revoked": m.revoked} for m in members]))
            for m in [] if args.json else members:
                state = "active" if m.active else f"revoked {_when(m.revoked or 0)}"
                print(f"{m.name}  added {_when(m.added)}  {state}")
    except MemberError as exc:
        print(f"lmstudio-tray: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
