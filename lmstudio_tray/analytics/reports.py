"""Reports over the store: per model and per instance figures, and time series for the dashboard.

Everything takes a connection and a time window, so `stats`, the dashboard and the suggestions share
the same numbers.
"""

from __future__ import annotations

import math
import re
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

NEAR_CONTEXT = 0.9  # a turn that used this share of the loaded context is "near" it
UP_STATES = frozenset({"ready", "idle", "loading"})
DOWN_KINDS = ("offline", "auth_failed", "error")
_SINCE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    """'7d', '12h', '30m', '2w' or 'all' -> seconds (inf for all)."""
    if text.strip().lower() == "all":
        return math.inf
    m = _SINCE_RE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--since {text!r}: use a number with a unit s, m, h, d or w (e.g. 7d, 12h), or 'all'")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]


def percentile(values: Iterable[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    # nearest-rank: an observed value, never an interpolation between two
    return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]


@dataclass
class ModelStats:
    model: str
    instances: list[str] = field(default_factory=list)
    verdicts: int = 0
    verdicts_blocked: int = 0
    verdict_categories: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    turn_errors: int = 0
    sessions: int = 0
    sessions_ok: int = 0
    sessions_failed: int = 0
    session_success_rate: float | None = None
    turn_success_rate: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    tokens_per_s: float | None = None  # median over turns
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    output_per_input: float | None = None
    loaded_context: int | None = None  # the largest loaded context seen with a turn
    context_used_max: int | None = None
    context_used_p95: int | None = None
    context_usage_p95: float | None = None  # share of the loaded context
    turns_near_context: int = 0
    context_errors: int = 0  # ContextOverflowError, or verdicts saying the context is too small
    loads: int = 0
    load_failures: int = 0
    load_p50_s: float | None = None
    load_total_s: float = 0.0
    size_bytes: int | None = None
    last_used: float | None = None
    # how long its OpenCode sessions lasted (first to last activity, the end included): median and sum
    session_median_s: float | None = None
    session_total_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class InstanceStats:
    instance: str
    observed_s: float = 0.0
    up_s: float = 0.0
    uptime: float | None = None
    state: str | None = None
    failures: int = 0  # went offline / auth failed / errored
    load_failures: int = 0
    session_errors: int = 0
    validate_p50_ms: float | None = None
    rss_bytes: int | None = None  # the latest sample of LM Studio's processes
    cpu_percent_avg: float | None = None
    loaded_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Report:
    since: float
    until: float
    models: list[ModelStats]
    instances: list[InstanceStats]
    verdict_categories: dict[str, int]
    totals: dict[str, int]

    def model(self, name: str) -> ModelStats | None:
        return next((m for m in self.models if m.model == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "totals": self.totals,
            "verdict_categories": self.verdict_categories,
            "models": [m.to_json() for m in self.models],
            "instances": [i.to_json() for i in self.instances],
        }


def build_report(conn: sqlite3.Connection, since: float, until: float) -> Report:
    """Per-model and per-instance figures for the window [since, until] (what `stats` and the dashboard show)."""
    w = (since, until)
    tally = _Tally()
    tally.add_verdicts(conn, w)
    tally.add_turns(conn, w)
    tally.add_sessions(conn, w)
    tally.add_loads(conn, w)
    tally.finish()

    instances = _instance_stats(conn, since, until, tally.validate_ms)
    for r in conn.execute("SELECT instance, count(*) FROM loads WHERE ok = 0 AND ts >= ? AND ts <= ? "
                          "GROUP BY instance", w):
        _inst(instances, r[0]).load_failures = r[1]
    for r in conn.execute("SELECT instance, count(*) FROM session_events WHERE kind IN ('error', 'retry') "
                          "AND ts >= ? AND ts <= ? AND instance IS NOT NULL GROUP BY instance", w):
        _inst(instances, r[0]).session_errors = r[1]

    ordered = sorted(tally.models.values(), key=lambda s: (-(s.turns + s.verdicts), s.model))
    totals = {
        "verdicts": sum(m.verdicts for m in ordered),
        "turns": sum(m.turns for m in ordered),
        "sessions": sum(m.sessions for m in ordered),
        "loads": sum(m.loads for m in ordered),
    }
    return Report(since, until, ordered, sorted(instances.values(), key=lambda i: i.instance),
                  dict(tally.categories), totals)


class _Tally:
    """The per-model sums of one report, table by table, and the samples its medians and percentiles
    come from."""

    def __init__(self) -> None:
        self.models: dict[str, ModelStats] = {}
        self.categories: dict[str, int] = defaultdict(int)
        self.validate_ms: dict[str, list[float]] = defaultdict(list)
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.speeds: dict[str, list[float]] = defaultdict(list)
        self.ctx_used: dict[str, list[int]] = defaultdict(list)
        self.ctx_share: dict[str, list[float]] = defaultdict(list)
        self.load_times: dict[str, list[float]] = defaultdict(list)
        self.session_times: dict[str, list[float]] = defaultdict(list)

    def stats_for(self, name: str | None, instance: str | None = None) -> ModelStats:
        key = name or "(unknown)"
        m = self.models.get(key) or self.models.setdefault(key, ModelStats(key))
        if instance and instance not in m.instances:
            m.instances.append(instance)
        return m

    def add_verdicts(self, conn: sqlite3.Connection, w: tuple[float, float]) -> None:
        for r in conn.execute("SELECT instance, coalesce(model_key, model) AS m, category, ok, latency_ms, ts "
                              "FROM verdicts WHERE ts >= ? AND ts <= ?", w):
            m = self.stats_for(r[1], r[0])
            m.verdicts += 1
            m.verdicts_blocked += 0 if r[3] else 1
            m.verdict_categories[r[2]] = m.verdict_categories.get(r[2], 0) + 1
            if r[2] == "context_too_small":
                m.context_errors += 1
            m.last_used = max(m.last_used or 0.0, r[5])
            self.categories[r[2]] += 1
            if r[0] and r[4] is not None:
                self.validate_ms[r[0]].append(r[4])

    def add_turns(self, conn: sqlite3.Connection, w: tuple[float, float]) -> None:
        for r in conn.execute("SELECT instance, model, input_tokens, output_tokens, reasoning_tokens, "
                              "cache_read_tokens, duration_s, tokens_per_s, loaded_context, error, ts "
                              "FROM turns WHERE ts >= ? AND ts <= ?", w):
            m = self.stats_for(r[1], r[0])
            m.turns += 1
            m.last_used = max(m.last_used or 0.0, r[10])
            if r[9]:
                if r[9] != "MessageAbortedError":
                    m.turn_errors += 1
                if r[9] == "ContextOverflowError":
                    m.context_errors += 1
                continue
            m.input_tokens += r[2] or 0
            m.output_tokens += r[3] or 0
            m.reasoning_tokens += r[4] or 0
            if r[6]:
                self.durations[m.model].append(r[6])
            if r[7]:
                self.speeds[m.model].append(r[7])
            used = (r[2] or 0) + (r[5] or 0) + (r[3] or 0) + (r[4] or 0)
            if used:
                self.ctx_used[m.model].append(used)
            if r[8]:
                m.loaded_context = max(m.loaded_context or 0, r[8])
                self.ctx_share[m.model].append(used / r[8])
                if used >= NEAR_CONTEXT * r[8]:
                    m.turns_near_context += 1

    def add_sessions(self, conn: sqlite3.Connection, w: tuple[float, float]) -> None:
        for r in conn.execute("SELECT model, instance, outcome, last_seen - ts FROM sessions "
                              "WHERE last_seen >= ? AND ts <= ?", w):
            m = self.stats_for(r[0], r[1])
            m.sessions += 1
            if r[3] is not None:
                self.session_times[m.model].append(max(0.0, r[3]))
                m.session_total_s += max(0.0, r[3])
            if r[2] == "ok":
                m.sessions_ok += 1
            elif r[2] in ("error", "retrying"):
                m.sessions_failed += 1
        for r in conn.execute("SELECT model, error_name FROM session_events WHERE kind = 'error' AND ts >= ? "
                              "AND ts <= ?", w):
            if r[1] == "ContextOverflowError":
                self.stats_for(r[0]).context_errors += 1

    def add_loads(self, conn: sqlite3.Connection, w: tuple[float, float]) -> None:
        for r in conn.execute("SELECT instance, model, ok, seconds, size_bytes FROM loads WHERE ts >= ? AND ts <= ?",
                              w):
            m = self.stats_for(r[1], r[0])
            if r[2]:
                m.loads += 1
                if r[3]:
                    self.load_times[m.model].append(r[3])
                    m.load_total_s += r[3]
            else:
                m.load_failures += 1
        for r in conn.execute("SELECT model, size_bytes FROM loads WHERE size_bytes IS NOT NULL ORDER BY ts"):
            if r[0] in self.models:
                self.models[r[0]].size_bytes = r[1]

    def finish(self) -> None:
        """The rates, medians and percentiles from the sums and samples."""
        for m in self.models.values():
            judged = m.sessions_ok + m.sessions_failed
            m.session_success_rate = m.sessions_ok / judged if judged else None
            m.turn_success_rate = (m.turns - m.turn_errors) / m.turns if m.turns else None
            m.latency_p50_s = percentile(self.durations[m.model], 0.5)
            m.latency_p95_s = percentile(self.durations[m.model], 0.95)
            m.tokens_per_s = statistics.median(self.speeds[m.model]) if self.speeds[m.model] else None
            m.output_per_input = m.output_tokens / m.input_tokens if m.input_tokens else None
            used = self.ctx_used[m.model]
            m.context_used_max = max(used) if used else None
            p95 = percentile(used, 0.95)
            m.context_used_p95 = int(p95) if p95 is not None else None
            m.context_usage_p95 = percentile(self.ctx_share[m.model], 0.95)
            m.load_p50_s = percentile(self.load_times[m.model], 0.5)
            spans = self.session_times[m.model]
            m.session_median_s = statistics.median(spans) if spans else None


def _inst(instances: dict[str, InstanceStats], name: str) -> InstanceStats:
    return instances.get(name) or instances.setdefault(name, InstanceStats(name))


def _instance_stats(conn: sqlite3.Connection, since: float, until: float,
                    validate_ms: dict[str, list[float]]) -> dict[str, InstanceStats]:
    out: dict[str, InstanceStats] = {}
    names = {r[0] for r in conn.execute("SELECT DISTINCT instance FROM health WHERE instance IS NOT NULL")}
    names |= {r[0] for r in conn.execute("SELECT DISTINCT instance FROM resources")}
    names |= {n for n in validate_ms if n}
    for name in sorted(names):
        s = _inst(out, name)
        before = conn.execute("SELECT new FROM health WHERE instance = ? AND kind = 'state' AND ts < ? "
                              "ORDER BY ts DESC, id DESC LIMIT 1", (name, since)).fetchone()
        state: str | None = before[0] if before else None
        at: float | None = since
        for ts, new in conn.execute("SELECT ts, new FROM health WHERE instance = ? AND kind = 'state' AND ts >= ? "
                                    "AND ts <= ? ORDER BY ts, id", (name, since, until)):
            if state is not None and at is not None:
                s.observed_s += ts - at
                s.up_s += (ts - at) if state in UP_STATES else 0.0
            state, at = new, ts
        if state is not None and at is not None:
            s.observed_s += until - at
            s.up_s += (until - at) if state in UP_STATES else 0.0
        s.state = state
        s.uptime = s.up_s / s.observed_s if s.observed_s > 0 else None
        s.failures = int(conn.execute(
            f"SELECT count(*) FROM health WHERE instance = ? AND kind IN ({','.join('?' * len(DOWN_KINDS))}) "
            "AND ts >= ? AND ts <= ?", (name, *DOWN_KINDS, since, until)).fetchone()[0])
        s.validate_p50_ms = percentile(validate_ms.get(name, []), 0.5)
        last = conn.execute("SELECT rss_bytes, loaded_bytes FROM resources WHERE instance = ? AND ts <= ? "
                            "ORDER BY ts DESC LIMIT 1", (name, until)).fetchone()
        if last:
            s.rss_bytes, s.loaded_bytes = last[0], last[1]
        cpu = conn.execute("SELECT avg(cpu_percent) FROM resources WHERE instance = ? AND ts >= ? AND ts <= ?",
                           (name, since, until)).fetchone()[0]
        s.cpu_percent_avg = float(cpu) if cpu is not None else None
    return out


def series(conn: sqlite3.Connection, since: float, until: float, buckets: int = 48) -> dict[str, Any]:
    """Usage and performance over time in equal buckets (for the dashboard's charts)."""
    if not math.isfinite(since) or since <= 0:
        first = conn.execute("SELECT min(ts) FROM (SELECT min(ts) AS ts FROM verdicts UNION ALL "
                             "SELECT min(ts) FROM turns UNION ALL SELECT min(ts) FROM loads)").fetchone()[0]
        since = float(first) if first is not None else until - 86400
    width = max(60.0, (until - since) / buckets)
    n = max(1, math.ceil((until - since) / width))
    rows: list[dict[str, Any]] = [{"t": since + i * width, "verdicts": 0, "blocked": 0, "turns": 0,
                                   "turn_errors": 0, "output_tokens": 0, "loads": 0} for i in range(n)]
    lists: dict[str, list[list[float]]] = {k: [[] for _ in range(n)] for k in ("validate_ms", "tps", "turn_s",
                                                                                   "load_s", "rss")}

    def slot(ts: float) -> int:
        return min(n - 1, max(0, int((ts - since) / width)))

    w = (since, until)
    for ts, ok, ms in conn.execute("SELECT ts, ok, latency_ms FROM verdicts WHERE ts >= ? AND ts <= ?", w):
        i = slot(ts)
        rows[i]["verdicts"] += 1
        rows[i]["blocked"] += 0 if ok else 1
        if ms is not None:
            lists["validate_ms"][i].append(ms)
    for ts, out, tps, dur, err in conn.execute("SELECT ts, output_tokens, tokens_per_s, duration_s, error FROM turns "
                                               "WHERE ts >= ? AND ts <= ?", w):
        i = slot(ts)
        rows[i]["turns"] += 1
        if err:
            rows[i]["turn_errors"] += 1
            continue
        rows[i]["output_tokens"] += out or 0
        if tps:
            lists["tps"][i].append(tps)
        if dur:
            lists["turn_s"][i].append(dur)
    for ts, secs in conn.execute("SELECT ts, seconds FROM loads WHERE ok = 1 AND ts >= ? AND ts <= ?", w):
        i = slot(ts)
        rows[i]["loads"] += 1
        if secs:
            lists["load_s"][i].append(secs)
    for ts, rss in conn.execute("SELECT ts, rss_bytes FROM resources WHERE rss_bytes IS NOT NULL AND ts >= ? "
                                "AND ts <= ?", w):
        lists["rss"][slot(ts)].append(rss)
    for i, row in enumerate(rows):
        row["validate_ms_p50"] = percentile(lists["validate_ms"][i], 0.5)
        row["tokens_per_s_p50"] = percentile(lists["tps"][i], 0.5)
        row["turn_s_p50"] = percentile(lists["turn_s"][i], 0.5)
        row["load_s_p50"] = percentile(lists["load_s"][i], 0.5)
        row["rss_bytes_max"] = max(lists["rss"][i]) if lists["rss"][i] else None
    return {"since": since, "until": until, "bucket_s": width, "buckets": rows}
