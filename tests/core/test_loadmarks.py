"""Load marks: what one lmstudio-tray process tells the others about a load it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lmstudio_tray.core.control.loadmarks import LoadMark, LoadMarks, same_server

URL = "http://127.0.0.1:1234"
GEMMA = "google/gemma-3-12b"


def mark(pid: int, *, model: str = GEMMA, url: str = URL, started_at: float | None = None) -> LoadMark:
    return LoadMark(url, model, 16384, pid, time.time() if started_at is None else started_at, 20.0)


def test_a_live_process_s_mark_is_seen_until_removed(tmp_path: Path) -> None:
    marks = LoadMarks(tmp_path / "loads")
    other = os.getppid()  # a live process that is not this one
    path = marks.add(mark(other))
    assert path is not None and path.parent == tmp_path / "loads"
    found = marks.others("http://localhost:1234/v1", GEMMA)  # the same server, named differently
    assert [(m.pid, m.model, m.context_length, m.eta_seconds) for m in found] == [(other, GEMMA, 16384, 20.0)]
    assert marks.others(URL, "qwen/qwen3-4b-2507") == []  # another model
    assert marks.others("http://127.0.0.1:4321", GEMMA) == []  # another server
    marks.remove(path)
    marks.remove(path)  # twice is fine
    assert marks.others(URL, GEMMA) == []


def test_this_process_s_own_marks_are_not_others(tmp_path: Path) -> None:
    marks = LoadMarks(tmp_path)
    marks.add(mark(os.getpid()))
    assert marks.others(URL, GEMMA) == []


def test_marks_of_dead_or_replaced_processes_are_dropped(tmp_path: Path) -> None:
    marks = LoadMarks(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    marks.add(mark(int(gone.stdout)))
    # a pid that is alive now but started after the mark was written: not the process that wrote it
    marks.add(mark(os.getppid(), started_at=0.0))
    (tmp_path / "broken.json").write_text("{not json")
    assert marks.others(URL, GEMMA) == []
    assert list(tmp_path.glob("*.json")) == []  # all cleaned up


def test_an_unwritable_folder_only_loses_the_mark(tmp_path: Path) -> None:
    blocker = tmp_path / "loads"
    blocker.write_text("a file where the folder should be")
    marks = LoadMarks(blocker)
    assert marks.add(mark(os.getppid())) is None
    assert marks.others(URL, GEMMA) == []


def test_same_server() -> None:
    assert same_server("http://127.0.0.1:1234", "http://localhost:1234/v1/")
    assert not same_server("http://127.0.0.1:1234", "http://127.0.0.1:1235")
    assert not same_server("http://127.0.0.1:1234", "https://127.0.0.1:1234")
    assert not same_server("http://10.0.0.2:1234", "http://127.0.0.1:1234")
    assert not same_server("not a url", URL)


def test_none_elsewhere_answers_from_one_stat_once_a_scan_found_the_folder_empty(tmp_path: Path) -> None:
    marks = LoadMarks(tmp_path / "loads")
    assert marks.none_elsewhere()  # no folder yet
    path = marks.add(mark(os.getppid()))
    assert not marks.none_elsewhere()
    assert marks.others(URL, GEMMA) and not marks.none_elsewhere()
    marks.remove(path)
    assert not marks.none_elsewhere()  # changed since the last scan: only a scan can tell
    os.utime(tmp_path / "loads", ns=(time.time_ns() - 10**10,) * 2)  # a change long settled
    assert marks.others(URL, GEMMA) == [] and marks.none_elsewhere()
    marks.add(mark(os.getppid()))  # a new mark moves the folder's mtime
    assert not marks.none_elsewhere()
    assert len(marks.others(URL, GEMMA)) == 1
