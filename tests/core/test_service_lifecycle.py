"""Services start all together or not at all, and a stop always finishes: a service that fails to start
stops the ones started before it (the endpoint's port and lock are free again) and its error reaches the
caller; a cancelled stop still cleans everything up, then lets the cancellation through."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import pytest

from lmstudio_tray.analytics import attach_analytics
from lmstudio_tray.analytics.store import Store, default_path
from lmstudio_tray.api.server import EndpointServer, attach_endpoint
from lmstudio_tray.cli import main
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import parse_config
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.lock import SingleInstance
from lmstudio_tray.emulator import Emulator


def damage_analytics_file() -> Path:
    """An analytics database whose header is fine but one table is garbage (a disk fault): it opens, and
    the first real query fails."""
    path = default_path()
    Store(path).close()
    with sqlite3.connect(path) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'loads'").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * page_size)
    return path


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a listener still there is what counts
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def endpoint_lock_is_free() -> bool:
    target = paths.endpoint_file()
    lock = SingleInstance(target.with_name(target.name + ".lock"))
    if lock.acquire() is not None:
        return False
    lock.release()
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_endpoint_gone(port: int) -> None:
    assert port_is_free(port), f"port {port} is still held by the endpoint"
    assert endpoint_lock_is_free(), "the endpoint's lock is still held"
    assert not paths.endpoint_file().exists()


async def test_a_damaged_analytics_file_turns_analytics_off_and_the_endpoint_runs_on(emulator: Emulator) -> None:
    damaged = damage_analytics_file()
    core = Core(parse_config({"instances": [{"name": "local", "url": emulator.api_url}],
                              "endpoint": {"port": 0}}), lms_path=None)
    server = attach_endpoint(core)
    analytics = attach_analytics(core)
    assert analytics is not None
    await core.start()
    try:
        assert server.running  # analytics is an extra: never a reason for the endpoint to go
        assert analytics.error is not None and str(damaged) in analytics.error and "move it aside" in analytics.error
    finally:
        await core.stop()


async def test_a_failed_start_raises_the_services_own_error_and_nothing_stays_started(emulator: Emulator) -> None:
    core = Core(parse_config({"instances": [{"name": "local", "url": emulator.api_url}],
                              "endpoint": {"port": 0}}), lms_path=None)
    server = attach_endpoint(core)
    stopped: list[str] = []

    async def refuses() -> None:
        raise PermissionError("the service cannot open its socket")

    async def stop() -> None:
        stopped.append("refuses")  # never started, so never stopped

    core.add_service(refuses, stop)
    with pytest.raises(PermissionError, match="cannot open its socket"):
        await core.start()
    try:
        assert stopped == []
        assert_endpoint_gone(server.port)
        # the tray's deferred start logs the failure instead of raising, and also leaves nothing started
        await core.start_services()
        assert_endpoint_gone(server.port)
    finally:
        await core.stop()
    assert_endpoint_gone(server.port)


def test_serve_reports_a_service_that_failed_to_start_and_leaves_nothing_behind(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # the endpoint gets its port and lock, then cannot write endpoint.json (a directory is in its way)
    paths.endpoint_file().mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n')
    port = free_port()
    assert main(["--config", str(config), "serve", "--port", str(port), "--no-notify"]) == 1
    err = capsys.readouterr().err
    assert "serve could not start" in err and "endpoint.json" in err and "nothing was left running" in err
    paths.endpoint_file().rmdir()
    assert_endpoint_gone(port)


@pytest.mark.parametrize("watching", [True, False], ids=["config-watcher", "no-config-file"])
async def test_a_cancelled_stop_finishes_the_cleanup_then_raises(
    tmp_path: Path, emulator: Emulator, watching: bool
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n\n[endpoint]\nport = 0\n')
    core = Core(load_config(path), config_path=path if watching else None, lms_path=None)
    server: EndpointServer = attach_endpoint(core)
    await core.start()
    assert server.running and not port_is_free(server.port)

    stopping = asyncio.ensure_future(core.stop())
    await asyncio.sleep(0)  # the stop is under way (waiting on the watcher, or on the endpoint)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled()
    assert_endpoint_gone(server.port)
    polling = [t for t in asyncio.all_tasks() if "InstanceMonitor.run" in repr(t.get_coro())]
    assert polling == []  # the poll loop ended too
    await core.stop()  # a second stop is harmless
