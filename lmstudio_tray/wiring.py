"""The composition root: the one place that attaches the surfaces to a core.

`lmstudio-tray serve` and the tray (`lmstudio-tray run`) both call `attach_surfaces`: the OpenCode
endpoint, analytics, opt-in telemetry and desktop notifications, each built once and given what it needs
in its constructor. One surface reaches another only through the protocols of `core/ports.py`: the
analytics service is the endpoint's and the tray's `UsageInsights`, the notification service the tray's
`Reporter`. This module sits above the surfaces (pyproject.toml's import contracts): only the command
line imports it.

What differs for the tray is passed in, nothing else: its endpoint is optional (a tray whose port is
taken, usually by a running `serve`, keeps its icon and notifications; the plugin finds the other one).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmstudio_tray.analytics import Analytics, StoreInsights
from lmstudio_tray.analytics.figures import read_stats, record_bench
from lmstudio_tray.analytics.store import StoreError
from lmstudio_tray.analytics.team_usage import StoreTeamUsage
from lmstudio_tray.core.control.bench import BenchReport
from lmstudio_tray.core.ports import MeasuredFigures, Measurements, UsageInsights
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.diagnostics.telemetry import Telemetry, attach_telemetry
from lmstudio_tray.diagnostics.usage import measured, parse_window
from lmstudio_tray.notify.base import Notifier
from lmstudio_tray.notify.service import NotificationService, make_service

if TYPE_CHECKING:
    from lmstudio_tray.api.server import EndpointError, EndpointServer

log = logging.getLogger(__name__)


def _endpoint_classes() -> tuple[type[EndpointServer], type[EndpointError]]:
    from lmstudio_tray.api.server import EndpointError, EndpointServer

    return EndpointServer, EndpointError


class StoreMeasurements:
    """The endpoint's `Measurements`: the analytics store at `path` (default: the platform's) read and written by the
    functions `lmstudio-tray stats`, `bench` and `models recommend/compare/search` use (the usage figures through
    diagnostics, the rest through analytics). Blocking, like the port says."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def figures(self, since: str) -> MeasuredFigures:
        """See `Measurements.figures`."""
        usage = measured(parse_window(since), self.path)  # the bench figures too (`Performance.bench`)
        return MeasuredFigures(usage.models, usage.performance(), usage.unavailable)

    def stats(self, since: str) -> dict[str, Any]:
        """See `Measurements.stats`."""
        try:
            return read_stats(self.path, since)
        except StoreError as exc:
            return {"window": since, "error": str(exc), "report": None, "suggestions": [], "bench": []}

    def record_bench(self, report: BenchReport, instance: str) -> str | None:
        """See `Measurements.record_bench`."""
        try:
            record_bench(self.path, report, instance)
        except StoreError as exc:
            return str(exc)
        return None


class EndpointService:
    """The endpoint as a core service. FastAPI and uvicorn (~0.3 s to import) are imported in a worker
    thread when it starts, so the core's loop keeps polling (and the tray's icon keeps appearing) meanwhile."""

    def __init__(self, core: Core, *, insights: UsageInsights, port: int | None = None, required: bool = True,
                 measurements: Measurements | None = None) -> None:
        """`required`: a failed start (`EndpointError`: the port or the endpoint lock is taken) fails the core's
        start; otherwise it is logged and the rest runs on. `measurements`: the analytics store for the advice
        tools (the platform's store by default)."""
        self.core = core
        self.insights = insights
        self.measurements: Measurements = measurements or StoreMeasurements()
        self.port = port
        self.required = required
        self.server: EndpointServer | None = None

    @property
    def url(self) -> str | None:
        """Where the endpoint listens; None before it started (or when it could not)."""
        server = self.server
        return server.url if server is not None and server.running else None

    async def start(self) -> None:
        """Import the web stack off the loop, then start serving (see `required`)."""
        endpoint_server, endpoint_error = await asyncio.to_thread(_endpoint_classes)
        if self.server is None:
            self.server = endpoint_server(self.core, port=self.port, insights=self.insights,
                                          measurements=self.measurements)
        try:
            await self.server.start()
        except endpoint_error as exc:
            if self.required:
                raise
            log.warning("the OpenCode endpoint is not running here: %s", exc)
        else:
            log.info("OpenCode endpoint at %s", self.server.url)

    async def stop(self) -> None:
        """Stop serving (nothing when it never started)."""
        if self.server is not None:
            await self.server.stop()


@dataclass(frozen=True)
class Surfaces:
    """What `attach_surfaces` attached to a core."""

    endpoint: EndpointService
    analytics: Analytics | None  # None when `[analytics] enabled = false` (or it could not be built)
    insights: UsageInsights  # the analytics service, or a reader of the store when analytics is off
    telemetry: Telemetry | None
    notifications: NotificationService | None  # None with notify=False

    def close(self) -> None:
        """Detach what is not a core service (the notifications: unsubscribed, their backend closed).
        The tray calls it before its core stops; `serve` once the core has stopped."""
        if self.notifications is not None:
            self.notifications.detach()


def attach_surfaces(
    core: Core,
    *,
    command: str,
    port: int | None = None,
    notify: bool = True,
    notifier: Notifier | None = None,
    endpoint_required: bool = True,
) -> Surfaces:
    """Attach the endpoint, analytics, telemetry and notifications to `core`, before it starts.

    The endpoint and analytics are core services (they start with `core.start()`, or the tray's deferred
    `start_services()`, and stop with it); notifications are subscribed now, so that the first poll's
    news is not missed. `command` is what telemetry counts ("serve", "run"); `port` overrides
    `endpoint.port`; `notifier`: this backend instead of the best one that answers.
    """
    analytics = _analytics(core)
    insights: UsageInsights = analytics if analytics is not None else StoreInsights()
    endpoint = EndpointService(core, insights=insights, port=port, required=endpoint_required)
    core.add_service(endpoint.start, endpoint.stop)
    if analytics is not None:
        core.add_service(analytics.start, analytics.stop)
    # idle unless the team profile names a hub; the usage summary goes to the hub only while analytics records
    usage = StoreTeamUsage() if analytics is not None else None
    core.add_service(functools.partial(core.team_sync.start, usage), core.team_sync.stop)
    core.add_service(core.benches.start, core.benches.stop)  # benches run by other processes (a terminal's)
    telemetry = _telemetry(core, command)
    notifications = _notifications(core, notifier) if notify else None
    return Surfaces(endpoint, analytics, insights, telemetry, notifications)


def _analytics(core: Core) -> Analytics | None:
    if not core.config.analytics.enabled:
        return None
    try:
        return Analytics(core)
    except Exception as exc:  # analytics are an extra; never a reason for the rest not to start
        log.warning("analytics are off: %s", exc)
        return None


def _telemetry(core: Core, command: str) -> Telemetry | None:
    try:
        return attach_telemetry(core, command=command)
    except Exception as exc:  # an extra as well
        log.warning("telemetry is off: %s", exc)
        return None


def _notifications(core: Core, notifier: Notifier | None) -> NotificationService:
    try:
        service = make_service(core, notifier)
    except Exception as exc:  # no notification daemon on a headless box is normal
        from lmstudio_tray.notify.base import LogNotifier

        log.info("desktop notifications unavailable: %s", exc)
        service = make_service(core, LogNotifier())
    service.subscribe(core.bus)
    return service


__all__ = ["EndpointService", "StoreMeasurements", "Surfaces", "attach_surfaces"]
