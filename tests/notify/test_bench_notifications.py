"""Bench notifications: the policy's words and switch, and the bubble a real daemon (dunst on the test desktop)
shows when `lmstudio-tray bench` finishes in a terminal, read by a core that runs the way the tray's does.

    scripts/with-desktop.sh .venv/bin/pytest tests/notify/test_bench_notifications.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmstudio_tray.core.clock import FakeClock
from lmstudio_tray.core.config.schema import Config, InstanceConfig, NotificationsConfig
from lmstudio_tray.core.events import BenchFailed, BenchFinished
from lmstudio_tray.core.runtime import Core
from lmstudio_tray.notify.freedesktop import FreedesktopBackend
from lmstudio_tray.notify.policy import NotificationPolicy
from lmstudio_tray.notify.service import attach_notifications
from tests.core.test_cli import write_config
from tests.desktop.xtools import dunst_history
from tests.emulator_fixtures import EmulatorFactory
from tests.notify.test_freedesktop import NotifyMonitor, backend, desktop, monitor  # noqa: F401 - fixtures

SMALL, LARGE = "qwen/qwen3-4b-2507", "google/gemma-3-12b"


def test_a_finished_bench_in_words() -> None:
    policy = NotificationPolicy(NotificationsConfig(), FakeClock())
    done = policy.decide(BenchFinished("local", fastest=SMALL, tokens_per_s=61.25, models=2, seconds=40, pid=7))
    assert done is not None and done.title == "Benchmark done" and done.category == "bench"
    assert done.body == f"Fastest of 2 models on local: {SMALL}, 61.2 tok/s. The figures are in `lmstudio-tray stats`."
    again = policy.decide(BenchFinished("local", fastest=SMALL, tokens_per_s=60.0, models=2, seconds=41, pid=7))
    assert again is not None  # another bench of the same process is news of its own
    failed = policy.decide(BenchFailed("local", reason="LM Studio stopped answering.", pid=8))
    assert failed is not None and failed.title == "Benchmark stopped"
    assert failed.body == "On local: LM Studio stopped answering. What was loaded is put back."
    assert policy.decide(BenchFailed("local", reason="stopped", cancelled=True, pid=9)) is None  # Ctrl-C


def test_the_bench_switch_and_quiet_mode() -> None:
    done = BenchFinished("local", fastest=SMALL, tokens_per_s=61.0, models=1, seconds=4, pid=7)
    assert NotificationPolicy(NotificationsConfig(categories={"bench": False}), FakeClock()).decide(done) is None
    assert NotificationPolicy(NotificationsConfig(quiet=True), FakeClock()).decide(done) is None
    assert NotificationPolicy(NotificationsConfig(), FakeClock()).decide(done) is not None


@pytest.mark.desktop
async def test_dunst_shows_the_end_of_a_bench_run_in_a_terminal(
    emulator_factory: EmulatorFactory, backend: FreedesktopBackend, monitor: NotifyMonitor,  # noqa: F811
    tmp_path: Path,
) -> None:
    emu = emulator_factory(speed_scale=0.02)
    core = Core(Config(instances=[InstanceConfig(name="local", url=emu.api_url)]), lms_path=None)
    core.add_service(core.benches.start, core.benches.stop)  # as the composition root does for the tray
    detach = attach_notifications(core, backend)
    await core.start()
    try:
        cli = [sys.executable, "-m", "lmstudio_tray", "--config", str(write_config(tmp_path, emu.api_url)), "bench",
               LARGE, SMALL, "--runs", "2", "--db", str(tmp_path / "a.sqlite3")]
        done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=300,
                                       env=dict(os.environ))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while not any(c[3] == "Benchmark done" for c in monitor.calls):
            assert time.monotonic() < deadline, "no bench notification"
            await asyncio.sleep(0.05)
        assert backend.flush()
    finally:
        detach()
        await core.stop()
    shown = {n.get("summary"): n for n in dunst_history()}
    body = shown["Benchmark done"]["body"]
    assert body.startswith(f"Fastest of 2 models on local: {SMALL}, ") and " tok/s." in body
