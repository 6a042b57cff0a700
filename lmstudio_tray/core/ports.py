"""What one surface offers another, as the core defines it.

No surface imports another (pyproject.toml's import contracts): the composition root
(`lmstudio_tray.wiring`) builds each surface and hands one surface's object to another through these
protocols, in their constructors. The notification service is the tray's `Reporter`; the analytics
service is the endpoint's and the tray's `UsageInsights` (when analytics is off, a reader of the store
that records nothing stands in, and with no analytics at all `NoInsights`); the analytics store is the endpoint's
`Measurements` for the agent's advice tools (`NoMeasurements` without one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lmstudio_tray.core.models import BenchFigures

if TYPE_CHECKING:
    from lmstudio_tray.core.control.bench import BenchReport
    from lmstudio_tray.core.control.search import Performance


class Reporter(Protocol):
    """Tells the person what an action they started came to (the tray's clicks), as a notification."""

    def report(self, title: str, body: str, *, replace_key: str | None = None, failure: bool = True) -> None:
        """Show one message now (no dedupe: the person is waiting for it); `replace_key` replaces the bubble
        shown under the same key. Never raises."""
        ...

    def offer(self, title: str, body: str, *, button: str, on_press: Callable[[], None], replace_key: str) -> bool:
        """Show `body` with a button that calls `on_press` (on a thread of the notifier's); False, with nothing
        shown, when notifications are off or have no buttons here (the caller then says it in words)."""
        ...


@dataclass(frozen=True)
class RecordingStatus:
    """Whether usage is being recorded, for the dashboard's live view."""

    recording: bool
    error: str | None
    pending: int = 0
    written: int = 0
    dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        """The dashboard's `analytics` object."""
        return {"recording": self.recording, "error": self.error, "pending": self.pending, "written": self.written,
                "dropped": self.dropped}


NOT_ATTACHED = RecordingStatus(recording=False, error="analytics is not attached to this endpoint")


class UsageInsights(Protocol):
    """What the analytics surface offers the endpoint (forwarded events in; tips, status and history out)
    and the tray (tips)."""

    def tip_texts(self, model: str | None = None) -> list[str]:
        """The cached suggestions, all or those about `model`, as sentences; never blocks (hook path)."""
        ...

    def record_forwarded(self, record: Mapping[str, Any]) -> None:
        """Queue one forwarded OpenCode event for the store; never blocks (hook path)."""
        ...

    def recording_status(self) -> RecordingStatus:
        """Is usage recorded now, and how far the writer is; never blocks."""
        ...

    def history(self, since: str, known_models: set[str]) -> dict[str, Any]:
        """The dashboard's charts, report, suggestions and bench runs (`bench`) for the window `since` ("7d",
        "24h", "all").
        Blocking (reads the store): call it off the core loop. ValueError names a bad `since`."""
        ...

    def bench_figures(self) -> Mapping[str, tuple[BenchFigures, ...]]:
        """The latest bench figures per model, suite and instance (cached with the tips: the system transform's measured
        advice, the tray's "fastest here for coding"); never blocks (hook path)."""
        ...


class NoInsights:
    """`UsageInsights` with no analytics surface at all: no tips, nothing recorded, no history."""

    def tip_texts(self, model: str | None = None) -> list[str]:
        """No tips."""
        return []

    def record_forwarded(self, record: Mapping[str, Any]) -> None:
        """Dropped: nothing records."""

    def recording_status(self) -> RecordingStatus:
        """Not recording: nothing is attached."""
        return NOT_ATTACHED

    def history(self, since: str, known_models: set[str]) -> dict[str, Any]:
        """An empty history that says why."""
        return {"empty": True, "message": NOT_ATTACHED.error, "series": None, "report": None, "suggestions": [],
                "bench": []}

    def bench_figures(self) -> Mapping[str, tuple[BenchFigures, ...]]:
        """No figures."""
        return {}



@dataclass(frozen=True)
class MeasuredFigures:
    """What the analytics store measured per model: usage through OpenCode over a window (`models[key]`, the
    analytics ModelStats as JSON), `performance` as `recommend` takes it (with each model's latest bench figures
    per suite, `Performance.bench`, of any age), or why there is nothing (`unavailable`)."""

    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    performance: Mapping[str, Performance] = field(default_factory=dict)
    unavailable: str | None = None

    def bench(self, key: str) -> tuple[BenchFigures, ...]:
        """The latest bench figures of model `key`, one per suite it was benched in (the current suite version)."""
        p = self.performance.get(key)
        return p.bench if p is not None else ()

    def usage(self) -> dict[str, int]:
        """How often each model was used (what `search` ranks by)."""
        return {key: p.uses for key, p in self.performance.items()}


class Measurements(Protocol):
    """What the analytics store offers the endpoint's advice tools (benchmark, recommend, compare, stats, search),
    built by the composition root on the same functions `lmstudio-tray stats/bench/models` use. Every method
    blocks (SQLite): call it off the core loop."""

    def figures(self, since: str) -> MeasuredFigures:
        """Usage figures of the window `since` ("30d", "7d", "all") and the latest bench figures per model; a store
        that cannot be read is `unavailable`, never an error. ValueError names a bad `since`."""
        ...

    def stats(self, since: str) -> dict[str, Any]:
        """`lmstudio-tray stats --json` for the window: `report`, `suggestions`, `bench`; `error` says why there is
        none. ValueError names a bad `since`."""
        ...

    def record_bench(self, report: BenchReport, instance: str) -> str | None:
        """Keep a bench's results in the store, like `lmstudio-tray bench`; None when kept, else why not."""
        ...


NOTHING_MEASURED = "the analytics store is not attached to this endpoint"


class NoMeasurements:
    """`Measurements` without an analytics store: nothing measured, nothing kept."""

    def figures(self, since: str) -> MeasuredFigures:
        """Nothing measured, and why."""
        return MeasuredFigures(unavailable=NOTHING_MEASURED)

    def stats(self, since: str) -> dict[str, Any]:
        """No report, and why."""
        return {"window": since, "error": NOTHING_MEASURED, "report": None, "suggestions": [], "bench": []}

    def record_bench(self, report: BenchReport, instance: str) -> str | None:
        """Not kept, and why."""
        return NOTHING_MEASURED
