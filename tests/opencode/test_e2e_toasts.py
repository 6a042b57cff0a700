"""End to end: the plugin's toasts in the real OpenCode TUI (in a private tmux), as `[opencode.toasts]` sets them:
one "connected" toast per session when the plugin first reaches the tray, and none when that category is off."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.opencode.test_e2e import Env, _e2e
from tests.opencode.test_e2e_ensure import Tmux, tmux, wait_for
from tests.opencode.test_e2e_tools import _proxied

pytestmark = [pytest.mark.opencode, pytest.mark.timeout(600)]
__all__ = ["tmux"]  # the fixture, used by the tests below
# a generous hook budget: on a busy machine a validate that times out lets the request through unchecked, and
# the plugin then has not reached the tray
CONFIG = "[validation]\nhook_timeout_ms = 10000\n"


def _screens_until_answered(env: Env, term: Tmux, toast: str | None = None) -> list[str]:
    """Type a prompt like a person; every screen seen until the answer shows (its footer: the step finished) and,
    given `toast`, a screen with that text (a toast nothing waits for can come after the answer)."""
    term("new-session", "-d", "-s", "oc", "-x", "160", "-y", "48", "-c", str(env.project), str(env.opencode))
    wait_for(lambda: "Ask anything" in term.screen(), "the TUI's prompt")
    term("send-keys", "-t", "oc", "-l", "say hi")
    wait_for(lambda: "say hi" in term.screen(), "the typed prompt")
    term("send-keys", "-t", "oc", "Enter")
    screens: list[str] = []

    def answered() -> bool:
        screens.append(term.screen())
        done = any("Hello from the LM Studio emulator" in s and re.search(r"Build · Qwen · \d", s) for s in screens)
        return done and (toast is None or any(toast in s for s in screens))

    wait_for(answered, "the answer")
    return screens


@contextlib.contextmanager
def _env(opencode_bin: Path, tmp_path: Path, emulator_factory: Any, tray_config: str = "") -> Iterator[Env]:
    yield from _e2e(opencode_bin, tmp_path, emulator_factory(), tray_config=CONFIG + tray_config)


def test_the_plugin_says_once_that_it_reached_the_tray(opencode_bin: Path, tmp_path: Path, emulator_factory: Any,
                                                       tmux: Callable[[dict[str, str]], Tmux]) -> None:
    with _env(opencode_bin, tmp_path, emulator_factory) as env:
        screens = _screens_until_answered(env, tmux(env.env), "lmstudio-tray connected")
    # the toast: its title, then (the TUI wraps it in its box) the message
    seen = [s for s in screens if "lmstudio-tray connected" in s]
    assert seen, screens[-1]
    assert any("1 instance;" in s and "qwen/qwen3-4b-2507" in s for s in seen), seen[-1]


def test_the_connected_toast_counts_the_instances_when_the_tray_answers_its_settings_slowly(
        opencode_bin: Path, tmp_path: Path, emulator_factory: Any, tmux: Callable[[dict[str, str]], Tmux]) -> None:
    # 2 s: far more than a hook waits for the settings (0.5 s), as the first fetch can take on a busy machine (0.7 s
    # was not enough: OpenCode's start can hold the plugin's event loop that long, and the answer then beat the
    # timeout); the toast, which nothing waits for, fetches them again within its 5 s
    with _env(opencode_bin, tmp_path, emulator_factory) as env, _proxied(env, {"/v1/plugin": 2.0}) as (slow, proxy):
        screens = _screens_until_answered(slow, tmux(slow.env), "lmstudio-tray connected")
    assert len(proxy.bodies("/v1/plugin")) >= 2  # the hooks' tries timed out, the toast's did not
    seen = [s for s in screens if "lmstudio-tray connected" in s]
    assert seen, screens[-1]
    assert any("1 instance;" in s and "qwen/qwen3-4b-2507" in s for s in seen), seen[-1]


def test_the_connected_toast_can_be_turned_off(opencode_bin: Path, tmp_path: Path, emulator_factory: Any,
                                               tmux: Callable[[dict[str, str]], Tmux]) -> None:
    config = "\n[opencode.toasts]\ncategories = { connected = false }\n"
    with _env(opencode_bin, tmp_path, emulator_factory, config) as env:
        screens = _screens_until_answered(env, tmux(env.env))
    assert not any("lmstudio-tray connected" in s for s in screens)
