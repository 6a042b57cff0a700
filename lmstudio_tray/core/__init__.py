"""The GUI-free core: LM Studio client, instance monitor and status cache, actions, config, secrets.

Nothing in this package imports a GUI toolkit or a web framework. A folder says what its modules are
about: `lmstudio/` talks to LM Studio, `control/` watches and acts on instances, `config/` is the config
and its layers, `hooks/` the OpenCode hook logic, `support/` what every part uses. `runtime`, `events`,
`models` and `clock` are the core's own spine. The names below are loaded on first use, so importing one
small module (`core.support.paths`) does not pull in httpx and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmstudio_tray.core.clock import Clock, FakeClock, SystemClock
    from lmstudio_tray.core.config.loader import load_config
    from lmstudio_tray.core.config.schema import Config, InstanceConfig
    from lmstudio_tray.core.control.actions import Actions, LoadResult
    from lmstudio_tray.core.control.monitor import Monitor
    from lmstudio_tray.core.errors import ActionError, ActionErrorKind, ConfigError, LMStudioError
    from lmstudio_tray.core.events import Event, EventBus
    from lmstudio_tray.core.lmstudio.client import LMStudioClient
    from lmstudio_tray.core.models import (
        ApiFlavor,
        FailureKind,
        InstanceSnapshot,
        InstanceState,
        LoadedInstance,
        LoadProgress,
        ModelInfo,
        ModelType,
        StatusReport,
    )
    from lmstudio_tray.core.runtime import Core, CoreThread

_HOME = {
    "control.actions": ("Actions", "LoadResult"),
    "errors": ("ActionError", "ActionErrorKind", "ConfigError", "LMStudioError"),
    "lmstudio.client": ("LMStudioClient",),
    "clock": ("Clock", "FakeClock", "SystemClock"),
    "config.schema": ("Config", "InstanceConfig"),
    "config.loader": ("load_config",),
    "events": ("Event", "EventBus"),
    "models": ("ApiFlavor", "FailureKind", "InstanceSnapshot", "InstanceState", "LoadedInstance", "LoadProgress",
               "ModelInfo", "ModelType", "StatusReport"),
    "control.monitor": ("Monitor",),
    "runtime": ("Core", "CoreThread"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "ActionError",
    "ActionErrorKind",
    "Actions",
    "ApiFlavor",
    "Clock",
    "Config",
    "ConfigError",
    "Core",
    "CoreThread",
    "Event",
    "EventBus",
    "FailureKind",
    "FakeClock",
    "InstanceConfig",
    "InstanceSnapshot",
    "InstanceState",
    "LMStudioClient",
    "LMStudioError",
    "LoadProgress",
    "LoadResult",
    "LoadedInstance",
    "ModelInfo",
    "ModelType",
    "Monitor",
    "StatusReport",
    "SystemClock",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
