"""The GUI-free core: LM Studio client, instance monitor and status cache, actions, config, secrets.

Nothing in this package imports a GUI toolkit or a web framework.
"""

from lmstudio_tray.core.actions import ActionError, Actions, LoadResult
from lmstudio_tray.core.client import LMStudioClient, LMStudioError
from lmstudio_tray.core.clock import Clock, FakeClock, SystemClock
from lmstudio_tray.core.config import Config, ConfigError, InstanceConfig, load_config
from lmstudio_tray.core.events import Event, EventBus
from lmstudio_tray.core.models import (
    ApiFlavor,
    FailureKind,
    InstanceSnapshot,
    InstanceState,
    LoadedInstance,
    LoadProgress,
    ModelInfo,
    StatusReport,
)
from lmstudio_tray.core.monitor import Monitor
from lmstudio_tray.core.runtime import Core, CoreThread

__all__ = [
    "ActionError",
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
    "Monitor",
    "StatusReport",
    "SystemClock",
    "load_config",
]
