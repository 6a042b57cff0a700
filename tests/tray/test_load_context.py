"""The context choice under "Load model": a real core watches an emulated LM Studio server, the menu is built
from its snapshot and a click goes through the presenter to the core's Actions.load."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest

from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.core.runtime import Core, CoreThread
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.tray.menu import ActionKind, MenuAction, MenuItem, MenuPrefs, find
from lmstudio_tray.tray.presenter import TrayPresenter

QWEN = "qwen/qwen3-4b-2507"  # the emulator's catalog: at most 262,144 tokens
GEMMA = "google/gemma-3-12b"  # at most 131,072


class Tray:
    def __init__(self, path: Path) -> None:
        self.core = Core(load_config(path), config_path=path, lms_path=None)
        self.thread = CoreThread(self.core)
        self.thread.start()
        self.view = mock.Mock()
        self.reporter = mock.Mock()
        self.presenter = TrayPresenter(self.view, status=self.core.status, actions=self.core.actions,
                                       submit=self.thread.submit, reporter=self.reporter, prefs=MenuPrefs())

    def menu(self) -> tuple[MenuItem, ...]:
        self.presenter.refresh()
        items: tuple[MenuItem, ...] = self.view.set_menu.call_args[0][0]
        return items

    def model_item(self, key: str) -> MenuItem:
        load = find(self.menu(), "Load model")
        groups = [g for g in load.children if g.action is None and g.children and g.label.endswith("models")]
        leaves = [m for g in groups for m in g.children] or list(load.children)
        return next(m for m in leaves for c in m.children if c.action and c.action.target == key)

    def wait(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "condition never became true"
            time.sleep(0.05)


@pytest.fixture
def tray_and_emulator(tmp_path: Path, emulator_factory: Callable[..., Emulator]) -> Iterator[tuple[Tray, Emulator]]:
    emu = emulator_factory()
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(f"""\
        [[instances]]
        name = "desk"
        url = "{emu.api_url}"
        """))
    tray = Tray(path)
    tray.wait(lambda: tray.core.status().instances[0].state is InstanceState.IDLE)
    yield tray, emu
    tray.thread.stop()


def test_each_model_offers_the_default_the_sizes_under_its_maximum_and_the_maximum(
        tray_and_emulator: tuple[Tray, Emulator]) -> None:
    tray, _ = tray_and_emulator
    gemma = tray.model_item(GEMMA)
    assert gemma.is_submenu and gemma.enabled and gemma.checked is False
    assert [(c.label, c.action.context_length if c.action else "none") for c in gemma.children] == [
        ("LM Studio's default", None), ("4k", 4096), ("8k", 8192), ("16k", 16384), ("32k", 32768),
        ("64k", 65536), ("Maximum (131,072)", 131072),
    ]
    assert {c.action.kind for c in gemma.children if c.action} == {ActionKind.LOAD}
    assert [c.label for c in tray.model_item(QWEN).children][-2:] == ["128k", "Maximum (262,144)"]


def test_choosing_16k_loads_the_model_with_that_context(tray_and_emulator: tuple[Tray, Emulator]) -> None:
    tray, emu = tray_and_emulator
    choice = find(tray.model_item(GEMMA).children, "16k")
    assert choice.action == MenuAction(ActionKind.LOAD, "desk", GEMMA, 16384)
    tray.presenter.on_click(choice.action)

    def loaded_context() -> int | None:
        model = tray.core.status().instances[0].model(GEMMA)
        return model.loaded_context_length if model else None

    tray.wait(lambda: loaded_context() == 16384)
    assert [(i["modelKey"], i["contextLength"]) for i in emu.loaded()] == [(GEMMA, 16384)]
    tray.wait(lambda: not tray.presenter.pending)
    tray.reporter.report.assert_not_called()
    assert tray.model_item(GEMMA).checked is True  # still ticked once loaded


def test_the_default_entry_loads_with_lm_studios_default_context(tray_and_emulator: tuple[Tray, Emulator]) -> None:
    tray, emu = tray_and_emulator
    default = tray.model_item(GEMMA).children[0]
    assert default.action is not None
    tray.presenter.on_click(default.action)
    tray.wait(lambda: bool(emu.loaded()))
    assert emu.loaded()[0]["contextLength"] == 4096  # the emulator's default for a chat model
