"""The endpoint's server does not wake its event loop while nobody calls it (uvicorn's own main loop
ticks ten times a second), and still stops at once when asked."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from lmstudio_tray.api.server import attach_endpoint
from lmstudio_tray.core.config import parse_config
from lmstudio_tray.core.runtime import Core, CoreThread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts wake-ups in /proc")


def wakeups(tid: int) -> int:
    status = Path(f"/proc/self/task/{tid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")).split()[1])


def test_an_idle_endpoint_lets_its_loop_sleep_and_stops_when_asked() -> None:
    core = Core(parse_config({"endpoint": {"port": 0}}), lms_path=None)  # no instances: nothing else polls
    server = attach_endpoint(core)
    thread = CoreThread(core)
    thread.start()
    try:
        assert httpx.get(f"{server.url}/v1/health", timeout=30).status_code == 200
        tid = thread._thread.native_id
        assert tid is not None
        time.sleep(0.5)  # let the request's connection close
        before = wakeups(tid)
        time.sleep(2.0)
        # uvicorn's 0.1 s tick would be about 20 here; an event-driven loop has (almost) none
        assert wakeups(tid) - before < 6
    finally:
        stopper = threading.Thread(target=thread.stop, daemon=True)
        stopper.start()
        stopper.join(30)
        assert not stopper.is_alive(), "the endpoint did not stop"
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/health", timeout=5)
