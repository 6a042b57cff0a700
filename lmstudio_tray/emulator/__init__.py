"""A faithful, dependency-free LM Studio emulator: HTTP APIs, JIT/TTL behaviour, faults and a fake `lms`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmstudio_tray.emulator.emulator import Emulator
    from lmstudio_tray.emulator.state.catalog import ModelSpec, default_catalog, load_catalog
    from lmstudio_tray.emulator.state.faults import Fault
    from lmstudio_tray.emulator.state.records import RecordedRequest
    from lmstudio_tray.emulator.state.settings import EmulatorSettings

# Imported lazily so the fake `lms` (a short-lived process per call) does not pay for the HTTP server modules.
_EXPORTS = {
    "Emulator": "lmstudio_tray.emulator.emulator",
    "EmulatorSettings": "lmstudio_tray.emulator.state.settings",
    "Fault": "lmstudio_tray.emulator.state.faults",
    "ModelSpec": "lmstudio_tray.emulator.state.catalog",
    "RecordedRequest": "lmstudio_tray.emulator.state.records",
    "default_catalog": "lmstudio_tray.emulator.state.catalog",
    "load_catalog": "lmstudio_tray.emulator.state.catalog",
}

__all__ = [
    "Emulator",
    "EmulatorSettings",
    "Fault",
    "ModelSpec",
    "RecordedRequest",
    "default_catalog",
    "load_catalog",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
