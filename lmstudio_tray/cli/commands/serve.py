"""`lmstudio-tray serve`: the core and the endpoint without a tray (headless machines, CI, tests)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from lmstudio_tray.cli._common import EXIT_FAILURE, EXIT_OK, make_core
from lmstudio_tray.core.events import ALL_KINDS, Event, VerdictGiven

log = logging.getLogger("lmstudio_tray.serve")


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the monitor and the OpenCode endpoint headless (no tray)",
        description="Run the core and the loopback endpoint for the OpenCode plugin until interrupted. "
        "Prints the endpoint URL; state changes are logged.",
    )
    p.add_argument("--port", type=int, default=None,
                   help="endpoint port (default: endpoint.port; 0 = any free); with --hub the hub's (default 8765)")
    p.add_argument("--no-notify", action="store_true", help="do not show desktop notifications")
    hub = p.add_argument_group("team hub", "with --hub, run the team hub instead of the endpoint "
                               "(docs/multi-instance.md)")
    hub.add_argument("--hub", action="store_true", help="run the team hub: members share which models they use")
    hub.add_argument("--host", default="127.0.0.1",
                     help="the hub's address (default 127.0.0.1; any other needs --tls-cert and --tls-key)")
    hub.add_argument("--tls-cert", metavar="PEM", help="the hub's TLS certificate (chain)")
    hub.add_argument("--tls-key", metavar="PEM", help="the hub's TLS private key")
    hub.add_argument("--state-dir", metavar="DIR", help="the hub's state dir (default: hub/ in the state dir)")
    p.set_defaults(func=run)


def run_hub(args: argparse.Namespace) -> int:
    """`serve --hub`: the team hub until interrupted (it needs no core: it never talks to LM Studio)."""
    import threading
    from pathlib import Path

    from lmstudio_tray.cli.hub import hub_state
    from lmstudio_tray.hub.server import HubError, HubServer, HubSettings

    if bool(args.tls_cert) != bool(args.tls_key):
        print("lmstudio-tray: give both --tls-cert and --tls-key, or neither", file=sys.stderr)
        return EXIT_FAILURE
    settings = HubSettings(state=hub_state(args.state_dir), host=args.host,
                           port=8765 if args.port is None else args.port,
                           cert=Path(args.tls_cert) if args.tls_cert else None,
                           key=Path(args.tls_key) if args.tls_key else None)
    server = HubServer(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL is printed: a stop right after it is clean
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except HubError as exc:
        print(f"lmstudio-tray: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"lmstudio-tray hub: {server.url}", flush=True)
    stop.wait()
    server.stop()
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.hub:
        return run_hub(args)
    from lmstudio_tray.api.server import EndpointError
    from lmstudio_tray.platform.process import shorten_switch_interval
    from lmstudio_tray.wiring import attach_surfaces

    shorten_switch_interval()  # the endpoint's p99 next to busy threads (see platform.process)
    core = make_core(args)
    surfaces = attach_surfaces(core, command="serve", port=args.port, notify=not args.no_notify)

    def on_event(event: Event) -> None:
        print(f"{event.kind} {event.instance}: " + ", ".join(
            f"{k}={v}" for k, v in event.to_json().items() if k not in ("kind", "instance") and v not in (None, "")
        ), file=sys.stderr, flush=True)

    # not VerdictGiven: one per hook call is too many for a terminal, and they are in the stats
    core.bus.subscribe(on_event, *(kind for kind in ALL_KINDS if kind is not VerdictGiven))

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        try:
            await core.start()  # a service that fails stops the ones already started (port, lock) again
        except EndpointError as exc:
            print(f"lmstudio-tray: {exc}", file=sys.stderr)
            await core.stop()
            return EXIT_FAILURE
        except Exception as exc:
            log.debug("start failed", exc_info=True)
            print(f"lmstudio-tray: serve could not start ({type(exc).__name__}: {exc}); nothing was left "
                  "running.", file=sys.stderr)
            await core.stop()
            return EXIT_FAILURE
        print(f"lmstudio-tray endpoint: {surfaces.endpoint.url}", flush=True)
        for snap in core.status().instances:
            print(f"{snap.name} ({snap.url}): {snap.state.value}", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            await core.stop()
        return EXIT_OK

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    finally:
        surfaces.close()
