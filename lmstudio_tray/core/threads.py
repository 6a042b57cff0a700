"""Checks of the threading model (docs/architecture.md, "Threading model").

The core's asyncio loop runs the monitor, the actions, the endpoint and every bus subscriber; it never
blocks. A surface with work of its own does it on its own thread (the tray's redraws, the analytics
writer, a notifier's sender) and hands work to the core loop with `CoreThread.submit`. Code that must not
run on the wrong side says so with these checks: a violation raises `WrongThread` at once, in the tests
that exercise it, instead of showing up as a stalled loop or a deadlock.
"""

from __future__ import annotations

import asyncio


class WrongThread(RuntimeError):
    """Code ran on a thread the threading model does not allow for it; the message says where it belongs."""


def on_event_loop() -> bool:
    """Is this thread running an asyncio loop now (the core loop, or a test's)?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def not_on_event_loop(what: str) -> None:
    """Raise `WrongThread` when called on a thread that runs an event loop: `what` blocks, or costs more than
    the loop may spend, and belongs on a surface's own thread or a worker (`asyncio.to_thread`)."""
    if on_event_loop():
        raise WrongThread(f"{what} must not run on the core's event loop: run it on a worker thread "
                          "(asyncio.to_thread) or on the surface's own thread")
