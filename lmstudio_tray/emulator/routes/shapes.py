"""JSON shapes of models and instances in each LM Studio surface (OpenAI, REST v0, REST v1, lms/SDK)."""

from __future__ import annotations

from typing import Any

from lmstudio_tray.emulator.state.catalog import ModelSpec
from lmstudio_tray.emulator.state.engine import Instance
from lmstudio_tray.emulator.state.versioning import VersionProfile


def openai_model(identifier: str) -> dict[str, Any]:
    return {"id": identifier, "object": "model", "owned_by": "organization_owner"}


def v0_type(spec: ModelSpec) -> str:
    if spec.is_embedding:
        return "embeddings"
    return "vlm" if spec.vision else "llm"


def v0_model(spec: ModelSpec, instance: Instance | None, profile: VersionProfile) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": spec.key,
        "object": "model",
        "type": v0_type(spec),
        "publisher": spec.publisher,
        "arch": spec.architecture,
        "compatibility_type": spec.format,
        "quantization": spec.quantization,
        "state": "loaded" if instance is not None else "not-loaded",
        "max_context_length": spec.max_context_length,
    }
    if instance is not None:
        record["loaded_context_length"] = instance.context_length
    if profile.has_v0_capabilities and spec.tool_use:
        record["capabilities"] = ["tool_use"]
    return record


def v1_quantization(spec: ModelSpec) -> dict[str, Any] | None:
    if spec.quantization is None:
        return None
    return {"name": spec.quantization, "bits_per_weight": spec.bits}


def v1_instance(instance: Instance) -> dict[str, Any]:
    """`loaded_instances[]`: the llama.cpp knobs only where they applied (GGUF LLMs; an MLX model shows
    only `context_length` and `parallel`, as observed live)."""
    options = instance.options
    config: dict[str, Any] = {"context_length": instance.context_length}
    if not instance.spec.is_embedding:
        values = {
            "eval_batch_size": options.eval_batch_size, "parallel": instance.parallel,
            "flash_attention": options.flash_attention, "num_experts": options.num_experts,
            "offload_kv_cache_to_gpu": options.offload_kv_cache_to_gpu,
        }
        config.update((name, value) for name, value in values.items() if value is not None)
    return {"id": instance.identifier, "config": config}


def v1_model(spec: ModelSpec, instances: list[Instance]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "embedding" if spec.is_embedding else "llm",
        "publisher": spec.publisher,
        "key": spec.key,
        "display_name": spec.display_name,
    }
    if not spec.is_embedding:
        record["architecture"] = spec.architecture
    record.update(
        quantization=v1_quantization(spec),
        size_bytes=spec.size_bytes,
        params_string=spec.params_string,
        loaded_instances=[v1_instance(i) for i in instances],
        max_context_length=spec.max_context_length,
        format=spec.format,
    )
    if not spec.is_embedding:
        capabilities: dict[str, Any] = {"vision": spec.vision, "trained_for_tool_use": spec.tool_use}
        if spec.reasoning:
            capabilities["reasoning"] = {"allowed_options": ["low", "medium", "high"], "default": "medium"}
        record["capabilities"] = capabilities
        record["description"] = spec.description
    if spec.variants:
        record["variants"] = list(spec.variants)
        record["selected_variant"] = spec.selected_variant
    return record


def v1_load_config(instance: Instance) -> dict[str, Any]:
    """`load_config` of a REST load: only what applied to the load (so no `parallel`, which the REST load
    docs do not list)."""
    config: dict[str, Any] = v1_instance(instance)["config"]
    config.pop("parallel", None)
    return config


def sdk_format(spec: ModelSpec) -> str:
    # The SDK/CLI enum has no "mlx": MLX models are reported as safetensors (and the SDK rejects "mlx").
    return "safetensors" if spec.format == "mlx" else spec.format


def lms_model_info(spec: ModelSpec) -> dict[str, Any]:
    """`lms ls --json` record (SDK ModelInfo)."""
    record: dict[str, Any] = {
        "type": spec.type,
        "modelKey": spec.key,
        "format": sdk_format(spec),
        "displayName": spec.display_name,
        "publisher": spec.publisher,
        "path": spec.model_path,
        "sizeBytes": spec.size_bytes,
        "indexedModelIdentifier": spec.model_path,
        "deviceIdentifier": None,
    }
    if spec.params_string is not None:
        record["paramsString"] = spec.params_string
    if spec.architecture is not None:
        record["architecture"] = spec.architecture
    if spec.quantization is not None:
        record["quantization"] = {"name": spec.quantization, "bits": spec.bits}
    if spec.variants:
        record["variants"] = list(spec.variants)
        record["selectedVariant"] = spec.selected_variant
    if not spec.is_embedding:
        record["vision"] = spec.vision
        record["trainedForToolUse"] = spec.tool_use
    record["maxContextLength"] = spec.max_context_length
    return record


def lms_instance_info(instance: Instance) -> dict[str, Any]:
    """`lms ps --json` record (SDK ModelInstanceInfo minus instanceReference, plus status/queued/parallel)."""
    record = lms_model_info(instance.spec)
    record.pop("variants", None)
    record.pop("selectedVariant", None)
    record["identifier"] = instance.identifier
    record["ttlMs"] = None if instance.ttl is None else int(instance.ttl * 1000)
    record["lastUsedTime"] = int(instance.last_used * 1000)
    max_ctx = record.pop("maxContextLength")
    if not instance.spec.is_embedding:
        record["vision"] = record.pop("vision")
        record["trainedForToolUse"] = record.pop("trainedForToolUse")
    record["maxContextLength"] = max_ctx
    record["contextLength"] = instance.context_length
    busy = "computingEmbedding" if instance.spec.is_embedding else "generating"
    record["status"] = busy if instance.active else "idle"
    record["queued"] = instance.active
    record["parallel"] = instance.parallel
    return record
