"""`lms daemon up|down|status`, with the texts of the real CLI (src/subcommands/daemon/*.ts): human text and
JSON of `up`/`status` through `console.info` (stdout), `down` through the logger (stderr)."""

from __future__ import annotations

import argparse
import time

from lmstudio_tray.emulator.lms.base import Logger, console, emit_json
from lmstudio_tray.emulator.lms.connect import connect, find_local

SHUTDOWN_WAIT_SECONDS = 5.0


def cmd_daemon_up(args: argparse.Namespace) -> int:
    logger = Logger(args)
    previous = find_local()
    info = connect(argparse.Namespace(), logger).get("/info")
    pid, daemon = info["pid"], info["isDaemon"]
    if args.json:
        emit_json({"status": "running", "pid": pid, "isDaemon": daemon, "version": info["version"]})
    elif previous is not None:
        console(
            f"The daemon is already running (PID: {pid})." if daemon
            else f"LM Studio is already running (PID: {pid}); not starting a second daemon."
        )
    else:
        console(f"llmster started (PID: {pid})." if daemon else f"LM Studio started (PID: {pid}).")
    return 0


def cmd_daemon_down(args: argparse.Namespace) -> int:
    logger = Logger(args)
    control = find_local()
    if control is None:
        logger.info("Daemon is not running.")
        return 1
    if not control.get("/info")["isDaemon"]:
        logger.info("The daemon is currently running as part of LM Studio. Please exit LM Studio to stop it.")
        return 1
    logger.info("Shutting down llmster...")
    control.call("POST", "/kill")
    # requestShutdown resolves once the daemon is going away: wait until its port has closed.
    deadline = time.monotonic() + SHUTDOWN_WAIT_SECONDS
    while find_local() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    logger.info("Done.")
    return 0


def cmd_daemon_status(args: argparse.Namespace) -> int:
    control = find_local()
    if control is None:
        if args.json:
            emit_json({"status": "not-running"})
        else:
            console("LM Studio is not running")
        return 0
    info = control.get("/info")
    if args.json:
        emit_json({"status": "running", "pid": info["pid"], "isDaemon": info["isDaemon"]})
    else:
        name = "llmster" if info["isDaemon"] else "LM Studio"
        console(f"{name} v{info['version']} is running (PID: {info['pid']})")
    return 0
