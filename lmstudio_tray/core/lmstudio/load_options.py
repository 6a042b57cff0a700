"""Options of a model load, and which of LM Studio's two load paths can apply each of them.

`lms load` has flags for the context length, GPU offload, TTL, parallel predictions and the instance
identifier. REST v1 `POST /api/v1/models/load` documents the context length and llama.cpp knobs (eval batch
size, flash attention, experts, KV cache on the GPU) and accepts an undocumented `ttl`; it has no GPU
offload, parallel or identifier field. An option a path cannot apply is refused before anything is sent,
rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Options with an `lms load` flag, and what REST v1 load accepts.
LMS_OPTIONS = ("context_length", "gpu", "ttl", "parallel", "identifier")
REST_OPTIONS = (
    "context_length", "ttl", "eval_batch_size", "flash_attention", "num_experts", "offload_kv_cache_to_gpu",
)


class UnsupportedLoadOptions(ValueError):
    """The options include some this load path cannot apply; `options` names them."""

    def __init__(self, path: str, options: tuple[str, ...], other: str) -> None:
        names = ", ".join(options)
        super().__init__(f"{path} cannot set {names}; {other} can, use that instead (or leave {names} out)")
        self.options = options


def parse_gpu(text: str) -> float:
    """`off`, `max` or a ratio between 0 and 1, as `lms load --gpu` takes it."""
    value = text.strip().lower()
    if value in ("off", "max"):
        return 0.0 if value == "off" else 1.0
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"GPU offload {text!r} is not off, max or a number between 0 and 1") from None
    if not 0 <= ratio <= 1:
        raise ValueError(f"GPU offload {text!r} is out of range: use off, max or a number between 0 and 1")
    return ratio


@dataclass(frozen=True)
class LoadOptions:
    """None everywhere means LM Studio's defaults (GPU offload: LM Studio decides; no TTL; 4 parallel slots)."""

    context_length: int | None = None
    gpu: float | None = None  # offload ratio: 0 = off, 1 = max
    ttl: int | None = None  # seconds idle before LM Studio unloads the instance
    parallel: int | None = None
    identifier: str | None = None
    eval_batch_size: int | None = None
    flash_attention: bool | None = None
    num_experts: int | None = None
    offload_kv_cache_to_gpu: bool | None = None

    def __post_init__(self) -> None:
        for name in ("context_length", "ttl", "parallel", "eval_batch_size", "num_experts"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"load option {name} must be a whole number of at least 1, not {value!r}")
        if self.gpu is not None and not 0 <= self.gpu <= 1:
            raise ValueError(f"load option gpu must be between 0 (off) and 1 (max), not {self.gpu!r}")
        if self.identifier is not None and not self.identifier.strip():
            raise ValueError("load option identifier must not be empty")

    def given(self) -> tuple[str, ...]:
        """The names of the options that are set."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def check_rest(self) -> None:
        """UnsupportedLoadOptions when an option is set that the REST load cannot apply."""
        unsupported = tuple(name for name in self.given() if name not in REST_OPTIONS)
        if unsupported:
            raise UnsupportedLoadOptions("LM Studio's REST load", unsupported, "`lms load`")

    def check_lms(self) -> None:
        """UnsupportedLoadOptions when an option is set that `lms load` cannot apply."""
        unsupported = tuple(name for name in self.given() if name not in LMS_OPTIONS)
        if unsupported:
            raise UnsupportedLoadOptions("`lms load`", unsupported, "LM Studio's REST load (0.4.0+)")

    def rest_body(self) -> dict[str, Any]:
        """The REST v1 load fields (checked with `check_rest` first)."""
        return {name: getattr(self, name) for name in REST_OPTIONS if getattr(self, name) is not None}

    def lms_args(self) -> list[str]:
        """The `lms load` flags (checked with `check_lms` first)."""
        args: list[str] = []
        if self.context_length is not None:
            args += ["--context-length", str(self.context_length)]
        if self.gpu is not None:
            args += ["--gpu", "off" if self.gpu == 0 else "max" if self.gpu == 1 else f"{self.gpu:g}"]
        if self.ttl is not None:
            args += ["--ttl", str(self.ttl)]
        if self.parallel is not None:
            args += ["--parallel", str(self.parallel)]
        if self.identifier is not None:
            args += ["--identifier", self.identifier]
        return args
