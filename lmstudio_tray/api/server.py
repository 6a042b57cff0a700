"""Serving the endpoint: uvicorn inside the core's event loop, bound to 127.0.0.1 only.

`attach_endpoint(core)` registers it as a core service, so it starts and stops with the core (in
`serve`, and in the tray's core thread). Start publishes the discovery file; stop removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import time
from collections.abc import Generator
from pathlib import Path

import uvicorn

from lmstudio_tray import __version__
from lmstudio_tray.api.app import create_app
from lmstudio_tray.api.router import make_router
from lmstudio_tray.api.security import LoopbackGuard
from lmstudio_tray.core.control.routing import Router
from lmstudio_tray.core.errors import LockError
from lmstudio_tray.core.hooks.sessions import SessionTracker
from lmstudio_tray.core.ports import Measurements, NoInsights, NoMeasurements, UsageInsights
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.endpoint_file import EndpointInfo, read_endpoint, remove_endpoint, write_endpoint
from lmstudio_tray.core.support.lock import SingleInstance
from lmstudio_tray.core.support.logs import register_secret

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


class EndpointError(Exception):
    """The endpoint cannot start; the message says why and what to do."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The process owner (serve, the tray) handles signals and stops the core; uvicorn must not.
        yield

    # uvicorn's main loop wakes every 0.1 s to look at `should_exit` (and to refresh the Date header, which
    # is off here): ten wake-ups a second were most of an idle tray's. Waiting on an event costs none.
    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        # set on the core's loop only (stop(); uvicorn's own signal handlers are not installed)
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers, which uvicorn computes on its first tick
        await self._exit.wait()


class EndpointServer:
    """The endpoint of one core: listens on 127.0.0.1, serves `create_app`, publishes the discovery file."""

    def __init__(self, core: Core, *, port: int | None = None, discovery_file: Path | None = None,
                 insights: UsageInsights | None = None, measurements: Measurements | None = None) -> None:
        """`port`: this one instead of the config's `endpoint.port` (read at each start). `insights`: the
        analytics surface (tips for the system transform, forwarded events, the dashboard's data), as the
        composition root passes it; without it the endpoint has none. `measurements`: the analytics store for
        the advice tools (none without)."""
        self.core = core
        self._port = port
        self.discovery_file = discovery_file
        self.insights: UsageInsights = insights or NoInsights()
        self.measurements: Measurements = measurements or NoMeasurements()
        self.token = ""
        self.port = 0
        self.sessions = SessionTracker(
            core.bus, invalidate=core.monitor.invalidate, instance_for_url=core.monitor.instance_for_url,
            sinks=(self.insights.record_forwarded,) if insights is not None else (),
        )
        self.router: Router | None = None  # the pool router of the last start (its figures outlive a stop)
        self.app: LoopbackGuard | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._lock: SingleInstance | None = None

    @property
    def url(self) -> str:
        """Where it listens (once started)."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Serving now."""
        return self._task is not None and not self._task.done()

    @property
    def requested_port(self) -> int:
        """The port asked for (0: any free one)."""
        return self.core.config.endpoint.port if self._port is None else self._port

    def _bind(self) -> socket.socket:
        # Two starts at once would both find no discovery file yet (it is written once uvicorn runs): an
        # OS lock decides. The OS drops it when the process dies, so a crash leaves nothing stale behind.
        target = self.discovery_file or paths.endpoint_file()
        lock = SingleInstance(target.with_name(target.name + ".lock"))
        try:
            holder = lock.acquire()
        except LockError as exc:
            raise EndpointError(str(exc)) from None
        if holder is None:
            self._lock = lock
        elif holder != os.getpid():
            raise EndpointError(
                f"another lmstudio-tray{f' (pid {holder})' if holder else ''} already serves the endpoint; "
                "stop it first, or use that one"
            )
        other = read_endpoint(self.discovery_file)
        if other is not None and other.pid != os.getpid():
            raise EndpointError(
                f"another lmstudio-tray (pid {other.pid}) already serves the endpoint at {other.url}; "
                "stop it first, or use that one"
            )
        # proto must be IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets that say
        # so, and without it Nagle + delayed ACK add ~40 ms to every hook call.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        if os.name != "nt":
            # lets a restart reuse the fixed port right away (TIME_WAIT); on Windows it would allow hijacking
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, self.requested_port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)) and self.requested_port:
                log.warning("port %d is taken; the endpoint uses a free port instead (the plugin finds it "
                            "through endpoint.json). Set endpoint.port to choose another.", self.requested_port)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.bind((HOST, 0))
            else:
                raise EndpointError(f"cannot listen on {HOST}:{self.requested_port}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        """Listen, serve, then publish the discovery file. A failed start leaves nothing held (the lock,
        the port, a half-started server): it is stopped again before the error is raised."""
        if self.running:
            return
        self.token = secrets.token_urlsafe(32)
        register_secret(self.token)
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        log.info("endpoint listening on %s", self.url)

    async def _start(self) -> None:
        # the lock file and the other endpoint's discovery file are disk I/O (psutil may load to check its pid)
        self._sock = await asyncio.to_thread(self._bind)
        self.port = int(self._sock.getsockname()[1])
        # FastAPI builds every route's models (~0.1 s of CPU, more on a busy machine), the dashboard imports
        # the analytics reports, uvicorn imports its protocol: none of that on the loop validate runs on
        self.app, config = await asyncio.to_thread(self._build)
        self._server = _Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done():
                exc = self._task.exception()
                raise EndpointError(f"the endpoint failed to start: {exc}")
            if time.monotonic() > deadline:
                raise EndpointError("the endpoint did not start within 10 s")
            await asyncio.sleep(0.01)
        info = EndpointInfo(url=self.url, token=self.token, pid=os.getpid(), started_at=time.time(),
                            version=__version__)
        await asyncio.to_thread(write_endpoint, info, self.discovery_file)  # written and fsynced

    def _build(self) -> tuple[LoopbackGuard, uvicorn.Config]:
        """The ASGI app and uvicorn's config, loaded (runs in a worker thread)."""
        self.router = make_router(self.core)
        app = create_app(self.core, token=self.token, port=lambda: self.port, sessions=self.sessions,
                         router=self.router, insights=self.insights, measurements=self.measurements)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="none",
            http="h11" if not _has_httptools() else "httptools",
            ws="none",
            timeout_keep_alive=30,
            server_header=False,
            date_header=False,
        )
        config.load()
        return app, config

    async def stop(self) -> None:
        """Stop serving, remove the discovery file, close the port and release the lock; also after a
        partial start, and to the end even when the caller is cancelled meanwhile."""
        try:
            if self.token:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(remove_endpoint, self.token, self.discovery_file)
            if self._server is not None:
                self._server.should_exit = True
            if self._task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
                except asyncio.CancelledError:
                    raise
                except Exception:  # it did not finish in time, or it failed: it goes
                    await self._abort()
        finally:
            if self._task is not None and not self._task.done():  # the caller was cancelled meanwhile
                if self._server is not None:
                    self._server.force_exit = True
                self._task.cancel()
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.close()
            self._task = self._server = self._sock = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        if self.router is not None:  # its pooled connections, and the last model uses into their file
            await self.router.aclose()

    async def _abort(self) -> None:
        if self._server is not None:
            self._server.force_exit = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _has_httptools() -> bool:
    # httptools parses HTTP several times faster than h11: worth it on the hook path when installed.
    import importlib.util

    return importlib.util.find_spec("httptools") is not None


def attach_endpoint(core: Core, *, port: int | None = None, discovery_file: Path | None = None,
                    insights: UsageInsights | None = None, measurements: Measurements | None = None) -> EndpointServer:
    """Serve the endpoint whenever `core` runs (registered with `core.add_service`)."""
    server = EndpointServer(core, port=port, discovery_file=discovery_file, insights=insights,
                            measurements=measurements)
    core.add_service(server.start, server.stop)
    return server
