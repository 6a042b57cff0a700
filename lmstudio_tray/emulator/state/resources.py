"""Memory estimates and the resource guardrails: what `lms load --estimate-only` reports, and why a load that
does not fit is refused.

LM Studio's estimator is not public; this one is a simple, documented formula with the inputs the real one
names (weights, context length, vision, GPU offload), so tests can make a model fit or not on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lmstudio_tray.emulator.state.catalog import ModelSpec

Confidence = Literal["high", "low"]
# KV cache per token of context, as a fraction of the weights: 1/100000 of the file per token.
KV_BYTES_DIVISOR = 100_000
# A vision model also loads its projector.
VISION_OVERHEAD = 0.10


@dataclass(frozen=True)
class Estimate:
    model: str
    context_length: int
    gpu: float | None  # the offload ratio asked for; None = LM Studio decides (full offload here)
    gpu_bytes: int
    total_bytes: int
    confidence: Confidence
    passes_guardrails: bool

    def to_json(self) -> dict[str, Any]:
        """The SDK's `EstimatedResourcesUsage` shape."""
        return {
            "memory": {"totalVramBytes": self.gpu_bytes, "totalBytes": self.total_bytes, "confidence": self.confidence},
            "passesGuardrails": self.passes_guardrails,
        }


def estimate(spec: ModelSpec, *, context_length: int | None, gpu: float | None, memory_bytes: int) -> Estimate:
    ctx = context_length or spec.default_context_length
    weights = spec.size_bytes + (round(spec.size_bytes * VISION_OVERHEAD) if spec.vision else 0)
    kv_cache = ctx * max(1, spec.size_bytes // KV_BYTES_DIVISOR)
    total = weights + kv_cache
    ratio = 1.0 if gpu is None else gpu
    gpu_bytes = round(weights * ratio) + (kv_cache if ratio > 0 else 0)
    # A split between GPU and CPU is the case the estimate is least sure of.
    confidence: Confidence = "low" if 0 < ratio < 1 else "high"
    return Estimate(spec.key, ctx, gpu, gpu_bytes, total, confidence, total <= memory_bytes)
