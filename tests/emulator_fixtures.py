"""Pytest plugin: LM Studio emulator fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.emulator import Emulator, EmulatorSettings

EmulatorFactory = Callable[..., Emulator]


@pytest.fixture
def emulator_factory() -> Iterator[EmulatorFactory]:
    """Build and start emulators from EmulatorSettings keyword arguments; all are closed at teardown."""
    created: list[Emulator] = []

    def make(**settings: Any) -> Emulator:
        settings.setdefault("load_seconds", 0.05)
        emu = Emulator(EmulatorSettings(**settings))
        created.append(emu)
        return emu.start()

    yield make
    for emu in created:
        emu.close()


@pytest.fixture
def emulator(emulator_factory: EmulatorFactory) -> Emulator:
    """A started emulator with default settings (LM Studio 0.4.8, JIT on, no auth) and short loads."""
    return emulator_factory()


@dataclass
class LmsHome:
    """A temporary user HOME containing an LM Studio home (`~/.lmstudio`) bound to a running emulator."""

    home: Path
    lmstudio_home: Path
    lms: Path
    emulator: Emulator


@pytest.fixture
def lms_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator_factory: EmulatorFactory
) -> LmsHome:
    home = tmp_path / "home"
    home.mkdir()
    lmstudio_home = home / ".lmstudio"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.delenv("LMS_EMULATOR_CONTROL_URL", raising=False)
    monkeypatch.delenv("LMSTUDIO_HOME", raising=False)
    emu = emulator_factory(home=lmstudio_home)
    return LmsHome(home=home, lmstudio_home=lmstudio_home, lms=lmstudio_home / "bin" / "lms", emulator=emu)
