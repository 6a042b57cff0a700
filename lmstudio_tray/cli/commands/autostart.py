"""`lmstudio-tray autostart enable|disable|status`: start the tray at login, only when asked to."""

from __future__ import annotations

import argparse
import json
import sys

from lmstudio_tray.platform.autostart import Autostart, AutostartError, AutostartStatus, for_platform

# Same values as cli._common, not imported from there: that module pulls in the core and its config
# schema, which this command never needs.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("autostart", help="start the tray at login (off until you enable it)")
    actions = p.add_subparsers(dest="autostart_action", metavar="ACTION", required=True)
    for name, help_text in (
        ("enable", "start the tray at every login from now on"),
        ("disable", "stop starting the tray at login"),
        ("status", "show whether the tray starts at login, and how"),
    ):
        a = actions.add_parser(name, help=help_text)
        a.add_argument("--json", action="store_true", help="machine-readable output")
        if name != "disable":  # disable removes every mechanism it knows
            a.add_argument(
                "--systemd",
                action="store_true",
                help="Linux: use a systemd --user unit bound to graphical-session.target instead of an "
                "XDG autostart entry",
            )
        a.set_defaults(func=run)


def backend(args: argparse.Namespace) -> Autostart:
    systemd = bool(getattr(args, "systemd", False))
    if systemd and not sys.platform.startswith("linux"):
        raise AutostartError("--systemd is only available on Linux")
    return for_platform(systemd=True) if systemd else for_platform()


def run(args: argparse.Namespace) -> int:
    try:
        auto = backend(args)
    except AutostartError as exc:
        print(f"lmstudio-tray autostart: {exc}", file=sys.stderr)
        return EXIT_USAGE
    action = args.autostart_action
    try:
        before = auto.status()
        result = auto.enable() if action == "enable" else auto.disable() if action == "disable" else before
    except (AutostartError, OSError) as exc:
        print(f"lmstudio-tray autostart {action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps({"action": action, "platform": sys.platform, **result.to_json()}, indent=2))
    else:
        print(describe(action, before, result))
    if action == "enable" and not result.enabled:
        return EXIT_FAILURE
    if action == "disable" and result.enabled:
        return EXIT_FAILURE
    return EXIT_OK


def describe(action: str, before: AutostartStatus, after: AutostartStatus) -> str:
    lines: list[str] = []
    if action == "enable":
        if before.user_disabled:
            lines.append("Start at login was switched off in your system settings; it is on again now.")
        lines.append("lmstudio-tray will start at login." if after.enabled
                     else "Start at login could not be turned on.")
    elif action == "disable":
        lines.append("lmstudio-tray will not start at login." if not after.enabled else "Start at login is still on.")
    else:
        if after.enabled:
            lines.append("Start at login: on")
        elif after.user_disabled:
            lines.append("Start at login: off (switched off outside lmstudio-tray; `autostart enable` turns it on)")
        else:
            lines.append("Start at login: off (`lmstudio-tray autostart enable` turns it on)")
    if after.where:
        lines.append(f"  entry:   {after.where} ({after.mechanism})")
    if after.command:
        lines.append(f"  command: {' '.join(after.command)}")
    if after.detail and not after.enabled and after.where:
        lines.append(f"  {after.detail}")
    return "\n".join(lines)
