"""Downloaded-model catalog of the emulator: model specs and a realistic default set."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

ModelType = Literal["llm", "embedding"]
ModelFormat = Literal["gguf", "mlx"]

GUARDRAIL_MESSAGE = (
    "Model loading was stopped due to insufficient system resources. Under the current settings, this model "
    "requires approximately {gb:.2f} GB of memory, and continuing to load it would likely overload your "
    "system and cause it to freeze. If you believe this is a mistake, you can try to change the model loading "
    "guardrails in the settings."
)


@dataclass(frozen=True)
class ModelSpec:
    """One downloaded model, with enough metadata to render every LM Studio listing shape."""

    key: str
    display_name: str
    publisher: str
    type: ModelType = "llm"
    architecture: str | None = None
    format: ModelFormat = "gguf"
    quantization: str | None = "Q4_K_M"
    bits: int | None = 4
    size_bytes: int = 2_500_000_000
    params_string: str | None = None
    max_context_length: int = 32768
    vision: bool = False
    tool_use: bool = False
    reasoning: bool = False
    path: str | None = None
    variants: tuple[str, ...] = ()
    selected_variant: str | None = None
    description: str | None = None
    # Experts used per token by a mixture-of-experts model (REST v1 `num_experts`); None for dense models.
    experts: int | None = None
    # None = use the emulator-wide EmulatorSettings.load_seconds.
    load_seconds: float | None = None
    # A message here makes every load of this model fail, like a guardrail refusal or an engine crash.
    fail_load: str | None = None

    @property
    def model_path(self) -> str:
        return self.path or f"{self.publisher}/{self.key.split('/')[-1]}"

    @property
    def is_embedding(self) -> bool:
        return self.type == "embedding"

    @property
    def default_context_length(self) -> int:
        return min(self.max_context_length, 2048 if self.is_embedding else 4096)

    def guardrail_message(self, required_bytes: int | None = None) -> str:
        """LM Studio's refusal text; the figure is what the estimate says the load needs."""
        required = required_bytes if required_bytes is not None else self.size_bytes * 1.2
        return GUARDRAIL_MESSAGE.format(gb=required / 1e9)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["variants"] = list(self.variants)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelSpec fields: {sorted(unknown)}")
        values = dict(data)
        if "variants" in values:
            values["variants"] = tuple(values["variants"])
        return cls(**values)


def default_catalog() -> list[ModelSpec]:
    """A small library resembling a typical LM Studio install: catalog keys, variants, vision, MLX, embeddings."""
    return [
        ModelSpec(
            key="qwen/qwen3-4b-2507", display_name="Qwen3 4B Instruct 2507", publisher="qwen",
            architecture="qwen3", quantization="Q4_K_M", bits=4, size_bytes=2_497_280_256,
            params_string="4B", max_context_length=262144, tool_use=True,
            path="lmstudio-community/Qwen3-4B-Instruct-2507-GGUF/Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
        ),
        ModelSpec(
            key="google/gemma-3-12b", display_name="Gemma 3 12B", publisher="google", architecture="gemma3",
            quantization="Q4_K_M", bits=4, size_bytes=8_149_190_784, params_string="12B",
            max_context_length=131072, vision=True,
            path="lmstudio-community/gemma-3-12b-it-GGUF/gemma-3-12b-it-Q4_K_M.gguf",
            variants=("google/gemma-3-12b@q4_k_m", "google/gemma-3-12b@q8_0"),
            selected_variant="google/gemma-3-12b@q4_k_m",
        ),
        ModelSpec(
            key="qwen/qwen2.5-vl-7b", display_name="Qwen2.5 VL 7B Instruct", publisher="qwen",
            architecture="qwen2vl", quantization="Q4_K_M", bits=4, size_bytes=6_010_000_000,
            params_string="7B", max_context_length=128000, vision=True, tool_use=True,
            path="lmstudio-community/Qwen2.5-VL-7B-Instruct-GGUF/Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf",
        ),
        ModelSpec(
            key="llama-3.2-3b-instruct", display_name="Llama 3.2 3B Instruct", publisher="mlx-community",
            architecture="llama", format="mlx", quantization="4bit", bits=4, size_bytes=1_807_436_938,
            params_string="3B", max_context_length=131072, tool_use=True,
            path="mlx-community/Llama-3.2-3B-Instruct-4bit",
        ),
        ModelSpec(
            key="openai/gpt-oss-20b", display_name="gpt-oss 20B", publisher="openai", architecture="gpt-oss",
            quantization="MXFP4", bits=4, size_bytes=12_109_566_560, params_string="20B",
            max_context_length=131072, tool_use=True, reasoning=True, experts=4,
            path="lmstudio-community/gpt-oss-20b-GGUF/gpt-oss-20b-MXFP4.gguf",
        ),
        ModelSpec(
            key="mistralai/devstral-small-2507", display_name="Devstral Small 2507", publisher="mistralai",
            architecture="mistral", quantization="Q4_K_M", bits=4, size_bytes=14_334_000_000,
            params_string="24B", max_context_length=131072, tool_use=True,
            path="lmstudio-community/Devstral-Small-2507-GGUF/Devstral-Small-2507-Q4_K_M.gguf",
        ),
        ModelSpec(
            key="text-embedding-nomic-embed-text-v1.5", display_name="Nomic Embed Text v1.5",
            publisher="nomic-ai", type="embedding", architecture="nomic-bert", quantization="Q4_K_M", bits=4,
            size_bytes=84_106_624, params_string=None, max_context_length=2048,
            path="nomic-ai/nomic-embed-text-v1.5-GGUF/nomic-embed-text-v1.5.Q4_K_M.gguf",
        ),
    ]


def default_download_catalog() -> list[ModelSpec]:
    """Models the emulated LM Studio catalog offers but that are not downloaded yet (the first is the one the
    REST download docs use as their example, with its size)."""
    return [
        ModelSpec(
            key="ibm/granite-4-micro", display_name="Granite 4.0 Micro", publisher="ibm", architecture="granite",
            quantization="Q4_K_M", bits=4, size_bytes=2_279_145_003, params_string="3B",
            max_context_length=131072, tool_use=True,
            path="lmstudio-community/granite-4.0-micro-GGUF/granite-4.0-micro-Q4_K_M.gguf",
        ),
        ModelSpec(
            key="qwen/qwen3-8b", display_name="Qwen3 8B", publisher="qwen", architecture="qwen3",
            quantization="Q4_K_M", bits=4, size_bytes=5_027_783_488, params_string="8B",
            max_context_length=131072, tool_use=True, reasoning=True,
            path="lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf",
        ),
        ModelSpec(
            key="text-embedding-bge-small-en-v1.5", display_name="BGE Small EN v1.5", publisher="CompendiumLabs",
            type="embedding", architecture="bert", quantization="Q8_0", bits=8, size_bytes=36_755_072,
            max_context_length=512,
            path="CompendiumLabs/bge-small-en-v1.5-gguf/bge-small-en-v1.5-q8_0.gguf",
        ),
    ]


def load_catalog(path: Path) -> list[ModelSpec]:
    """Read a catalog file: a JSON list of ModelSpec field objects."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of models")
    return [ModelSpec.from_json(item) for item in data]


@dataclass
class Catalog:
    """Lookup helpers over the downloaded models, including `key@variant` references."""

    models: list[ModelSpec] = field(default_factory=list)

    def find(self, reference: str) -> ModelSpec | None:
        for spec in list(self.models):
            if spec.key == reference or reference in spec.variants:
                return spec
        return None

    def model_keys(self) -> list[str]:
        return [spec.key for spec in self.models]

    def add(self, spec: ModelSpec) -> None:
        """A finished download: a new list, so threads iterating the old one are not disturbed."""
        if self.find(spec.key) is None:
            self.models = [*self.models, spec]
