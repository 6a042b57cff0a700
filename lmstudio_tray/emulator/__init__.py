"""A faithful, dependency-free LM Studio emulator: HTTP APIs, JIT/TTL behaviour, faults and a fake `lms`."""

from __future__ import annotations

from lmstudio_tray.emulator.catalog import ModelSpec, default_catalog, load_catalog
from lmstudio_tray.emulator.emulator import Emulator
from lmstudio_tray.emulator.faults import Fault
from lmstudio_tray.emulator.records import RecordedRequest
from lmstudio_tray.emulator.settings import EmulatorSettings

__all__ = [
    "Emulator",
    "EmulatorSettings",
    "Fault",
    "ModelSpec",
    "RecordedRequest",
    "default_catalog",
    "load_catalog",
]
