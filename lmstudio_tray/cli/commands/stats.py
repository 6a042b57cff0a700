"""`lmstudio-tray stats` (reports and suggestions from the analytics store) and `lmstudio-tray dashboard`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "stats", help="usage and performance per model and instance, with suggestions",
        description="Report what the analytics store recorded (while the tray or `serve` ran): per model "
        "frequency, success rate, turn latency, tokens/s, context use and loads; per instance uptime and "
        "failures; then suggestions with the numbers behind them.",
    )
    p.add_argument("--since", default="7d", help="time window: 30m, 12h, 7d, 2w or all (default: 7d)")
    p.add_argument("--json", action="store_true", help="print the report and suggestions as JSON")
    p.add_argument("--db", metavar="PATH", help="analytics database (default: the platform data dir)")
    p.set_defaults(func=run_stats)

    d: argparse.ArgumentParser = subparsers.add_parser(
        "dashboard", help="open the local dashboard in a browser",
        description="Ask the running endpoint (tray or `serve`) for a single-use sign-in link and open it. "
        "The long-lived endpoint token never goes into the URL.",
    )
    d.add_argument("--no-open", action="store_true", help="print the link instead of opening a browser")
    d.set_defaults(func=run_dashboard)


# ---- stats ----------------------------------------------------------------------------------------


def run_stats(args: argparse.Namespace) -> int:
    from lmstudio_tray.analytics.figures import read_stats
    from lmstudio_tray.analytics.store import StoreError

    try:
        data = read_stats(Path(args.db).expanduser() if args.db else None, args.since)
    except ValueError as exc:
        print(f"lmstudio-tray stats: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "report": None, "suggestions": []}))
        else:
            print(f"{exc}.\nAnalytics are recorded while the tray or `lmstudio-tray serve` runs "
                  "(config: [analytics] enabled = true).")
        return EXIT_OK
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(render_text(data["report"], data["suggestions"], args.since, data["bench"]))
    return EXIT_OK


def _f(value: Any, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _span(seconds: Any) -> str:
    """A session's length in the table (5 s, 1 min 15 s, 1 h 02 min)."""
    from lmstudio_tray.core.support.units import format_duration

    return "-" if seconds is None else format_duration(seconds)


def _gb(value: Any) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GB"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        # the first column (names) reads best left-aligned, the figures right-aligned
        return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(headers), *(line(r) for r in rows)]


def render_text(
    report: dict[str, Any], tips: list[dict[str, Any]], window: str, bench: list[dict[str, Any]] | None = None
) -> str:
    t = report["totals"]
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(report["since"])) if report["since"] else "the start"
    lines = [f"Analytics since {since} ({window}): {t['verdicts']} validations, {t['turns']} turns, "
             f"{t['sessions']} sessions, {t['loads']} loads."]
    if report["models"]:
        lines += ["", "Models"]
        rows = []
        for m in report["models"]:
            ctx = "-"
            if m["context_used_p95"] is not None:
                ctx = str(m["context_used_p95"]) + (f"/{m['loaded_context']}" if m["loaded_context"] else "")
            loads = str(m["loads"]) + (f" ({m['load_failures']} failed)" if m["load_failures"] else "")
            rows.append([m["model"], str(m["verdicts"]), str(m["turns"]), _pct(m["session_success_rate"]),
                         _f(m["latency_p50_s"], ".1f", " s"), _f(m["latency_p95_s"], ".1f", " s"),
                         _f(m["tokens_per_s"], ".1f"), _f(m["output_per_input"], ".2f"), ctx, loads,
                         _f(m["load_p50_s"], ".1f", " s"), _span(m["session_median_s"]),
                         _span(m["session_total_s"] if m["sessions"] else None)])
        lines += _table(["model", "validations", "turns", "sessions ok", "p50 turn", "p95 turn", "tokens/s",
                         "out/in", "context p95/loaded", "loads", "load p50", "session median", "sessions total"],
                        rows)
    if report["instances"]:
        lines += ["", "Instances"]
        rows = [[i["instance"], i["state"] or "-", _pct(i["uptime"]), str(i["failures"]), str(i["load_failures"]),
                 str(i["session_errors"]), _f(i["validate_p50_ms"], ".2f", " ms"), _gb(i["rss_bytes"]),
                 _f(i["cpu_percent_avg"], ".0f", "%"), _gb(i["loaded_bytes"])] for i in report["instances"]]
        lines += _table(["instance", "state", "uptime", "failures", "load failures", "session errors",
                         "validate p50", "LM Studio RSS", "CPU avg", "loaded"], rows)
    if bench:
        lines += ["", "Benchmarks (`lmstudio-tray bench`; compare rows of the same suite and LM Studio versions)"]
        rows = [[b["model"], time.strftime("%Y-%m-%d %H:%M", time.localtime(b["ts"])), b["instance"] or "-",
                 b["lmstudio_version"] or "-", f"{b['suite']} v{b['suite_version']}", b["quantization"] or "-",
                 _f(b["context_length"], "d"), _f(b["load_s"], ".1f", " s"), _f(b["first_token_s"], ".2f", " s"),
                 _f(b["prompt_tps"], ".0f"), _f(b["gen_tps"], ".1f"),
                 f"{b['checks_passed']}/{b['checks']}" if b["checks"] else "-"] for b in bench]
        lines += _table(["model", "when", "instance", "LM Studio", "suite", "quant", "context", "load",
                         "first token", "prompt tok/s", "gen tok/s", "checks"], rows)
    lines += ["", "Suggestions"]
    if not tips:
        lines.append("  none: nothing in the last week calls for a change.")
    for tip in tips:
        lines.append(f"  - {tip['message']}")
        numbers = ", ".join(f"{k}={v}" for k, v in tip["numbers"].items() if v is not None)
        if numbers:
            lines.append(f"      ({numbers})")
    return "\n".join(lines)


# ---- dashboard ------------------------------------------------------------------------------------


def run_dashboard(args: argparse.Namespace) -> int:
    import webbrowser

    from lmstudio_tray.core.support.endpoint_file import EndpointUnavailable, dashboard_link

    try:
        url = dashboard_link()
    except EndpointUnavailable as exc:
        print(f"lmstudio-tray dashboard: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.no_open or not webbrowser.open(url):
        print(f"Open this link within a minute (it works once): {url}")
    else:
        print(f"Opened the dashboard in your browser ({url.split('?', 1)[0]}).")
    return EXIT_OK
