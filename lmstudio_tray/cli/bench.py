"""`lmstudio-tray bench [MODEL...]`: benchmark models with the core's bench runner (`core/control/bench.py`), show
the figures as a table (or JSON) and keep them in the analytics store so later runs compare.

Progress goes to stderr, one line per step. Ctrl-C stops the bench and puts back what was loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lmstudio_tray.cli._common import fail, human_size, pick_instance, run_with_core
from lmstudio_tray.core.control.bench import (
    Bench,
    BenchError,
    BenchProgress,
    BenchReport,
    Spread,
    Suite,
    bench_lock_file,
    bench_slot,
    instance_bench,
)
from lmstudio_tray.core.errors import LMStudioError
from lmstudio_tray.core.runtime import Core

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                     instance_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `bench` on the command line."""
    p = sub.add_parser(
        "bench", help="benchmark models: load time, time to first token, tokens/s",
        description="Run a fixed suite of prompts through LM Studio on each model (default: the loaded chat "
        "models) and report median and spread over the runs, fastest first. A model that is not loaded is "
        "loaded for its run; what was loaded is put back afterwards, also on Ctrl-C. Results are kept in the "
        "analytics store and shown by `lmstudio-tray stats`.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="model keys, e.g. qwen/qwen3-4b-2507")
    p.add_argument("--suite", choices=[s.value for s in Suite], default=Suite.QUICK.value,
                   help="quick: a short and a long prompt; coding: also a small coding task whose answer is checked")
    p.add_argument("--runs", type=int, default=3, metavar="N", help="runs per model (default: 3)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--db", metavar="PATH", help="analytics database to keep the results in (default: the platform "
                   "data dir)")
    instance_arg(p)
    p.set_defaults(func=run_bench)


def _progress(step: BenchProgress) -> None:
    print(f"bench: {step.model}: {step.step}", file=sys.stderr, flush=True)


def run_bench(args: argparse.Namespace) -> int:
    kept: dict[str, object] = {}

    async def body(core: Core) -> BenchReport:
        name = pick_instance(core, args.instance)
        bench = instance_bench(core.monitor.instance(name), core.benches.tracker(name), progress=_progress)
        kept.update(instance=name, record=core.config.analytics.enabled, bench=bench)
        async with bench_slot(bench_lock_file()):  # one bench at a time, also against the agent's tool
            return await bench.run(args.models, Suite(args.suite), args.runs)

    try:
        report = run_with_core(args, body)
    except BenchError as exc:
        fail(str(exc), EXIT_USAGE)
    except LMStudioError as exc:
        fail(f"the bench stopped: {exc.message} ({_put_back_words(kept.get('bench'), exc.message)})", EXIT_FAILURE)
    except KeyboardInterrupt:
        print(f"lmstudio-tray: bench interrupted; {_put_back_words(kept.get('bench'), '')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if kept.get("record"):
        _record(report, str(kept["instance"]), args.db)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render(report))
    return EXIT_OK


def _put_back_words(bench: object, stopped: str) -> str:
    """Whether what was loaded before the bench is loaded again, as the bench's error says it."""
    failure = bench.restore_failure if isinstance(bench, Bench) else None
    if failure is None:
        return "what was loaded has been put back"
    why = "" if failure == stopped else f": {failure}"
    return f"putting back what was loaded failed{why}; `lmstudio-tray models list` shows what is loaded now"


def _record(report: BenchReport, instance: str, db: str | None) -> None:
    from lmstudio_tray.analytics.figures import record_bench
    from lmstudio_tray.analytics.store import StoreError

    try:
        record_bench(Path(db).expanduser() if db else None, report, instance, time.time())
    except StoreError as exc:
        print(f"lmstudio-tray: the results were not kept: {exc}", file=sys.stderr)


def _spread(value: Spread | None, fmt: str) -> str:
    if value is None:
        return "-"
    return f"{value.median:{fmt}} ({value.low:{fmt}}-{value.high:{fmt}})"


def render(report: BenchReport) -> str:
    headers = ["model", "quant", "context", "size", "load", "first token s", "prompt tok/s", "gen tok/s", "checks"]
    rows = [[
        r.model, r.quantization or "-", str(r.context_length or "-"), human_size(r.memory_bytes),
        f"{r.load_seconds:.1f} s" if r.load_seconds is not None else "loaded",
        _spread(r.first_token_seconds, ".2f"), _spread(r.prompt_tokens_per_s, ".0f"),
        _spread(r.generated_tokens_per_s, ".1f"), f"{r.checks_passed}/{r.checks}" if r.checks else "-",
    ] for r in report.results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [f"Suite {report.suite.value} v{report.suite_version}, {report.results[0].runs} run(s) per model; "
             "median (lowest-highest), fastest generation first.",
             f"LM Studio: {report.lmstudio_version}" if report.lmstudio_version
             else f"LM Studio version unknown: {report.version_note}."]
    for cells in (headers, *rows):
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    return "\n".join(lines)
