"""What one surface offers another, as the core defines it.

No surface imports another (pyproject.toml's import contracts): the composition root
(`lmstudio_tray.wiring`) builds each surface and hands one surface's object to another through these
protocols, in their constructors. The notification service is the tray's `Reporter`; the analytics
service is the endpoint's and the tray's `UsageInsights` (when analytics is off, a reader of the store
that records nothing stands in, and with no analytics at all `NoInsights`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lmstudio_tray.core.models import BenchFigures


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
        """The latest bench figures per model and suite (cached with the tips: the system transform's measured
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


class TeamUsage(Protocol):
    """What the analytics surface offers the team hub's member side (`TeamSync`): this member's anonymised usage
    summary, the figures `lmstudio-tray team export` writes (counts per model and per shared instance, no prompts,
    sessions, agents or times)."""

    def summary(self, shared_instances: Sequence[str], team: str | None, days: float) -> dict[str, Any]:
        """The summary of the last `days`; instances not in `shared_instances` counted as "private". Blocking
        (reads the store): call it off the core loop."""
        ...
