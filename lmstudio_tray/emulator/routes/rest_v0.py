"""REST v0 (`/api/v0/*`, LM Studio 0.3.6+): model listings with load state."""

from __future__ import annotations

from typing import Any

from lmstudio_tray.emulator.routes import shapes
from lmstudio_tray.emulator.routes.httpserver import Request, Response, json_response
from lmstudio_tray.emulator.state import errors
from lmstudio_tray.emulator.state.catalog import ModelSpec
from lmstudio_tray.emulator.state.engine import Instance
from lmstudio_tray.emulator.state.shared import EmulatorState

MODEL_PREFIX = "/api/v0/models/"


def _listed(state: EmulatorState) -> list[tuple[ModelSpec, Instance | None]]:
    """One entry per model key; JIT off lists only loaded models (issues #726, #816)."""
    state.engine.expire()
    loaded = state.engine.loaded()
    entries: list[tuple[ModelSpec, Instance | None]] = []
    for spec in state.catalog.models:
        first = next((i for i in loaded if i.spec.key == spec.key), None)
        if first is not None or state.jit_active:
            entries.append((spec, first))
    return entries


def models(state: EmulatorState, request: Request) -> Response:
    profile = state.settings.profile
    data = [shapes.v0_model(spec, inst, profile) for spec, inst in _listed(state)]
    return json_response({"data": data, "object": "list"})


def model(state: EmulatorState, request: Request) -> Response:
    # Ids contain a slash ("qwen/qwen3-4b-2507"), so everything after the prefix is the id.
    name = request.path[len(MODEL_PREFIX):]
    profile = state.settings.profile
    for spec, inst in _listed(state):
        if name in (spec.key, *spec.variants) or (inst is not None and inst.identifier == name):
            return json_response(shapes.v0_model(spec, inst, profile))
    body: dict[str, Any] = errors.openai_error(f'Model "{name}" not found.', code="model_not_found")
    return json_response(body, status=404)
