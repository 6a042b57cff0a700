"""`lmstudio-tray emulator`: run a standalone LM Studio emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lmstudio_tray.emulator.emulator import Emulator
from lmstudio_tray.emulator.state.catalog import load_catalog
from lmstudio_tray.emulator.state.home import write_json
from lmstudio_tray.emulator.state.settings import EmulatorSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmstudio-tray emulator",
        description="Run a fake LM Studio (HTTP API + internal control port) for demos and plugin development.",
    )
    parser.add_argument("--port", type=int, default=0, help="HTTP API port (default: a free port)")
    parser.add_argument("--version", default="0.4.8", help="LM Studio version profile, e.g. 0.3.31 or 0.4.8")
    parser.add_argument("--no-jit", action="store_true", help="turn Just-in-Time model loading off")
    parser.add_argument("--token", default=None, help="require this API token (sk-lm-xxxxxxxx:yyyy...)")
    parser.add_argument("--load-seconds", type=float, default=2.0, help="how long a model load takes")
    parser.add_argument("--catalog", type=Path, default=None, help="JSON list of ModelSpec objects")
    parser.add_argument("--home", type=Path, default=None, help="write an LM Studio home layout here")
    parser.add_argument("--stopped", action="store_true", help="start with the HTTP server off")
    parser.add_argument("--ready-file", type=Path, default=None, help="write {api_url, control_url, pid} here")
    parser.add_argument("--load", action="append", default=[], metavar="KEY", help="preload a model (repeatable)")
    return parser


def settings_from(args: argparse.Namespace) -> EmulatorSettings:
    return EmulatorSettings(
        version=args.version,
        jit=not args.no_jit,
        auth_token=args.token,
        load_seconds=args.load_seconds,
        port=args.port,
        server_running=not args.stopped,
        home=args.home,
        catalog=load_catalog(args.catalog) if args.catalog else None,
    )


def write_ready_file(path: Path, emulator: Emulator) -> None:
    # atomic, so a parent polling for the file never reads a partial document
    write_json(path, {"api_url": emulator.api_url, "control_url": emulator.control_url, "pid": os.getpid()})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except (OSError, ValueError) as exc:
        print(f"lmstudio-tray emulator: {exc}", file=sys.stderr)
        return 2
    emulator = Emulator(settings)
    try:
        emulator.start()
    except OSError as exc:
        print(f"lmstudio-tray emulator: cannot listen: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for key in args.load:
            emulator.load(key)
        if args.ready_file is not None:
            write_ready_file(args.ready_file, emulator)
        state = "running" if emulator.server_running else "stopped"
        print(f"LM Studio emulator {settings.version}: API {emulator.api_url} ({state})", flush=True)
        print(f"Internal API server (control): {emulator.control_url}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        # Also ends when the emulated process is killed through the control port.
        while not stop.is_set() and not emulator.state.dead.wait(0.1):
            pass
    except KeyError as exc:
        print(f"lmstudio-tray emulator: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        emulator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
