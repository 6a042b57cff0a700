"""Measured figures from the analytics store, for `models compare/recommend/search` and the debug export.

The analytics package is optional here (guarded import): without it, or before anything was recorded,
every function answers "nothing measured" and says why, instead of failing.
"""

from __future__ import annotations

import importlib
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmstudio_tray.core.control.search import Performance
from lmstudio_tray.core.models import BenchFigures
from lmstudio_tray.core.threads import not_on_event_loop

DEFAULT_WINDOW_S = 30 * 86400.0
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> float:
    """'7d', '12h', '30m', '2w' -> seconds; 'all' -> infinity."""
    if text.strip().lower() == "all":
        return math.inf
    match = _WINDOW.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--since {text!r}: use a number with a unit s, m, h, d or w (e.g. 7d, 12h), or 'all'")
    return float(match.group(1)) * _UNIT_S[match.group(2).lower()]


@dataclass(frozen=True)
class Measured:
    """Per-model figures (`models[key]` is the analytics ModelStats as JSON; `bench[key]` the latest bench figures
    per suite of the current suite version, whenever measured), or why there are none."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    window_s: float = DEFAULT_WINDOW_S
    unavailable: str | None = None
    bench: dict[str, tuple[BenchFigures, ...]] = field(default_factory=dict)

    def performance(self) -> dict[str, Performance]:
        """Every model with usage figures (from the window) or bench figures: `recommend`'s input."""
        out: dict[str, Performance] = {}
        for key in {*self.models, *self.bench}:
            m = self.models.get(key, {})
            success = m.get("session_success_rate")
            if success is None:
                success = m.get("turn_success_rate")
            out[key] = Performance(
                uses=int(m.get("turns") or 0) + int(m.get("verdicts") or 0),
                success_rate=success,
                tokens_per_second=m.get("tokens_per_s"),
                p50_latency_ms=None if m.get("latency_p50_s") is None else float(m["latency_p50_s"]) * 1000,
                bench=self.bench.get(key, ()),
            )
        return out

    def usage(self) -> dict[str, int]:
        return {key: p.uses for key, p in self.performance().items()}


def measured(window_s: float = DEFAULT_WINDOW_S, path: Path | None = None) -> Measured:
    """The usage figures of the window and the latest bench figures (of any age: a bench is not repeated daily),
    read from the store with a read-only connection. Blocking: never on an event loop (`WrongThread`)."""
    not_on_event_loop("reading the analytics store")
    try:
        store = importlib.import_module("lmstudio_tray.analytics.store")
        reports = importlib.import_module("lmstudio_tray.analytics.reports")
        benches = importlib.import_module("lmstudio_tray.analytics.bench")
    except ImportError:
        return Measured(window_s=window_s, unavailable="the analytics module is not part of this install")
    now = time.time()
    try:
        with store.reading(path) as conn:
            report = reports.build_report(conn, now - window_s, now)
            latest: list[BenchFigures] = benches.latest_bench(conn)
    except store.StoreError as exc:
        return Measured(window_s=window_s, unavailable=str(exc))
    except Exception as exc:  # a store from an unexpected version: say so, do not fail the command
        return Measured(window_s=window_s, unavailable=f"the analytics store could not be read ({exc})")
    bench: dict[str, tuple[BenchFigures, ...]] = {}
    for b in latest:
        bench[b.model] = (*bench.get(b.model, ()), b)
    return Measured({m.model: m.to_json() for m in report.models}, window_s, bench=bench)


def stats_summary(window_s: float = 7 * 86400.0, path: Path | None = None) -> dict[str, Any]:
    """What the debug export includes: the report's totals and per-model figures (no prompts, no tokens)."""
    try:
        store = importlib.import_module("lmstudio_tray.analytics.store")
        reports = importlib.import_module("lmstudio_tray.analytics.reports")
    except ImportError:
        return {"available": False, "why": "the analytics module is not part of this install"}
    now = time.time()
    try:
        with store.reading(path) as conn:
            report = reports.build_report(conn, now - window_s, now)
    except store.StoreError as exc:
        return {"available": False, "why": str(exc)}
    except Exception as exc:
        return {"available": False, "why": f"the analytics store could not be read ({exc})"}
    return {"available": True, "window_days": window_s / 86400, **report.to_json()}
