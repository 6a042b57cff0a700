"""The agent's advice tools: benchmark a model, recommend models for a task, compare models, the usage summary.

The figures come from the analytics store through the core's `Measurements` port (`ctx.measurements`), which the
composition root builds on the functions `lmstudio-tray bench`, `stats` and `models recommend/compare` use; every
read of it runs in a worker thread. A benchmark runs here, on the core loop (all network I/O awaited), one at a
time on this machine (`bench_slot`, shared with `lmstudio-tray bench`), and loads and unloads through `Actions`:
the load shares a load in flight and follows `[loads] fit_check`, and putting the instance back is an agent's
unload, which the shared-instance guard may refuse (the model then stays loaded, and the answer says why).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lmstudio_tray.api import schemas as s
from lmstudio_tray.api.context import TOOL_ERRORS, ApiContext, ApiError
from lmstudio_tray.api.tools import target, tool
from lmstudio_tray.core.control.actions import Actions
from lmstudio_tray.core.control.bench import (
    BenchBusy,
    BenchError,
    BenchReport,
    Spread,
    Suite,
    bench_lock_file,
    bench_slot,
    instance_bench,
)
from lmstudio_tray.core.control.search import (
    Filters,
    Located,
    alternatives,
    find,
    has_tools,
    has_vision,
    latest_per_suite,
    parse_context,
    parse_size,
    pick,
    recommend,
)
from lmstudio_tray.core.control.search import search as search_models
from lmstudio_tray.core.errors import LMStudioError, SearchError, SharedBusyError
from lmstudio_tray.core.models import BenchFigures, ModelInfo, ModelType
from lmstudio_tray.core.ports import MeasuredFigures
from lmstudio_tray.core.support.units import parse_window

USAGE_WINDOW = "30d"  # the usage figures search and recommend rank by, as `models search/recommend` do
BENCH_ERRORS = {**TOOL_ERRORS, 409: {"model": s.ErrorOut, "description": "`bench_running`: another benchmark runs on "
                                     "this machine; `unknown_model`; a load refused or failed (its kind)"}}


def add_advice_tool_routes(app: FastAPI, ctx: ApiContext) -> None:
    """`/v1/tools/benchmark`, `/recommend`, `/compare`, `/stats`, and `/search` (with filters, ranked by use)."""

    @app.post("/v1/tools/benchmark", response_model=s.ToolOut, responses=BENCH_ERRORS, tags=["tools"],
              description="Run the quick bench suite on one model (default: the calling session's), keep the result "
              "in the analytics store and put back what was loaded. One bench at a time on this machine.")
    async def tool_benchmark(body: s.BenchIn) -> JSONResponse:
        return await benchmark(ctx, body)

    @app.post("/v1/tools/recommend", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_recommend(body: s.RecommendIn) -> JSONResponse:
        return await recommend_models(ctx, body)

    @app.post("/v1/tools/compare", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_compare(body: s.CompareIn) -> JSONResponse:
        return await compare(ctx, body)

    @app.post("/v1/tools/stats", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_stats(body: s.StatsIn) -> JSONResponse:
        return await stats(ctx, body)

    @app.post("/v1/tools/search", response_model=s.ToolOut, responses=TOOL_ERRORS, tags=["tools"])
    async def tool_search(body: s.SearchIn) -> JSONResponse:
        return await search(ctx, body)


# ---- shared -----------------------------------------------------------------------------------------------


def window(since: str) -> str:
    """`since` checked before anything is read: a 422 naming it when it is no time window."""
    try:
        parse_window(since)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"since: {exc}") from None
    return since


async def figures(ctx: ApiContext, since: str) -> MeasuredFigures:
    """The store's figures for the window `since`, read in a worker thread."""
    return await asyncio.to_thread(ctx.measurements.figures, window(since))


async def located(ctx: ApiContext, body: s.TargetIn) -> tuple[str, list[Located], list[str]]:
    """(the instance the answer names, every (instance, model) to consider, the instances skipped and why): the
    instance `body.instance` names, else every instance that answers (like `models recommend/compare`)."""
    if body.instance:
        name = target(ctx, body)
        snap = await ctx.core.monitor.get(name, max_age=5.0)
        skipped = [] if snap.failure is None else [f"{name} is {snap.state.value}: {snap.error}"]
        return name, [(name, m) for m in snap.models], skipped
    snaps = list(ctx.core.monitor.snapshots())
    skipped = [f"{x.name} is {x.state.value}: {x.error}" for x in snaps if x.failure is not None]
    return target(ctx, body), [(x.name, m) for x in snaps if x.failure is None for m in x.models], skipped


def _spec(m: ModelInfo) -> str:
    caps = [c for c, on in (("vision", has_vision(m)), ("tool use", has_tools(m))) if on]
    size = f"{m.size_bytes / 1e9:.1f} GB" if m.size_bytes else None
    parts = [str(m.type), m.architecture, m.params_string, m.quantization, size,
             f"max ctx {m.max_context_length}" if m.max_context_length else None, *caps]
    return ", ".join(p for p in parts if p)


def _f(value: Any, fmt: str, suffix: str = "") -> str | None:
    return None if value is None else format(value, fmt) + suffix


def _usage_text(m: dict[str, Any] | None) -> str:
    """A model's usage figures in a line: turns, success, tokens/s, latency."""
    if not m:
        return "not used through OpenCode in the window"
    success = m.get("session_success_rate")
    if success is None:  # no session ended in the window: the turns' rate, as `Measured.performance` does
        success = m.get("turn_success_rate")
    parts = [f"{m.get('turns') or 0} turns", _f(None if success is None else 100 * success, ".0f", "% success"),
             _f(m.get("tokens_per_s"), ".1f", " tok/s"), _f(m.get("latency_p50_s"), ".1f", " s per turn (p50)")]
    return ", ".join(p for p in parts if p)


def _bench_text(b: dict[str, Any]) -> str:
    """A bench row of `stats` in a line: generation speed, first token, load, suite and when."""
    when = time.strftime("%Y-%m-%d", time.localtime(b["ts"]))
    parts = [_f(b.get("gen_tps"), ".1f", " tok/s generated"), _f(b.get("first_token_s"), ".2f", " s to first token"),
             _f(b.get("prompt_tps"), ".0f", " prompt tok/s"), _f(b.get("load_s"), ".1f", " s load")]
    where = f" on {b['instance']}" if b.get("instance") else ""
    return f"{', '.join(p for p in parts if p)} ({b['suite']} suite v{b['suite_version']}{where}, {when})"


def _figures_text(b: BenchFigures) -> str:
    """A model's latest figures of one suite in a line, as `models compare` shows them: generation speed (median and
    spread), first token, load, the checked answers, where and when."""
    spread = (f" ({b.gen_tps_low:.1f}-{b.gen_tps_high:.1f})"
              if b.gen_tps_low is not None and b.gen_tps_high is not None else "")
    parts = [None if b.gen_tps is None else f"{b.gen_tps:.1f}{spread} tok/s generated",
             _f(b.first_token_s, ".2f", " s to first token"),
             "it was loaded already" if b.load_s is None else f"{b.load_s:.1f} s load",
             f"{b.checks_passed}/{b.checks} checks passed" if b.checks else None]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(b.measured_at))
    where = f" on {b.instance}" if b.instance else ""
    return f"{', '.join(p for p in parts if p)} (suite v{b.suite_version}{where}, {when})"


# ---- benchmark -------------------------------------------------------------------------------------------


class AgentLoads:
    """The bench's loads and unloads as an agent's, through `Actions` on one instance. An unload the
    shared-instance guard refuses leaves the model loaded and is noted for the answer (`notes`)."""

    def __init__(self, actions: Actions, instance: str) -> None:
        self.actions = actions
        self.instance = instance
        self.notes: list[str] = []

    async def load(self, key: str, context_length: int | None) -> tuple[str, int | None, float | None]:
        """`Actions.load` (single-flight, fit check)."""
        r = await self.actions.load(self.instance, key, context_length=context_length)
        return r.instance_id, r.context_length, None if r.already_loaded else r.seconds

    async def unload(self, instance_id: str) -> None:
        """`Actions.unload` without force: the guard applies."""
        try:
            await self.actions.unload(self.instance, instance_id)
        except SharedBusyError as exc:
            self.notes.append(f"Left {instance_id} loaded: {exc.reason}.")


def _bench_model(ctx: ApiContext, body: s.BenchIn, listing: list[ModelInfo], name: str) -> str:
    """The model key to bench: the one asked for, else the session's; 422/409 naming what is wrong."""
    ref = body.model
    if ref is None:
        use = ctx.sessions.current(body.session_id) if body.session_id else None
        ref = use.model if use is not None else body.session_model
    if not ref:
        raise ApiError(422, "invalid_request", "model: name the model to benchmark (the session's model is not "
                       "known here)")
    here = [(name, m) for m in listing]
    found = find(here, ref)
    if not found:
        alts = alternatives(ref, here)
        hint = f"; did you mean {', '.join(h.model.key for h in alts)}?" if alts else ""
        raise ApiError(409, "unknown_model", f"{ref!r} is not downloaded on {name}{hint} (lmstudio_list_models "
                       "lists what is)")
    return found[0][1].key


def _report_text(report: BenchReport, name: str, kept: str | None, notes: list[str]) -> str:
    def spread(v: Spread | None, fmt: str, unit: str) -> str:
        return "-" if v is None else f"{v.median:{fmt}}{unit} ({v.low:{fmt}}-{v.high:{fmt}})"

    r = report.results[0]
    lines = [
        f"Benchmarked {r.model} on {name} ({report.suite.value} suite v{report.suite_version}, {r.runs} runs, "
        f"median (lowest-highest)): generation {spread(r.generated_tokens_per_s, '.1f', ' tok/s')}, "
        f"first token {spread(r.first_token_seconds, '.2f', ' s')}, "
        f"prompt {spread(r.prompt_tokens_per_s, '.0f', ' tok/s')}"
        + (f", loaded for the bench in {r.load_seconds:.1f} s" if r.load_seconds is not None else ", it was loaded")
        + f"; quantization {r.quantization or 'unknown'}, context {r.context_length or 'default'}.",
        "What was loaded before has been put back." if not notes else " ".join(notes),
        "The result is kept in the analytics store (lmstudio_stats and lmstudio_compare show it)." if kept is None
        else f"The result was not kept: {kept}.",
    ]
    return "\n".join(lines)


def _put_back_words(failure: str | None, stopped: str) -> str:
    """Whether what was loaded before the bench is loaded again, as the bench's error says it."""
    if failure is None:
        return "what was loaded has been put back"
    why = "" if failure == stopped else f": {failure}"
    return f"putting back what was loaded failed{why}; lmstudio_list_models shows what is loaded now"


async def benchmark(ctx: ApiContext, body: s.BenchIn) -> JSONResponse:
    """The quick suite on one model, one bench at a time on this machine; the result kept like `bench` keeps it."""
    name = target(ctx, body)
    snap = await ctx.core.monitor.get(name, max_age=2.0)
    if snap.failure is not None:
        raise ApiError(409, snap.state.value, f"{name} is {snap.state.value}: {snap.error}")
    key = _bench_model(ctx, body, list(snap.models), name)
    loads = AgentLoads(ctx.core.actions, name)
    # the tracker: the tray's line and the finished/failed notification follow an agent's bench too
    bench = instance_bench(ctx.core.monitor.instance(name), ctx.core.benches.tracker(name), loads=loads)
    try:
        async with bench_slot(bench_lock_file()):
            report = await bench.run([key], Suite.QUICK, body.runs)
    except BenchBusy as exc:
        raise ApiError(409, "bench_running", str(exc)) from None
    except BenchError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    except LMStudioError as exc:
        raise ApiError(409, "bench_failed", f"the bench of {key} on {name} stopped: {exc.message} "
                       f"({_put_back_words(bench.restore_failure, exc.message)})") from None
    kept = (await asyncio.to_thread(ctx.measurements.record_bench, report, name)
            if ctx.core.config.analytics.enabled else "analytics are off ([analytics] enabled = false)")
    return tool(True, name, _report_text(report, name, kept, loads.notes), report.to_json())


# ---- recommend, compare, stats, search -------------------------------------------------------------------


async def recommend_models(ctx: ApiContext, body: s.RecommendIn) -> JSONResponse:
    """Downloaded models for a task, ranked by specs and measured figures, each with its reasons."""
    name, models, skipped = await located(ctx, body)
    measured = await figures(ctx, USAGE_WINDOW)
    needs, recs = recommend(body.task, models, performance=measured.performance, limit=body.limit)
    if not recs:
        text = (f"No downloaded model fits {body.task!r} (needs: {needs.describe()}). A person can download one in "
                "LM Studio (Discover tab), or with lmstudio_download_model where the config allows it.")
    else:
        text = "\n".join([f"For {body.task!r} (needs: {needs.describe()}):",
                          *(f"{n}. {r.model.key} [{r.instance}]: {'; '.join(r.reasons)}"
                            for n, r in enumerate(recs, 1))])
    if measured.unavailable:
        text += f"\n(ranked by specs only: {measured.unavailable})"
    text += "".join(f"\n({why}; its models are not included)" for why in skipped)
    data = {"task": body.task, "needs": needs.describe(), "measured": measured.unavailable is None,
            "recommendations": [r.to_json() for r in recs]}
    return tool(bool(recs), name, text, data)


async def compare(ctx: ApiContext, body: s.CompareIn) -> JSONResponse:
    """Two or more models side by side: specs, usage figures of the window, the newest bench figures."""
    since = window(body.since)
    name, models, skipped = await located(ctx, body)
    try:
        chosen = pick(models, body.models)
    except SearchError as exc:
        raise ApiError(409, "unknown_model", str(exc)) from None
    measured = await figures(ctx, since)
    lines, data = [], []
    for instances, m in chosen:
        usage = dict(measured.models.get(m.key) or {}) or None
        # what `models compare` shows: the latest figures per suite, of the instances it is on
        bench = tuple(latest_per_suite(measured.bench(m.key), instances).values())
        loaded = ", ".join(f"{i.id} (ctx {i.context_length})" for i in m.instances) or "not loaded"
        benched = [f"  {b.suite} bench: {_figures_text(b)}" for b in bench]
        lines += [f"{m.key} [{', '.join(instances)}]: {_spec(m)}; {loaded}",
                  f"  used, last {body.since}: {_usage_text(usage)}",
                  *(benched or ["  bench: never benchmarked (lmstudio_benchmark runs the quick suite)"])]
        data.append({"instances": instances, "spec": m.to_json(), "measured": usage,
                     "bench": {b.suite: b.to_json() for b in bench}})
    if measured.unavailable:
        lines.append(f"(no measured figures: {measured.unavailable})")
    lines += [f"({why}; its models are not included)" for why in skipped]
    return tool(True, name, "\n".join(lines), {"since": body.since, "measured_available": measured.unavailable is None,
                                                "why_not_measured": measured.unavailable, "models": data})


def _stats_text(data: dict[str, Any], instance: str | None) -> str:
    report = data["report"]
    t = report["totals"]
    lines = [f"Since {data['window']}: {t['turns']} turns, {t['sessions']} sessions, {t['verdicts']} validations, "
             f"{t['loads']} loads" + (f" (benchmarks on {instance} only)." if instance else ".")]
    for m in report["models"]:
        lines.append(f"- {m['model']}: {_usage_text(m)}, {m['loads']} loads")
    for b in data["bench"]:
        lines.append(f"- bench {b['model']}: {_bench_text(b)}")
    if not report["models"] and not data["bench"]:
        lines.append("Nothing recorded in this window.")
    return "\n".join(lines)


async def stats(ctx: ApiContext, body: s.StatsIn) -> JSONResponse:
    """`lmstudio-tray stats` for the window: per model turns, success, tokens/s, latency; the bench rows."""
    name = target(ctx, body)
    data = await asyncio.to_thread(ctx.measurements.stats, window(body.since))
    if data.get("error"):
        text = (f"No usage figures: {data['error']}. They are recorded while the tray or `lmstudio-tray serve` "
                "runs (config: [analytics] enabled = true).")
        return tool(False, name, text, data)
    if body.instance:
        data = {**data, "bench": [b for b in data["bench"] if b["instance"] == name],
                "report": {**data["report"], "instances": [i for i in data["report"]["instances"]
                                                          if i["instance"] == name]}}
    return tool(True, name, _stats_text(data, name if body.instance else None), data)


def _filters(body: s.SearchIn) -> Filters:
    try:
        return Filters(
            type=ModelType(body.type) if body.type else None,
            vision=body.vision, tool_use=body.tool_use,
            min_size=parse_size(body.min_size) if body.min_size else None,
            max_size=parse_size(body.max_size) if body.max_size else None,
            min_context=parse_context(body.min_context) if body.min_context else None,
        )
    except SearchError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None


async def search(ctx: ApiContext, body: s.SearchIn) -> JSONResponse:
    """Downloaded models matching a query and filters, ranked like `models search`: name match, then use."""
    filters = _filters(body)
    name = target(ctx, body)
    snap = await ctx.core.monitor.get(name, max_age=5.0)
    usage = (await figures(ctx, USAGE_WINDOW)).usage()
    hits = search_models([(name, m) for m in snap.models], body.query, filters, usage=usage, limit=body.limit)
    if not hits:
        what = f"matches {body.query!r}" if body.query else "passes those filters"
        text = f"No downloaded model on {name} {what} ({len(snap.models)} searched)."
    else:
        text = "\n".join(f"- {h.model.key}: {_spec(h.model)}" + (" (loaded)" if h.model.loaded else "")
                         + (f", used {h.uses} times" if h.uses else "") for h in hits)
    return tool(True, name, text, [h.to_json() for h in hits])
