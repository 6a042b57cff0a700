"""Small builders shared by the core tests."""

from __future__ import annotations

from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.schema import Config, InstanceConfig, MonitorConfig
from lmstudio_tray.core.events import Event
from lmstudio_tray.core.runtime import Core


def config_for(*urls: str, **monitor: float) -> Config:
    instances = [InstanceConfig(name=f"i{n}" if n else "local", url=url) for n, url in enumerate(urls)]
    return Config(instances=instances, monitor=MonitorConfig(**monitor))  # type: ignore[arg-type]


def make_core(*urls: str, clock: FakeClock | None = None, lms: object = None, **monitor: float) -> Core:
    return Core(config_for(*urls, **monitor), clock=clock, lms_path=lms)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]
