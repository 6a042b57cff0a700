"""The analytics as other surfaces see it (`core.ports.UsageInsights`), with analytics off in this process:
the dashboard still reads the store, off the core's loop only."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from lmstudio_tray.analytics import StoreInsights
from lmstudio_tray.core.ports import NOT_ATTACHED, NoInsights
from lmstudio_tray.core.threads import WrongThread
from tests.analytics import streams as s
from tests.analytics.helpers import BASE, ingest

MODEL = "qwen/qwen3-4b-2507"
NOW = time.time()


def test_with_analytics_off_the_store_is_still_read_and_nothing_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "analytics.sqlite3"
    ingest(path, s.turns(BASE, MODEL, NOW - 3600, 3, session="a", seconds=1.0, output=10))
    insights = StoreInsights(path)
    history = insights.history("7d", {MODEL})
    assert history["empty"] is False and history["report"]["totals"]["turns"] == 3
    assert insights.tip_texts() == [] and insights.recording_status() == NOT_ATTACHED
    insights.record_forwarded({"type": "session.idle"})  # dropped, never an error
    with pytest.raises(ValueError, match="later"):
        insights.history("later", set())
    assert StoreInsights(tmp_path / "none.sqlite3").history("7d", set())["empty"] is True


def test_the_history_is_never_read_on_the_core_loop(tmp_path: Path) -> None:
    insights = StoreInsights(tmp_path / "analytics.sqlite3")

    async def on_the_loop() -> None:
        insights.history("7d", set())

    with pytest.raises(WrongThread, match="analytics history must not run on the core's event loop"):
        asyncio.run(on_the_loop())

    async def as_the_dashboard_does() -> None:
        await asyncio.to_thread(insights.history, "7d", set())

    asyncio.run(as_the_dashboard_does())


def test_without_any_analytics_the_endpoint_gets_nothing_and_no_error() -> None:
    none = NoInsights()
    assert none.tip_texts("x") == [] and none.recording_status().recording is False
    assert none.history("7d", set())["empty"] is True
