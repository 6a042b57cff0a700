"""Per-model speeds: how fast an emulated model reads a prompt, writes tokens and loads, derived from its size
and quantisation, so a benchmark run against the emulator has a known right answer (smaller is faster).

Off unless `EmulatorSettings.speed_scale` is set: the existing tests rely on the fixed `load_seconds` and
`token_delay`. With a scale, every wait below is multiplied by it (0.01 runs a bench a hundred times faster
than the figures say, and keeps the ranking).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmstudio_tray.emulator.state.catalog import ModelSpec

# Generating a token reads every weight once, so it is bound by memory bandwidth: tokens/s = bandwidth / size.
BANDWIDTH_BYTES_PER_S = 100e9
# Loading reads the file from disk.
DISK_BYTES_PER_S = 2e9
# Prompt processing is batched: this many times the generation speed for a 4-bit model ...
PROMPT_BATCH_GAIN = 20.0
# ... less for wider weights, which cost more compute per token. Unknown widths count as 4 bits.
COMPUTE_BY_BITS = {2: 1.1, 3: 1.05, 4: 1.0, 5: 0.9, 6: 0.85, 8: 0.8, 16: 0.6, 32: 0.4}
# Time to first token besides the prompt: scheduling, sampling the first token.
FIRST_TOKEN_BASE_S = 0.05


@dataclass(frozen=True)
class ModelSpeed:
    prompt_tokens_per_s: float
    generated_tokens_per_s: float
    load_seconds: float

    def first_token_seconds(self, prompt_tokens: int) -> float:
        return FIRST_TOKEN_BASE_S + prompt_tokens / self.prompt_tokens_per_s


def speed_of(spec: ModelSpec) -> ModelSpeed:
    """The same figures for the same spec, every time."""
    size = max(1, spec.size_bytes)
    generated = BANDWIDTH_BYTES_PER_S / size
    compute = COMPUTE_BY_BITS.get(spec.bits or 4, 1.0)
    return ModelSpeed(
        prompt_tokens_per_s=generated * PROMPT_BATCH_GAIN * compute,
        generated_tokens_per_s=generated,
        load_seconds=size / DISK_BYTES_PER_S,
    )
