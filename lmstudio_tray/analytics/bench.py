"""Bench results in the analytics store: one `bench_runs` row per model and bench, with what makes two rows
comparable (suite and its version, LM Studio's version, quantisation, context), and the table `stats` shows."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from lmstudio_tray.analytics.store import Row
from lmstudio_tray.core.control.bench import SUITE_VERSION, BenchReport, Spread
from lmstudio_tray.core.models import BenchFigures

_INSERT = (
    "INSERT INTO bench_runs(ts, instance, lmstudio_version, suite, suite_version, model, quantization, "
    "context_length, memory_bytes, runs, load_s, first_token_s, first_token_low, first_token_high, prompt_tps, "
    "prompt_tps_low, prompt_tps_high, gen_tps, gen_tps_low, gen_tps_high, checks_passed, checks) "
    "VALUES (" + ", ".join("?" * 22) + ")"
)


def _three(spread: Spread | None) -> tuple[float | None, float | None, float | None]:
    return (spread.median, spread.low, spread.high) if spread else (None, None, None)


def bench_rows(report: BenchReport, *, instance: str, ts: float) -> list[Row]:
    """The rows of one bench, for `Store.write` (one transaction)."""
    return [
        (_INSERT, (
            ts, instance, report.lmstudio_version, report.suite.value, report.suite_version, r.model,
            r.quantization, r.context_length, r.memory_bytes, r.runs, r.load_seconds,
            *_three(r.first_token_seconds), *_three(r.prompt_tokens_per_s), *_three(r.generated_tokens_per_s),
            r.checks_passed, r.checks,
        ))
        for r in report.results
    ]


BENCH_COLUMNS = (
    "ts", "instance", "lmstudio_version", "suite", "suite_version", "model", "quantization", "context_length",
    "memory_bytes", "runs", "load_s", "first_token_s", "prompt_tps", "gen_tps", "gen_tps_low", "gen_tps_high",
    "checks_passed", "checks",
)


def bench_history(conn: sqlite3.Connection, since: float | None, until: float) -> list[dict[str, Any]]:
    """Bench rows of the window, newest first."""
    rows: Sequence[Any] = conn.execute(
        f"SELECT {', '.join(BENCH_COLUMNS)} FROM bench_runs WHERE ts >= ? AND ts <= ? ORDER BY ts DESC, gen_tps DESC",
        (since if since is not None else 0.0, until),
    ).fetchall()
    return [dict(zip(BENCH_COLUMNS, row, strict=True)) for row in rows]


_LATEST = (
    "SELECT model, suite, suite_version, ts, instance, gen_tps, gen_tps_low, gen_tps_high, first_token_s, load_s, "
    "checks_passed, checks FROM (SELECT *, row_number() OVER (PARTITION BY model, suite, instance "
    "ORDER BY ts DESC, id DESC) AS n FROM bench_runs WHERE suite_version = ? AND model IS NOT NULL "
    "AND suite IS NOT NULL) WHERE n = 1 ORDER BY model, suite, instance"
)


def latest_bench(conn: sqlite3.Connection, suite_version: int = SUITE_VERSION) -> list[BenchFigures]:
    """The latest row per model, suite and instance of `suite_version` (figures of another version, or of another
    machine, do not compare), as the figures advice uses (`models recommend/compare`, the tips, the system
    transform)."""
    return [
        BenchFigures(
            model=str(r[0]), suite=str(r[1]), suite_version=int(r[2]), measured_at=float(r[3]),
            instance=r[4], gen_tps=r[5], gen_tps_low=r[6], gen_tps_high=r[7], first_token_s=r[8], load_s=r[9],
            checks_passed=int(r[10] or 0), checks=int(r[11] or 0),
        )
        for r in conn.execute(_LATEST, (suite_version,)).fetchall()
    ]
