"""A bench in progress in the tray menu: the line's words, a bench the tray's own core runs, and one that
`lmstudio-tray bench` runs in a terminal (another process), drawn by the presenter on the tray's own thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lmstudio_tray.core.control.bench import Bench
from lmstudio_tray.core.models import BenchPhase, BenchState
from lmstudio_tray.emulator import Emulator
from lmstudio_tray.tray.menu import bench_text, build_menu, flatten
from tests.core.test_cli import write_config
from tests.emulator_fixtures import EmulatorFactory

from .factories import ready, report
from .redraw import wait_for
from .test_download_lines import LiveTray

SMALL = "qwen/qwen3-4b-2507"


def test_the_line_of_a_bench() -> None:
    b = BenchState("local", SMALL, 2, 6, BenchPhase.RUN, 4242)
    assert bench_text(b) == f"Benchmarking {SMALL}… 2/6"
    loading = replace(b, step=1, phase=BenchPhase.LOADING)
    assert bench_text(loading, instance=True) == f"Benchmarking {SMALL} on local… 1/6 (loading)"
    restoring = replace(b, step=3, phase=BenchPhase.RESTORING)  # after the model's last run, before the next model's
    assert bench_text(restoring) == f"Benchmarking {SMALL}… 3/6 (putting back what was loaded)"
    one = replace(report(ready()), benches=(b,))
    assert f"Benchmarking {SMALL}… 2/6" in [i.label for i in flatten(build_menu(one))]
    assert not [i for i in flatten(build_menu(one)) if i.label.startswith("Benchmarking") and i.enabled]


@pytest.fixture
def slow_emu(emulator_factory: EmulatorFactory) -> Emulator:
    return emulator_factory(speed_scale=1.0)  # model time as the speed table says: seconds per run


@pytest.fixture
def live(slow_emu: Emulator) -> Iterator[LiveTray]:
    tray = LiveTray(slow_emu.api_url)
    yield tray
    tray.close()


def test_a_bench_of_the_trays_core_shows_while_it_runs(live: LiveTray) -> None:
    live.thread.submit(live.core.monitor.warm_up()).result(30)
    bench = Bench(live.core.monitor.instance("local").client, tracker=live.core.benches.tracker("local"))
    running = live.thread.submit(bench.run([SMALL], runs=1000))
    wait_for(lambda: any(label.startswith(f"Benchmarking {SMALL}… 1/1000") for label in live.labels()),
             what="the bench's line")
    running.cancel()
    wait_for(lambda: not any(label.startswith("Benchmarking") for label in live.labels()), what="the line gone")


def test_a_bench_in_a_terminal_shows_in_the_tray(slow_emu: Emulator, tmp_path: Path) -> None:
    tray = LiveTray(slow_emu.api_url, watch_benches=True)
    cfg = write_config(tmp_path, slow_emu.api_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), "bench", SMALL, "--runs", "1000",
         "--db", str(tmp_path / "a.sqlite3")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: any(label.startswith(f"Benchmarking {SMALL}… ") and label.endswith("/1000")
                             for label in tray.labels()), timeout=60, what="the terminal's bench in the menu")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        wait_for(lambda: not any(label.startswith("Benchmarking") for label in tray.labels()), timeout=30,
                 what="the line gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        tray.close()
