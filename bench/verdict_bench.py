"""CPU time of one verdict (`core.verdict.evaluate`), the pure part of every validate hook.

    .venv/bin/python bench/verdict_bench.py [--models 40] [--calls 2000] [--json]

A catalog of `--models` downloaded models named like real ones (every seventh loaded); three requests: a
loaded model (`ready`), a downloaded one (`not_loaded`, which ranks suggestions) and an unknown name
(`unknown_model`, fuzzy suggestions over the whole catalog). Baseline in the same run: `resolve_model`
alone, the least any verdict must do. Target: the hook's whole budget is ~1 ms, so each verdict well under
0.5 ms. Before rapidfuzz (difflib): not_loaded 1,146 µs, unknown_model 950 µs with 40 models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.config.schema import ValidationConfig
from lmstudio_tray.core.hooks.verdict import ValidateRequest, evaluate, resolve_model
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState, LoadedInstance, ModelInfo

URL = "http://127.0.0.1:1234"


# real publishers and families, so that names are as alike and as different as in a real library
FAMILIES = ("qwen/qwen3-{}b-2507", "google/gemma-3-{}b", "meta/llama-3.{}-instruct", "mistralai/mistral-small-{}",
            "microsoft/phi-4-mini-{}", "deepseek/deepseek-r1-distill-qwen-{}b", "openai/gpt-oss-{}b",
            "ibm/granite-3.{}-8b-instruct", "zai-org/glm-4.{}-air", "liquid/lfm2-{}b")


def catalog(n: int) -> tuple[ModelInfo, ...]:
    keys = [FAMILIES[i % len(FAMILIES)].format(i // len(FAMILIES) + 1) for i in range(n)]
    return tuple(
        ModelInfo(key=key, type="llm", max_context_length=32768,
                  instances=(LoadedInstance(key, 4096),) if i % 7 == 0 else ())
        for i, key in enumerate(keys)
    )


def per_call_us(fn: Any, calls: int) -> dict[str, float]:
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls * 1e6)
    return {"median_us": round(statistics.median(samples), 2), "best_us": round(min(samples), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    snap = InstanceSnapshot(name="local", url=URL, state=InstanceState.READY, models=catalog(args.models), jit=False)
    policy = ValidationConfig().policy
    keys = [m.key for m in snap.models]
    requests = {"ready": keys[7], "not_loaded": keys[8], "unknown_model": "someone/else-13b"}
    data: dict[str, Any] = {"settings": {"models": args.models, "calls": args.calls}}
    data["baseline_resolve"] = per_call_us(lambda: resolve_model(snap, requests["not_loaded"]), args.calls)
    for category, name in requests.items():
        request = ValidateRequest(model=name, base_url=URL + "/v1")
        assert evaluate(snap, request, policy).category == category
        data[category] = per_call_us(lambda r=request: evaluate(snap, r, policy), args.calls)
    data["target"] = {"per_call_us_max": 500}
    if args.json:
        print(json.dumps(data))
    else:
        for key, value in data.items():
            print(f"{key:>18}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
