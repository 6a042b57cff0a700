"""CPU time of the message transform the plugin asks for before each request (`trim_messages`).

    .venv/bin/python bench/transforms_bench.py [--messages 2000] [--runs 50] [--json]

A long OpenCode session trimmed to a budget: every third message carries a tool call answered by the next
one, so tool units are kept or dropped together. Baseline in the same run: summing the token counts of the
same messages, the least any trim must do. Target (issue 3's hook budget): well under 50 ms for 2,000
messages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.hooks.transforms import MessageDigest, trim_messages


def session(n: int) -> list[MessageDigest]:
    out = [MessageDigest("sys", "system", 800)]
    for i in range(n):
        if i % 3 == 1:
            out.append(MessageDigest(f"m{i}", "assistant", 300, tool_calls=(f"c{i}",)))
        elif i % 3 == 2:
            out.append(MessageDigest(f"m{i}", "tool", 300, tool_results=(f"c{i - 1}",)))
        else:
            out.append(MessageDigest(f"m{i}", "user", 300))
    return out


def timed(fn: Callable[[], object], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p95_ms": samples[int(0.95 * (len(samples) - 1))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    msgs = session(args.messages)
    budget = sum(m.tokens for m in msgs) // 10
    result = trim_messages(msgs, budget)
    data: dict[str, Any] = {
        "settings": {"messages": len(msgs), "budget_tokens": budget, "kept": len(result.keep)},
        "trim": timed(lambda: trim_messages(msgs, budget), args.runs),
        "baseline_sum_tokens": timed(lambda: sum(max(0, m.tokens) for m in msgs), args.runs),
        "targets": {"trim_p50_ms": 50.0},
    }
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        t, b = data["trim"], data["baseline_sum_tokens"]
        print(f"trim {len(msgs)} messages to {budget} tokens (kept {len(result.keep)}): "
              f"p50 {t['p50_ms']:.2f} ms, p95 {t['p95_ms']:.2f} ms (target < 50 ms); "
              f"summing their tokens alone: p50 {b['p50_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
