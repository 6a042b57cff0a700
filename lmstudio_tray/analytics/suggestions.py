"""Suggestions from the store, each with the numbers behind it.

`suggest(conn, now)` reads the store; `for_model` picks the ones worth telling OpenCode about one model.
Thresholds are module constants so a report can say exactly why a tip appeared.
"""

from __future__ import annotations

import difflib
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lmstudio_tray.analytics.bench import latest_bench
from lmstudio_tray.analytics.reports import NEAR_CONTEXT, Report, build_report
from lmstudio_tray.core.control.search import coding_pick_line, fastest_for_coding
from lmstudio_tray.core.models import BenchFigures

WINDOW_S = 7 * 86400  # suggestions look at the last week
MIN_NEAR_TURNS = 2  # turns at >= 90% of the loaded context before suggesting a larger one
UNUSED_DAYS = 2.0
MIN_RELOADS = 3  # evicted and loaded again this often in the window
MIN_TURNS_TO_COMPARE = 5
FASTER_BY = 1.3  # another model must be at least this much faster...
SIMILAR_SUCCESS = 0.05  # ...with a success rate at most this much lower
MIN_BAD_ID = 3  # validations of one model id that found no such model

BAD_ID_CATEGORIES = ("unknown_model", "ambiguous")


@dataclass(frozen=True)
class Suggestion:
    kind: str  # fastest_coding | larger_context | unload_unused | set_ttl | faster_model | bench_faster | fix_model_id
    message: str
    model: str | None = None
    instance: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "model": self.model, "instance": self.instance,
                "numbers": self.numbers}


def suggest(conn: sqlite3.Connection, now: float, report: Report | None = None,
            known_models: Iterable[str] = ()) -> list[Suggestion]:
    """All suggestions for the last week; `known_models` (downloaded keys, when a core runs) help
    name the id a failing one probably meant."""
    rep = report or build_report(conn, now - WINDOW_S, now)
    bench = latest_bench(conn)  # the latest comparable figures, of any age: a bench is not repeated weekly
    out: list[Suggestion] = []
    out += _fastest_coding(bench)
    out += _larger_context(rep)
    out += _unload_unused(conn, now)
    out += _set_ttl(conn, now - WINDOW_S, now)
    out += _faster_model(rep)
    out += _bench_faster(bench)
    out += _fix_model_id(conn, now - WINDOW_S, now, known_models)
    return out


def for_model(suggestions: list[Suggestion], model: str) -> list[Suggestion]:
    """The tips about `model` that OpenCode can act on while using it."""
    relevant = ("larger_context", "faster_model", "fix_model_id")
    return [s for s in suggestions if s.model == model and s.kind in relevant]


def _next_context(used: int) -> int:
    want = int(used * 1.25)
    size = 4096
    while size < want:
        size *= 2
    return size


def _larger_context(rep: Report) -> list[Suggestion]:
    out = []
    for m in rep.models:
        if m.turns_near_context < MIN_NEAR_TURNS and m.context_errors < MIN_NEAR_TURNS:
            continue
        target = _next_context(max(m.context_used_max or 0, m.loaded_context or 0))
        loaded = f"loaded with {m.loaded_context} tokens" if m.loaded_context else "loaded context unknown"
        out.append(Suggestion(
            "larger_context",
            f"Reload {m.model} with a larger context (e.g. {target}): {m.turns_near_context} of {m.turns} turns "
            f"used >= {NEAR_CONTEXT:.0%} of it ({loaded}, largest turn {m.context_used_max or 0} tokens), "
            f"{m.context_errors} context errors.",
            model=m.model,
            numbers={"turns": m.turns, "turns_near_context": m.turns_near_context, "loaded_context": m.loaded_context,
                     "context_used_max": m.context_used_max, "context_errors": m.context_errors,
                     "suggested_context": target},
        ))
    return out


def _loaded_now(conn: sqlite3.Connection) -> dict[tuple[str, str], float]:
    """(instance, model) -> when it was loaded, for models whose last recorded event is a load."""
    state: dict[tuple[str, str], float | None] = {}
    for ts, inst, model, kind in conn.execute("SELECT ts, instance, model, kind FROM model_events ORDER BY ts, id"):
        if kind == "present":  # seen at a start: loaded since before then, unless known already
            state[(inst, model)] = state.get((inst, model)) or ts
        else:
            state[(inst, model)] = ts if kind == "loaded" else None
    return {k: v for k, v in state.items() if v is not None}


def _unload_unused(conn: sqlite3.Connection, now: float) -> list[Suggestion]:
    out = []
    for (inst, model), loaded_at in sorted(_loaded_now(conn).items()):
        last = conn.execute(
            "SELECT max(ts) FROM (SELECT max(ts) AS ts FROM turns WHERE model = ? UNION ALL "
            "SELECT max(ts) FROM verdicts WHERE coalesce(model_key, model) = ?)", (model, model)).fetchone()[0]
        since_use = now - max(float(last or 0.0), loaded_at)
        days = since_use / 86400
        if days < UNUSED_DAYS:
            continue
        size = conn.execute("SELECT size_bytes FROM loads WHERE model = ? AND size_bytes IS NOT NULL "
                            "ORDER BY ts DESC LIMIT 1", (model,)).fetchone()
        size_bytes = int(size[0]) if size else None
        held = f", holding {size_bytes / 1e9:.1f} GB" if size_bytes else ""
        out.append(Suggestion(
            "unload_unused",
            f"Unload {model} on {inst}: loaded but unused for {days:.1f} days{held}.",
            model=model, instance=inst,
            numbers={"days_unused": round(days, 2), "size_bytes": size_bytes, "last_used": last,
                     "loaded_at": loaded_at},
        ))
    return out


def _set_ttl(conn: sqlite3.Connection, since: float, until: float) -> list[Suggestion]:
    unloaded_at: dict[tuple[str, str], float] = {}
    gaps: dict[tuple[str, str], list[float]] = defaultdict(list)
    for ts, inst, model, kind in conn.execute("SELECT ts, instance, model, kind FROM model_events "
                                              "WHERE ts >= ? AND ts <= ? ORDER BY ts, id", (since, until)):
        key = (inst, model)
        if kind == "unloaded":
            unloaded_at[key] = ts
        elif kind == "loaded" and key in unloaded_at:
            gaps[key].append(ts - unloaded_at.pop(key))
    out = []
    for (inst, model), g in sorted(gaps.items()):
        if len(g) < MIN_RELOADS:
            continue
        load_s = conn.execute("SELECT coalesce(sum(seconds), 0) FROM loads WHERE instance = ? AND model = ? "
                              "AND ok = 1 AND ts >= ? AND ts <= ?", (inst, model, since, until)).fetchone()[0]
        gap = statistics.median(g)
        ttl_min = max(10, int(gap * 2 / 60) + 1)
        out.append(Suggestion(
            "set_ttl",
            f"Set a longer JIT TTL for {model} on {inst} (about {ttl_min} min): it was evicted and loaded again "
            f"{len(g)} times, typically {gap / 60:.1f} min after the unload, costing {load_s:.0f} s of loading.",
            model=model, instance=inst,
            numbers={"reloads": len(g), "median_gap_s": round(gap, 1), "load_seconds": round(float(load_s), 1),
                     "suggested_ttl_s": ttl_min * 60},
        ))
    return out


def _faster_model(rep: Report) -> list[Suggestion]:
    ranked = [m for m in rep.models if m.turns >= MIN_TURNS_TO_COMPARE and m.tokens_per_s
              and m.turn_success_rate is not None]
    out = []
    for slow in ranked:
        assert slow.tokens_per_s is not None and slow.turn_success_rate is not None
        better = [m for m in ranked if m is not slow and (m.tokens_per_s or 0) >= FASTER_BY * slow.tokens_per_s
                  and (m.turn_success_rate or 0) >= slow.turn_success_rate - SIMILAR_SUCCESS]
        if not better:
            continue
        fast = max(better, key=lambda m: m.tokens_per_s or 0)
        assert fast.tokens_per_s is not None and fast.turn_success_rate is not None
        out.append(Suggestion(
            "faster_model",
            f"Prefer {fast.model} over {slow.model}: {fast.tokens_per_s:.1f} vs {slow.tokens_per_s:.1f} tokens/s "
            f"with a similar success rate ({fast.turn_success_rate:.0%} vs {slow.turn_success_rate:.0%}, "
            f"{fast.turns} and {slow.turns} turns).",
            model=slow.model,
            numbers={"alternative": fast.model, "tokens_per_s": round(slow.tokens_per_s, 2),
                     "alternative_tokens_per_s": round(fast.tokens_per_s, 2),
                     "success_rate": round(slow.turn_success_rate, 3),
                     "alternative_success_rate": round(fast.turn_success_rate, 3),
                     "turns": slow.turns, "alternative_turns": fast.turns},
        ))
    return out


def _fastest_coding(bench: list[BenchFigures]) -> list[Suggestion]:
    """The model measured fastest here in the coding suite among those that passed the most checks."""
    pick = fastest_for_coding(bench)
    if pick is None:
        return []
    benched = len({b.model for b in bench if b.suite == "coding" and b.gen_tps and b.instance == pick.instance})
    return [Suggestion(
        "fastest_coding",
        f"{coding_pick_line(pick)}, among {benched} models in the coding bench.",
        model=pick.model, instance=pick.instance,
        numbers={"gen_tps": pick.gen_tps, "checks_passed": pick.checks_passed, "checks": pick.checks,
                 "models": benched, "suite_version": pick.suite_version, "measured_at": pick.measured_at},
    )]


def _bench_faster(bench: list[BenchFigures]) -> list[Suggestion]:
    """Per instance, the quick bench's fastest model against each model it outpaces by FASTER_BY or more."""
    by_instance: dict[str | None, list[BenchFigures]] = defaultdict(list)
    for b in bench:
        if b.suite == "quick" and b.gen_tps:
            by_instance[b.instance].append(b)
    out = []
    for inst, rows in sorted(by_instance.items(), key=lambda kv: kv[0] or ""):
        fast = max(rows, key=lambda b: (b.gen_tps or 0.0, b.model))
        where = f" --instance {inst}" if inst else ""
        for slow in sorted(rows, key=lambda b: b.model):
            fast_tps, slow_tps = fast.gen_tps or 0.0, slow.gen_tps or 0.0
            if slow is fast or fast_tps < FASTER_BY * slow_tps:
                continue
            out.append(Suggestion(
                "bench_faster",
                f"{fast.model} generates {fast_tps / slow_tps:.1f}× faster than {slow.model} here (quick bench: "
                f"{fast_tps:.0f} vs {slow_tps:.0f} tok/s); `lmstudio-tray switch {fast.model}{where}` "
                "switches to it.",
                model=slow.model, instance=inst,
                numbers={"alternative": fast.model, "gen_tps": round(slow_tps, 2),
                         "alternative_gen_tps": round(fast_tps, 2), "ratio": round(fast_tps / slow_tps, 2),
                         "suite_version": fast.suite_version},
            ))
    return out


def _fix_model_id(conn: sqlite3.Connection, since: float, until: float,
                  known_models: Iterable[str]) -> list[Suggestion]:
    marks = ",".join("?" * len(BAD_ID_CATEGORIES))
    bad = conn.execute(
        f"SELECT model, instance, count(*), group_concat(DISTINCT category) FROM verdicts WHERE category IN ({marks}) "
        "AND ts >= ? AND ts <= ? GROUP BY model, instance", (*BAD_ID_CATEGORIES, since, until)).fetchall()
    if not bad:
        return []
    known = sorted({r[0] for r in conn.execute(
        "SELECT model FROM model_events UNION SELECT model FROM loads UNION SELECT model_key FROM verdicts "
        "WHERE model_key IS NOT NULL UNION SELECT model FROM turns WHERE error IS NULL") if r[0]} | set(known_models))
    out = []
    for model, inst, count, cats in bad:
        if count < MIN_BAD_ID:
            continue
        close = difflib.get_close_matches(model, [k for k in known if k != model], n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; check `lmstudio-tray models` for the ids"
        where = f" on {inst}" if inst else ""
        out.append(Suggestion(
            "fix_model_id",
            f"Fix the model id {model!r} in your OpenCode config: {count} validations{where} found no such model "
            f"({cats}){hint}",
            model=model, instance=inst,
            numbers={"failures": count, "categories": sorted(str(cats).split(",")), "close_matches": close},
        ))
    return out
