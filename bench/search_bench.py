"""Model search latency over a large library, against the endpoint's previous substring/difflib scoring.

    .venv/bin/python bench/search_bench.py [--models 1000] [--queries 200]

Both run on the same synthetic library (the emulator's catalog multiplied with realistic key variations)
and the same queries (exact keys, partial names, typos, misses), in this process. Prints ms per search
(median) for: the old tool scoring (substring else difflib ratio on the key), `core.search.search` with
no filters, with filters, and with usage counts; plus `recommend` and `alternatives`.
"""

from __future__ import annotations

import argparse
import difflib
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.control.search import Filters, alternatives, recommend, search
from lmstudio_tray.core.models import ModelInfo
from lmstudio_tray.emulator.state.catalog import default_catalog


def library(n: int) -> list[tuple[str, ModelInfo]]:
    base = []
    for spec in default_catalog():
        caps = frozenset(c for c, on in (("vision", spec.vision), ("tool_use", spec.tool_use)) if on)
        base.append(ModelInfo(key=spec.key, type=spec.type, display_name=spec.display_name,
                              publisher=spec.publisher, architecture=spec.architecture,
                              quantization=spec.quantization, size_bytes=spec.size_bytes,
                              params_string=spec.params_string, max_context_length=spec.max_context_length,
                              capabilities=caps))
    rng = random.Random(7)
    out = []
    for i in range(n):
        m = base[i % len(base)]
        out.append(("local", replace(m, key=f"{m.key}-v{i}", size_bytes=(m.size_bytes or 1) + rng.randint(0, 10**9))))
    return out


def old_scoring(models: list[tuple[str, ModelInfo]], query: str, limit: int = 10) -> list[ModelInfo]:
    q = query.lower()
    scored = []
    for _, m in models:
        hay = " ".join([m.key, m.display_name or "", m.publisher or "", m.architecture or "", *m.variants]).lower()
        score = 2.0 if q in hay else difflib.SequenceMatcher(None, q, m.key.lower()).ratio()
        if score >= 0.45:
            scored.append((score, m))
    scored.sort(key=lambda t: (-t[0], t[1].key))
    return [m for _, m in scored[:limit]]


def per_call_ms(fn: Callable[[str], object], queries: list[str]) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    models = library(args.models)
    pool = ["qwen3", "gemma", "gema", "devstral small", "gpt-oss-20b-v3", "nomic", "zzz nothing", "llama 3b",
            "qwen/qwen2.5-vl-7b-v2", "mistral"]
    queries = [pool[i % len(pool)] for i in range(args.queries)]
    usage = {m.key: i % 17 for i, (_, m) in enumerate(models)}
    rows = [
        ("old tool scoring (substring/difflib)", per_call_ms(lambda q: old_scoring(models, q), queries)),
        ("core.search, query only", per_call_ms(lambda q: search(models, q, limit=10), queries)),
        ("core.search, query + filters", per_call_ms(
            lambda q: search(models, q, Filters(type="llm", tool_use=True, max_size=10**10), limit=10), queries)),
        ("core.search, query + usage", per_call_ms(lambda q: search(models, q, usage=usage, limit=10), queries)),
        ("recommend(task)", per_call_ms(lambda q: recommend(f"coding agent {q}", models), queries[:50])),
        ("alternatives(key)", per_call_ms(lambda q: alternatives(q, models), queries[:50])),
    ]
    print(f"{args.models} models, {args.queries} queries; median ms per call")
    base = rows[0][1]
    for label, ms in rows:
        print(f"  {label:<40} {ms:8.2f} ms  ({ms / base:.1f}x old)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
