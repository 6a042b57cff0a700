"""`load`, `unload`, `switch`, `get` (in cli/downloads.py), `bench` (in cli/bench.py) and
`models list/search/recommend/compare`: the model actions from a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from lmstudio_tray.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    human_size,
    instance_arg,
    pick_instance,
    print_json,
    run_with_core,
)
from lmstudio_tray.cli.bench import add_bench_parser
from lmstudio_tray.cli.downloads import add_get_parser
from lmstudio_tray.core.control.actions import LoadResult, UnloadResult
from lmstudio_tray.core.control.search import (
    TYPES,
    Filters,
    Located,
    has_tools,
    has_vision,
    latest_per_suite,
    parse_context,
    parse_size,
    pick,
    recommend,
    search,
)
from lmstudio_tray.core.errors import ActionError, SearchError, SharedBusyError
from lmstudio_tray.core.events import Event, LoadProgressed, LoadStarted, LoadWaiting, LoadWarned
from lmstudio_tray.core.lmstudio.lms import LoadEstimate
from lmstudio_tray.core.lmstudio.load_options import LoadOptions, parse_gpu
from lmstudio_tray.core.models import BenchFigures, InstanceSnapshot, ModelInfo, ModelType
from lmstudio_tray.core.runtime import Core

FORCE_HELP = ("on an instance shared by your team, unload even a model that served requests through this "
              "machine in the last few minutes (by default that is refused)")


def _confirm_anyway(exc: ActionError, *, interactive: bool) -> bool:
    """A refused change on a shared instance: ask at a terminal whether to do it anyway."""
    if not isinstance(exc, SharedBusyError) or not interactive:
        return False
    print(f"lmstudio-tray: {exc}", file=sys.stderr)
    try:
        answer = input("Do it anyway? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _interactive(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and sys.stdin.isatty() and sys.stderr.isatty()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: use a whole number of at least 1")
    return value


def _gpu(text: str) -> float:
    try:
        return parse_gpu(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load_options(p: argparse.ArgumentParser) -> None:
    """The `lms load` options, on `load` and `switch`."""
    p.add_argument("--context-length", "-c", type=_positive, metavar="N", help="context length to load with")
    p.add_argument("--gpu", type=_gpu, metavar="off|max|0..1",
                   help="GPU offload: off, max or a ratio between 0 and 1 (needs `lms`: this machine's LM Studio)")
    p.add_argument("--ttl", type=_positive, metavar="S", help="unload after S seconds without requests")
    p.add_argument("--parallel", type=_positive, metavar="N",
                   help="requests the loaded model serves at once (needs `lms`)")
    p.add_argument("--identifier", metavar="ID", help="name the loaded copy ID in the API (needs `lms`)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("load", help="load a model (shows LM Studio's progress)")
    p.add_argument("model", help="model key, e.g. qwen/qwen3-4b-2507")
    _load_options(p)
    p.add_argument("--check", action="store_true",
                   help="only ask LM Studio whether the load would fit in memory (`lms load --estimate-only`); "
                   "exit 1 when it would not")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    instance_arg(p)
    p.set_defaults(func=run_load, switch=False, force=False)

    p = sub.add_parser("switch", help="load a model, then unload the other chat models")
    p.add_argument("model")
    _load_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    instance_arg(p)
    p.set_defaults(func=run_load, switch=True)

    p = sub.add_parser("unload", help="unload a model (by key or instance id), or --all")
    p.add_argument("target", nargs="?", help="model key or instance id (e.g. qwen/qwen3-4b-2507:2)")
    p.add_argument("--all", "-a", action="store_true", help="unload every loaded model")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    instance_arg(p)
    p.set_defaults(func=run_unload)

    add_get_parser(sub, instance_arg)
    add_bench_parser(sub, instance_arg)

    p = sub.add_parser("models", help="downloaded and loaded models")
    msub = p.add_subparsers(dest="models_command", metavar="COMMAND")
    lp = msub.add_parser("list", help="list downloaded models and what is loaded")
    lp.add_argument("--json", action="store_true")
    lp.add_argument("--loaded", action="store_true", help="only loaded models")
    instance_arg(lp)
    lp.set_defaults(func=run_list)
    _register_search(msub)
    p.set_defaults(func=run_list, json=False, loaded=False, instance=None)


def _options_of(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(context_length=args.context_length, gpu=args.gpu, ttl=args.ttl, parallel=args.parallel,
                       identifier=args.identifier)


def run_load(args: argparse.Namespace) -> int:
    if getattr(args, "check", False):
        return run_check(args)
    try:
        options = _options_of(args)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)

    async def body(core: Core) -> LoadResult:
        name = pick_instance(core, args.instance)
        with _Progress(core, bar=not args.json and sys.stderr.isatty()) as _:
            if args.switch:
                try:
                    return await core.actions.switch(name, args.model, options=options, force=args.force)
                except ActionError as exc:
                    if not _confirm_anyway(exc, interactive=_interactive(args)):
                        raise
                return await core.actions.switch(name, args.model, options=options, force=True)
            return await core.actions.load(name, args.model, options=options)

    try:
        result = run_with_core(args, body)
    except ActionError as exc:
        fail(str(exc))
        return EXIT_FAILURE
    if args.json:
        print_json(result.to_json())
    elif result.already_loaded:
        print(f"{result.model} is already loaded as {result.instance_id} on {result.instance}.")
    else:
        ctx = f", context {result.context_length}" if result.context_length else ""
        print(f"Loaded {result.model} as {result.instance_id} on {result.instance} in {result.seconds:.1f} s{ctx}.")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    """`load MODEL --check`: LM Studio's memory estimate, nothing loaded."""
    options = _options_of(args)

    async def body(core: Core) -> LoadEstimate:
        return await core.actions.estimate(pick_instance(core, args.instance), args.model, options=options)

    try:
        est = run_with_core(args, body)
    except ActionError as exc:
        fail(str(exc))
        return EXIT_FAILURE
    if args.json:
        print_json({"model": est.model, "context_length": est.context_length, "gpu_offload": est.gpu_offload,
                    "gpu_memory_bytes": est.gpu_memory_bytes, "total_memory_bytes": est.total_memory_bytes,
                    "low_confidence": est.low_confidence, "fits": est.fits})
    else:
        ctx = f" with context {est.context_length}" if est.context_length else ""
        verdict = "fits" if est.fits else "will NOT fit (LM Studio's resource guardrails would refuse it)"
        sure = " (low confidence)" if est.low_confidence else ""
        print(f"{est.model}{ctx}: about {human_size(est.total_memory_bytes)} in all, "
              f"{human_size(est.gpu_memory_bytes)} on the GPU{sure}; {verdict}.")
    return EXIT_OK if est.fits else EXIT_FAILURE


def run_unload(args: argparse.Namespace) -> int:
    if not args.all and not args.target:
        fail("name a model key or instance id to unload, or pass --all", 2)

    async def body(core: Core) -> UnloadResult:
        name = pick_instance(core, args.instance)

        async def unload(force: bool) -> UnloadResult:
            if args.all:
                return await core.actions.unload_all(name, force=force)
            return await core.actions.unload(name, args.target, force=force)

        try:
            return await unload(args.force)
        except ActionError as exc:
            if not _confirm_anyway(exc, interactive=_interactive(args)):
                raise
        return await unload(True)

    try:
        ids = run_with_core(args, body).unloaded
    except ActionError as exc:
        fail(str(exc))
        return EXIT_FAILURE
    print("Unloaded " + (", ".join(ids) if ids else "nothing (no model was loaded)") + ".")
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    async def body(core: Core) -> InstanceSnapshot:
        name = pick_instance(core, args.instance)
        return await core.monitor.get(name)

    snap = run_with_core(args, body)
    models = [m for m in snap.models if m.loaded or not args.loaded]
    if args.json:
        print_json({"instance": snap.name, "state": snap.state.value, "models": [m.to_json() for m in models]})
        return EXIT_OK if snap.failure is None else EXIT_FAILURE
    if snap.failure is not None:
        print(f"{snap.name}: {snap.state.value} — {snap.error}", file=sys.stderr)
        return EXIT_FAILURE
    for m in sorted(models, key=lambda m: (not m.loaded, m.type, m.key)):
        mark = "●" if m.loaded else " "
        ctx = f"max ctx {m.max_context_length}" if m.max_context_length else ""
        loaded = ", ".join(f"{i.id} (ctx {i.context_length})" for i in m.instances)
        print(f"{mark} {m.key:<45} {m.type:<9} {human_size(m.size_bytes):>9}  {ctx}  {loaded}".rstrip())
    return EXIT_OK


def _noop() -> None:
    return None


class _Progress:
    """What a load says while it runs, fed by the core's load events: its warnings and that it waits for another
    process's load (always, on stderr), and a rich progress bar (only on a terminal)."""

    def __init__(self, core: Core, *, bar: bool) -> None:
        self.core = core
        self.bar = bar
        self._unsubscribe: Callable[[], None] = _noop
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.bar:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            )
            self._progress.start()
        self._unsubscribe = self.core.bus.subscribe(self._on_event, LoadStarted, LoadProgressed, LoadWaiting,
                                                    LoadWarned)
        return self

    def _say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, LoadWarned):
            self._say(f"lmstudio-tray: {event.message}")
        elif isinstance(event, LoadWaiting):
            self._say(f"Waiting for lmstudio-tray (pid {event.pid}), which is loading {event.model} on "
                      f"{event.instance}...")
            self._add(event.model, f"Waiting for {event.model}")
        elif isinstance(event, LoadStarted):
            self._add(event.model, f"Loading {event.model}")
        elif isinstance(event, LoadProgressed) and event.model in self._tasks and event.progress is not None:
            self._progress.update(self._tasks[event.model], completed=event.progress * 100)

    def _add(self, model: str, description: str) -> None:
        if self._progress is None:
            return
        if model in self._tasks:
            self._progress.update(self._tasks[model], description=description, completed=0)
        else:
            self._tasks[model] = self._progress.add_task(description, total=100)

    def __exit__(self, *exc: object) -> None:
        self._unsubscribe()
        if self._progress is not None:
            self._progress.stop()


# ---- search, recommend, compare -------------------------------------------------------------------------


def _register_search(msub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = msub.add_parser("search", help="find downloaded models on every instance by name, kind and specs")
    sp.add_argument("query", nargs="?", default="", help="part of a model name (typos are fine); empty: all")
    sp.add_argument("--type", choices=TYPES, help="llm (vision models included) or embedding")
    sp.add_argument("--arch", metavar="NAME", help="architecture, e.g. qwen3, llama, gemma3")
    sp.add_argument("--quant", metavar="Q", help="quantization prefix, e.g. Q4, Q8_0, 4bit, MXFP4")
    sp.add_argument("--min-ctx", metavar="N", help="smallest max context length, e.g. 32768 or 32k")
    sp.add_argument("--min-size", metavar="SIZE", help="smallest file size, e.g. 2GB")
    sp.add_argument("--max-size", metavar="SIZE", help="largest file size, e.g. 8GB")
    sp.add_argument("--vision", action="store_true", default=None, help="only models that take images")
    sp.add_argument("--tools", action="store_true", default=None, help="only models trained for tool use")
    sp.add_argument("--loaded", action="store_true", default=None, help="only loaded models")
    sp.add_argument("--limit", type=int, default=20, metavar="N")
    sp.add_argument("--json", action="store_true")
    instance_arg(sp)
    sp.set_defaults(func=run_search)

    rp = msub.add_parser("recommend", help="suggest downloaded models for a task, from specs and your usage")
    rp.add_argument("task", nargs="+", help='what you want to do, e.g. "coding agent" or "read screenshots"')
    rp.add_argument("--limit", type=int, default=3, metavar="N")
    rp.add_argument("--json", action="store_true")
    instance_arg(rp)
    rp.set_defaults(func=run_recommend)

    cp = msub.add_parser("compare", help="two or more models side by side: specs and measured performance")
    cp.add_argument("models", nargs="+", metavar="MODEL", help="model keys (or unambiguous parts of them)")
    cp.add_argument("--since", default="30d", help="window of the measured figures, e.g. 7d, 24h (default 30d)")
    cp.add_argument("--json", action="store_true")
    instance_arg(cp)
    cp.set_defaults(func=run_compare)


def _all_models(args: argparse.Namespace) -> list[Located]:
    """(instance, model) for every downloaded model the reachable instances list (or the one asked for)."""

    async def body(core: Core) -> list[InstanceSnapshot]:
        if args.instance:
            return [await core.monitor.get(pick_instance(core, args.instance))]
        return list(core.monitor.snapshots())

    snaps = run_with_core(args, body)
    for snap in snaps:
        if snap.failure is not None:
            print(f"lmstudio-tray: {snap.name} is {snap.state.value}: {snap.error}; its models are not searched",
                  file=sys.stderr)
    return [(snap.name, m) for snap in snaps if snap.failure is None for m in snap.models]


def _filters(args: argparse.Namespace) -> Filters:
    try:
        return Filters(
            type=ModelType(args.type) if args.type else None,
            architecture=args.arch,
            quantization=args.quant,
            min_context=parse_context(args.min_ctx) if args.min_ctx else None,
            min_size=parse_size(args.min_size) if args.min_size else None,
            max_size=parse_size(args.max_size) if args.max_size else None,
            vision=args.vision,
            tool_use=args.tools,
            loaded=args.loaded,
        )
    except SearchError as exc:
        fail(str(exc), EXIT_USAGE)


def _spec_line(m: ModelInfo) -> str:
    caps = [c for c, on in (("vision", has_vision(m)), ("tools", has_tools(m))) if on]
    parts = [m.type, m.architecture or "?", m.quantization or "?", human_size(m.size_bytes),
             f"ctx {m.max_context_length}" if m.max_context_length else "ctx ?", *caps]
    return "  ".join(parts)


def run_search(args: argparse.Namespace) -> int:
    filters = _filters(args)
    located = _all_models(args)
    from lmstudio_tray.diagnostics.usage import measured

    hits = search(located, args.query, filters, usage=measured().usage(), limit=args.limit)
    if args.json:
        print_json({"query": args.query, "results": [h.to_json() for h in hits]})
        return EXIT_OK if hits else EXIT_FAILURE
    if not hits:
        what = f"matches {args.query!r}" if args.query else "passes those filters"
        print(f"No downloaded model {what} ({len(located)} searched).", file=sys.stderr)
        return EXIT_FAILURE
    width = max(len(h.model.key) for h in hits)
    for h in hits:
        mark = "●" if h.model.loaded else " "
        uses = f"  used {h.uses}×" if h.uses else ""
        print(f"{mark} {h.model.key:<{width}}  {_spec_line(h.model)}  [{h.instance}]{uses}")
    return EXIT_OK


def run_recommend(args: argparse.Namespace) -> int:
    task = " ".join(args.task)
    located = _all_models(args)
    from lmstudio_tray.diagnostics.usage import measured

    figures = measured()
    needs, recs = recommend(task, located, performance=figures.performance(), limit=args.limit)
    if args.json:
        print_json({"task": task, "needs": needs.describe(), "measured": figures.unavailable is None,
                    "recommendations": [{**r.to_json(), "bench": {  # the figures of the instance it is on
                        s: b.to_json() for s, b in latest_per_suite(figures.bench.get(r.model.key, ()),
                                                                    [r.instance]).items()}} for r in recs]})
        return EXIT_OK if recs else EXIT_FAILURE
    if not recs:
        print(f"No downloaded model fits {task!r} (needs: {needs.describe()}). Download one in LM Studio "
              "(Discover tab) or with `lms get`, then try again.", file=sys.stderr)
        return EXIT_FAILURE
    print(f"For {task!r} (needs: {needs.describe()}):")
    for n, r in enumerate(recs, 1):
        print(f"{n}. {r.model.key} [{r.instance}] — {'; '.join(r.reasons)}")
    if figures.unavailable:
        print(f"(ranked by specs only: {figures.unavailable})")
    elif not any(r.model.key in figures.bench for r in recs):
        print("(no bench figures for these models yet: `lmstudio-tray bench` measures them on this machine)")
    return EXIT_OK


_SPEC_ROWS: tuple[tuple[str, Callable[[ModelInfo], str]], ...] = (
    ("type", lambda m: m.type),
    ("publisher", lambda m: m.publisher or "?"),
    ("architecture", lambda m: m.architecture or "?"),
    ("parameters", lambda m: m.params_string or "?"),
    ("quantization", lambda m: m.quantization or "?"),
    ("format", lambda m: m.format or "?"),
    ("size", lambda m: human_size(m.size_bytes)),
    ("max context", lambda m: str(m.max_context_length or "?")),
    ("vision", lambda m: "yes" if has_vision(m) else "no"),
    ("tool use", lambda m: "yes" if has_tools(m) else "no"),
    ("loaded", lambda m: ", ".join(f"{i.id} (ctx {i.context_length})" for i in m.instances) or "no"),
)
_MEASURED_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("turns", "turns", str),
    ("success rate", "session_success_rate", lambda v: f"{v:.0%}"),
    ("turn success", "turn_success_rate", lambda v: f"{v:.0%}"),
    ("tokens/s (p50)", "tokens_per_s", lambda v: f"{v:.1f}"),
    ("latency p50", "latency_p50_s", lambda v: f"{v:.2f} s"),
    ("latency p95", "latency_p95_s", lambda v: f"{v:.2f} s"),
    ("loads", "loads", str),
    ("load time p50", "load_p50_s", lambda v: f"{v:.1f} s"),
)


def run_compare(args: argparse.Namespace) -> int:
    if len(args.models) < 2:
        fail("compare needs at least two models, e.g. `models compare qwen/qwen3-4b-2507 openai/gpt-oss-20b`",
             EXIT_USAGE)
    from lmstudio_tray.diagnostics.usage import measured, parse_window

    try:
        window = parse_window(args.since)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    located = _all_models(args)
    try:
        chosen = pick(located, args.models)
    except SearchError as exc:
        fail(str(exc), EXIT_USAGE)
    figures = measured(window)
    if args.json:
        print_json({
            "window_s": window,
            "measured_available": figures.unavailable is None,
            "why_not_measured": figures.unavailable,
            "models": [{"instances": inst, "spec": m.to_json(), "measured": figures.models.get(m.key),
                        "bench": {s: b.to_json() for s, b in latest_per_suite(figures.bench.get(m.key, ()),
                                                                               inst).items()}}
                       for inst, m in chosen],
        })
        return EXIT_OK
    header = ["", *(m.key for _, m in chosen)]
    rows: list[list[str]] = [["instances", *(", ".join(inst) for inst, _ in chosen)]]
    rows += [[label, *(fmt(m) for _, m in chosen)] for label, fmt in _SPEC_ROWS]
    if figures.unavailable is None:
        rows.append([f"— measured, last {args.since}", *("" for _ in chosen)])
        for label, key, show in _MEASURED_ROWS:
            cells = []
            for _, m in chosen:
                value = (figures.models.get(m.key) or {}).get(key)
                cells.append("—" if value is None else show(value))
            rows.append([label, *cells])
        rows += _bench_rows(figures.bench, chosen)
    _print_table(header, rows)
    if figures.unavailable is not None:
        print(f"\nNo measured figures: {figures.unavailable}.")
    elif not any(m.key in figures.bench for _, m in chosen):
        print(f"\nNo bench figures for these models: `lmstudio-tray bench {' '.join(m.key for _, m in chosen)}` "
              "measures them on this machine.")
    return EXIT_OK


def _spread(b: BenchFigures) -> str:
    if b.gen_tps is None:
        return "—"
    if b.gen_tps_low is None or b.gen_tps_high is None:
        return f"{b.gen_tps:.1f}"
    return f"{b.gen_tps:.1f} ({b.gen_tps_low:.1f}–{b.gen_tps_high:.1f})"


_BENCH_ROWS: tuple[tuple[str, Callable[[BenchFigures], str]], ...] = (
    ("gen tok/s (spread)", _spread),
    ("first token", lambda b: "—" if b.first_token_s is None else f"{b.first_token_s:.2f} s"),
    ("load time", lambda b: "loaded already" if b.load_s is None else f"{b.load_s:.1f} s"),
    ("checks", lambda b: f"{b.checks_passed}/{b.checks}" if b.checks else "—"),
    ("measured", lambda b: time.strftime("%Y-%m-%d %H:%M", time.localtime(b.measured_at))),
)


def _bench_rows(bench: Mapping[str, tuple[BenchFigures, ...]],
                chosen: list[tuple[list[str], ModelInfo]]) -> list[list[str]]:
    """One block per suite any of the models was benched in: its latest figures of the current suite version, measured
    on the instances it is on."""
    rows: list[list[str]] = []
    latest = [latest_per_suite(bench.get(m.key, ()), inst) for inst, m in chosen]
    models = [m for _, m in chosen]
    for suite in ("quick", "coding"):
        per_model = [per_suite.get(suite) for per_suite in latest]
        known = [b for b in per_model if b is not None]
        if not known:
            continue
        rows.append([f"— {suite} bench (v{known[0].suite_version})", *("" for _ in models)])
        rows += [[label, *("—" if b is None else show(b) for b in per_model)] for label, show in _BENCH_ROWS]
    return rows


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)).rstrip())
