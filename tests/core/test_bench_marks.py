"""Benches as bus events and as marks other processes read: the events a bench publishes, the file it keeps, and
what a watching core makes of another process's marks (started, progress, finished; old news stays quiet; a
process that died mid-bench)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmstudio_tray.core.control.bench import Bench, BenchError, Suite
from lmstudio_tray.core.control.bench_marks import KEEP_ENDED_SECONDS, Benches, BenchMark, BenchMarks, MarkState
from lmstudio_tray.core.events import (
    ALL_KINDS,
    BenchFailed,
    BenchFinished,
    BenchProgressed,
    BenchStarted,
    Event,
    EventBus,
)
from lmstudio_tray.core.lmstudio.client import LMStudioClient
from lmstudio_tray.core.models import BenchPhase, BenchState
from tests.emulator_fixtures import EmulatorFactory

SMALL, LARGE = "qwen/qwen3-4b-2507", "google/gemma-3-12b"


def recorder(bus: EventBus) -> list[Event]:
    seen: list[Event] = []
    bus.subscribe(seen.append, *ALL_KINDS)
    return seen


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not this one, to write marks in its name."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


async def test_a_bench_publishes_its_steps_and_keeps_a_mark(emulator_factory: EmulatorFactory,
                                                             tmp_path: Path) -> None:
    emu = emulator_factory(speed_scale=0.02)
    bus = EventBus()
    seen = recorder(bus)
    benches = Benches(bus, tmp_path / "benches")
    client = LMStudioClient(emu.api_url)
    states: list[tuple[BenchState, ...]] = []
    bus.subscribe(lambda _e: states.append(benches.active()), BenchProgressed)
    try:
        report = await Bench(client, tracker=benches.tracker("local")).run([LARGE, SMALL], Suite.QUICK, runs=2)
    finally:
        await client.aclose()
    assert seen[0] == BenchStarted("local", models=(LARGE, SMALL), suite="quick", total=4, pid=os.getpid())
    steps = [(e.model, e.step, e.phase) for e in seen if isinstance(e, BenchProgressed)]
    assert steps == [(LARGE, 1, "loading"), (LARGE, 1, "run"), (LARGE, 2, "run"), (LARGE, 2, "restoring"),
                     (SMALL, 3, "loading"), (SMALL, 3, "run"), (SMALL, 4, "run"), (SMALL, 4, "restoring")]
    assert states[2] == (BenchState("local", LARGE, 2, 4, BenchPhase.RUN, os.getpid()),)  # what the tray shows
    [done] = [e for e in seen if isinstance(e, BenchFinished)]
    best = report.results[0].generated_tokens_per_s
    assert done.fastest == SMALL == report.results[0].model and best is not None
    assert done.tokens_per_s == best.median and done.models == 2 and done.seconds > 0
    assert benches.active() == ()
    [path] = (tmp_path / "benches").glob("*.json")  # left for other processes to read how it ended
    mark = BenchMark.from_json(json.loads(path.read_text()))
    assert (mark.state, mark.fastest, mark.total, mark.step) == ("finished", SMALL, 4, 4)


async def test_a_failed_bench_says_why(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = emulator_factory(speed_scale=0.02, fail_loads={SMALL: "not enough memory"})
    bus = EventBus()
    seen = recorder(bus)
    client = LMStudioClient(emu.api_url)
    try:
        with pytest.raises(Exception, match="not enough memory"):
            await Bench(client, tracker=Benches(bus, tmp_path).tracker("local")).run([SMALL], runs=1)
    finally:
        await client.aclose()
    [failed] = [e for e in seen if isinstance(e, BenchFailed)]
    assert "not enough memory" in failed.reason and not failed.cancelled


async def test_a_refused_bench_leaves_no_tracker_behind(emulator_factory: EmulatorFactory, tmp_path: Path) -> None:
    """A bench refused before it starts (bad input, the slot taken) is no bench of this process: a long-running
    core that refuses many must not keep their trackers."""
    emu = emulator_factory()
    benches = Benches(EventBus(), tmp_path)
    client = LMStudioClient(emu.api_url)
    try:
        for _ in range(3):
            with pytest.raises(BenchError):
                await Bench(client, tracker=benches.tracker("local")).run(["no/such-model"], runs=1)
        benches.tracker("local")  # made for a bench that then never ran (the tool's slot was taken)
    finally:
        await client.aclose()
    assert benches._own == []


def test_a_watcher_turns_another_processs_marks_into_events(
    tmp_path: Path, other_process: subprocess.Popen[bytes]
) -> None:
    bus = EventBus()
    seen = recorder(bus)
    marks, benches = BenchMarks(tmp_path), Benches(bus, tmp_path)
    since = time.time()
    mark = BenchMark("local", other_process.pid, since, models=(SMALL,), suite="quick", total=3)
    path = marks.write(None, mark)
    benches.publish_changes(marks.read(), since)
    assert seen == [BenchStarted("local", models=(SMALL,), suite="quick", total=3, pid=other_process.pid)]
    marks.write(path, mark := BenchMark("local", other_process.pid, since, models=(SMALL,), suite="quick", total=3,
                                        model=SMALL, step=2, phase=BenchPhase.RUN))
    benches.publish_changes(marks.read(), since)
    benches.publish_changes(marks.read(), since)  # nothing new: nothing published
    assert seen[1:] == [BenchProgressed("local", model=SMALL, step=2, total=3, phase=BenchPhase.RUN,
                                        pid=other_process.pid)]
    assert benches.active() == (BenchState("local", SMALL, 2, 3, BenchPhase.RUN, other_process.pid),)
    marks.write(path, BenchMark("local", other_process.pid, since, models=(SMALL,), suite="quick", total=3,
                                model=SMALL, step=3, phase=BenchPhase.RUN, state=MarkState.FINISHED, ended_at=since + 5,
                                fastest=SMALL, tokens_per_s=42.5))
    benches.publish_changes(marks.read(), since)
    assert seen[2:] == [BenchFinished("local", fastest=SMALL, tokens_per_s=42.5, models=1, seconds=5.0,
                                      pid=other_process.pid)]
    assert benches.active() == ()


def test_old_news_stays_quiet_and_old_files_go(tmp_path: Path, other_process: subprocess.Popen[bytes]) -> None:
    bus = EventBus()
    seen = recorder(bus)
    marks = BenchMarks(tmp_path)
    now = time.time()
    marks.write(None, BenchMark("local", other_process.pid, now - 30, state=MarkState.FINISHED, ended_at=now - 20,
                                fastest=SMALL))  # ended before the watcher started
    marks.write(None, BenchMark("local", other_process.pid, now - 300, state=MarkState.FINISHED,
                                ended_at=now - KEEP_ENDED_SECONDS - 1))  # ended long ago
    (tmp_path / "broken.json").write_text("{")
    Benches(bus, tmp_path).publish_changes(marks.read(), now)
    assert seen == [] and len(list(tmp_path.glob("*.json"))) == 1


def test_a_bench_whose_process_died_is_reported_once(tmp_path: Path) -> None:
    bus = EventBus()
    seen = recorder(bus)
    marks, benches = BenchMarks(tmp_path), Benches(bus, tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        marks.write(None, BenchMark("local", proc.pid, time.time(), models=(SMALL,), total=1, model=SMALL, step=1,
                                    phase=BenchPhase.RUN))
        benches.publish_changes(marks.read(), 0.0)
    finally:
        proc.kill()
        proc.wait()
    benches.publish_changes(marks.read(), 0.0)  # its file is dropped: the process is gone
    benches.publish_changes(marks.read(), 0.0)
    assert [type(e) for e in seen] == [BenchStarted, BenchProgressed, BenchFailed]
    assert list(tmp_path.glob("*.json")) == []


def test_marks_carry_typed_states_and_read_old_and_unknown_values(
    tmp_path: Path, other_process: subprocess.Popen[bytes]
) -> None:
    """The file holds plain values (older versions read them); reading gives the enums. A phase this version does
    not know reads as none; a state it does not know makes the mark unreadable (it cannot tell if that bench runs)."""
    marks = BenchMarks(tmp_path)
    path = marks.write(None, BenchMark("local", other_process.pid, time.time(), model=SMALL, step=1, total=2,
                                       phase=BenchPhase.RESTORING))
    assert path is not None
    data = json.loads(path.read_text())
    assert (data["phase"], data["state"]) == ("restoring", "running")
    [mark] = marks.read().values()
    assert mark.phase is BenchPhase.RESTORING and mark.state is MarkState.RUNNING
    old = BenchMark.from_json({"instance": "local", "pid": 1, "started_at": 1.0, "phase": "", "state": "failed"})
    assert old.phase is None and old.state is MarkState.FAILED
    newer = BenchMark.from_json({"instance": "local", "pid": 1, "started_at": 1.0, "phase": "warming"})
    assert newer.phase is None and newer.state_now().phase is None
    with pytest.raises(ValueError):
        BenchMark.from_json({"instance": "local", "pid": 1, "started_at": 1.0, "state": "paused"})
