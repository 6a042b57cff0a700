"""`lmstudio-tray bench` against the emulator's per-model speeds: the ranking, the results kept in the analytics
store and shown by `stats`, what was loaded put back (also on Ctrl-C), and refused input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray.emulator import Emulator
from tests.core.test_cli import run, write_config
from tests.emulator_fixtures import EmulatorFactory, LmsHome

SMALL = "qwen/qwen3-4b-2507"
LARGE = "google/gemma-3-12b"
KEPT = "llama-3.2-3b-instruct"


def loaded(emu: Emulator) -> set[tuple[str, int]]:
    return {(i.spec.key, i.context_length) for i in emu.state.engine.loaded()}


@pytest.fixture
def emu(emulator_factory: EmulatorFactory) -> Emulator:
    emu = emulator_factory(speed_scale=0.02)
    emu.load(KEPT, context_length=8192)
    return emu


def test_bench_ranks_stores_and_restores(tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db = write_config(tmp_path, emu.api_url), tmp_path / "analytics.sqlite3"
    code, out, err = run(capsys, "--config", str(cfg), "bench", LARGE, SMALL, "--runs", "2", "--json", "--db", str(db))
    assert code == 0, err
    report = json.loads(out)
    assert [r["model"] for r in report["results"]] == [SMALL, LARGE]
    assert f"bench: {SMALL}: run 2/2" in err
    assert loaded(emu) == {(KEPT, 8192)}
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT model, suite, suite_version, quantization, context_length, runs, gen_tps "
                            "FROM bench_runs ORDER BY gen_tps DESC").fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (SMALL, "quick", 1, "Q4_K_M", 4096, 2), (LARGE, "quick", 1, "Q4_K_M", 4096, 2),
    ]
    code, out, _ = run(capsys, "stats", "--db", str(db), "--json")
    assert code == 0 and [b["model"] for b in json.loads(out)["bench"]] == [SMALL, LARGE]
    code, out, _ = run(capsys, "stats", "--db", str(db))
    assert code == 0 and "Benchmarks" in out and "quick v1" in out and SMALL in out


def test_bench_table_on_a_terminal(tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, emu.api_url)
    code, out, err = run(capsys, "--config", str(cfg), "bench", KEPT, "--runs", "1", "--suite", "coding",
                         "--db", str(tmp_path / "a.sqlite3"))
    assert code == 0, err
    assert "Suite coding v1" in out and KEPT in out and "0/1" in out  # the emulator cannot write code


def test_bench_refuses_unknown_models_and_bad_runs(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, emu.api_url)
    code, _, err = run(capsys, "--config", str(cfg), "bench", "no/such-model")
    assert code == 2 and "not downloaded: no/such-model" in err
    code, _, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "0")
    assert code == 2 and "--runs must be at least 1" in err
    assert loaded(emu) == {(KEPT, 8192)}


def test_ctrl_c_puts_back_what_was_loaded(tmp_path: Path, emu: Emulator) -> None:
    cfg = write_config(tmp_path, emu.api_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), "bench", SMALL, "--runs", "100000",
         "--db", str(tmp_path / "a.sqlite3")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "run 1/" in line:
                break
        assert (SMALL, 4096) in loaded(emu), seen
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "put back" in err
    assert loaded(emu) == {(KEPT, 8192)}


def test_bench_is_refused_while_another_bench_runs(tmp_path: Path, emu: Emulator,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """One bench at a time on a machine: another `bench`, or the agent's lmstudio_benchmark tool, holds the slot."""
    from lmstudio_tray.core.control.bench import bench_lock_file
    from lmstudio_tray.core.support.lock import SingleInstance

    cfg = write_config(tmp_path, emu.api_url)
    other = SingleInstance(bench_lock_file())
    assert other.acquire() is None
    try:
        code, _out, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1",
                              "--db", str(tmp_path / "a.sqlite3"))
    finally:
        other.release()
    assert code == 2 and "another benchmark is running on this machine" in err
    assert loaded(emu) == {(KEPT, 8192)}
    assert not (tmp_path / "a.sqlite3").exists()


def test_a_local_bench_records_lm_studios_version(tmp_path: Path, lms_home: LmsHome,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # LM Studio's home names its internal API server (`.internal/http-server.json`), which answers /lms-status
    emu = lms_home.emulator
    cfg, db = write_config(tmp_path, emu.api_url), tmp_path / "analytics.sqlite3"
    code, out, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1", "--json", "--db", str(db))
    assert code == 0, err
    assert json.loads(out)["lmstudio_version"] == emu.settings.version == "0.4.8"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT lmstudio_version FROM bench_runs").fetchall() == [("0.4.8",)]
    code, out, _ = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1", "--db", str(db))
    assert code == 0 and "LM Studio: 0.4.8" in out


def test_without_lm_studios_version_the_runtime_is_recorded(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # no `.internal/http-server.json` in this home: the server's REST v0 names the runtime that served the model
    cfg, db = write_config(tmp_path, emu.api_url), tmp_path / "analytics.sqlite3"
    code, out, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1", "--json", "--db", str(db))
    assert code == 0, err
    report = json.loads(out)
    assert report["lmstudio_version"] == "runtime llama.cpp-linux-x86_64-avx2 1.50.2"
    assert report["lmstudio_version_note"] is None
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT lmstudio_version FROM bench_runs").fetchall() == [(report["lmstudio_version"],)]


def test_an_unknown_version_is_stored_as_null_with_the_reason(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator_factory(speed_scale=0.02, version="0.3.5")  # before REST v0: no runtime named anywhere
    cfg, db = write_config(tmp_path, emu.api_url), tmp_path / "analytics.sqlite3"
    code, out, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1", "--json", "--db", str(db))
    assert code == 0, err
    report = json.loads(out)
    assert report["lmstudio_version"] is None
    assert "did not answer /lms-status" in report["lmstudio_version_note"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT lmstudio_version FROM bench_runs").fetchall() == [(None,)]


async def test_without_a_published_port_the_well_known_ports_are_asked(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # LM Studio builds before mid-2026 publish no `.internal/http-server.json`: `lms` then probes its well-known
    # internal ports; here the emulator's control port stands for one of them, next to two closed ones
    from lmstudio_tray.core.lmstudio.discovery import local_version

    emu = emulator_factory(version="0.4.6")
    control = int(emu.control_url.rsplit(":", 1)[1])
    closed = [_free_port(), _free_port()]
    assert await local_version(tmp_path / "no-home", ports=(closed[0], control, closed[1])) == "0.4.6"
    assert await local_version(tmp_path / "no-home", ports=tuple(closed)) is None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failed_restore_is_not_reported_as_put_back(
    tmp_path: Path, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmstudio_tray.emulator import Fault

    emu.add_fault(Fault(path="/v1/chat/completions", method="POST", status=500))
    emu.add_fault(Fault(path="/api/v1/models/unload", method="POST", status=500))
    cfg = write_config(tmp_path, emu.api_url)
    code, _, err = run(capsys, "--config", str(cfg), "bench", SMALL, "--runs", "1", "--db", str(tmp_path / "a.db"))
    assert code == 1
    assert "has been put back" not in err and "putting back what was loaded failed" in err
    assert "lmstudio-tray models list" in err
    assert (SMALL, 4096) in loaded(emu)  # truly left loaded: the message is right to say so
