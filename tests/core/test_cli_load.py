"""`lmstudio-tray load` with options, `--check`, the fit warning, and waiting for another process's load."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.core.test_cli import QWEN, run, write_config
from tests.emulator_fixtures import EmulatorFactory, LmsHome

GiB = 1024**3


def test_load_with_every_lms_option(tmp_path: Path, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]) -> None:
    emu = lms_home.emulator
    cfg = write_config(tmp_path, emu.api_url)
    code, out, err = run(capsys, "--config", str(cfg), "load", QWEN, "-c", "8192", "--gpu", "max", "--ttl", "600",
                         "--parallel", "2", "--identifier", "mine")
    assert code == 0, err
    assert f"Loaded {QWEN} as mine on local" in out and "context 8192" in out
    [inst] = emu.state.engine.loaded()
    assert (inst.identifier, inst.ttl, inst.options.gpu, inst.options.parallel) == ("mine", 600, 1.0, 2)


def test_bad_option_values_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    code, _, err = run(capsys, "--config", str(cfg), "load", QWEN, "--gpu", "2")
    assert code == 2 and "out of range: use off, max or a number between 0 and 1" in err
    code, _, err = run(capsys, "--config", str(cfg), "load", QWEN, "--parallel", "0")
    assert code == 2 and "0 is too small" in err


def test_options_rest_cannot_apply_name_what_to_leave_out(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = emulator_factory()
    monkeypatch.setenv("PATH", str(tmp_path))  # no `lms` anywhere: loads go over REST
    cfg = write_config(tmp_path, emu.api_url)
    code, _, err = run(capsys, "--config", str(cfg), "load", QWEN, "--identifier", "mine")
    assert code == 1 and "cannot set an identifier; leave an identifier out" in err
    assert emu.loaded() == []


def test_check_says_whether_it_fits(tmp_path: Path, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]) -> None:
    emu = lms_home.emulator
    emu.update(memory_bytes=3 * GiB)
    cfg = write_config(tmp_path, emu.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "load", QWEN, "--check", "-c", "4096")
    assert code == 0 and "fits" in out and "NOT" not in out
    code, out, _ = run(capsys, "--config", str(cfg), "load", QWEN, "--check", "-c", "32768")
    assert code == 1 and "will NOT fit" in out and "with context 32768" in out
    code, out, _ = run(capsys, "--config", str(cfg), "load", QWEN, "--check", "-c", "32768", "--json")
    assert code == 1 and '"fits": false' in out
    assert emu.loaded() == []  # a check loads nothing


def test_a_load_that_will_not_fit_is_said_before_it_runs(
    tmp_path: Path, lms_home: LmsHome, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = lms_home.emulator
    emu.update(memory_bytes=3 * GiB)
    cfg = write_config(tmp_path, emu.api_url)
    code, _, err = run(capsys, "--config", str(cfg), "load", QWEN, "-c", "32768")
    assert code == 1
    assert err.index("will not fit on local") < err.index("insufficient system resources")
    cfg.write_text(cfg.read_text() + '[loads]\nfit_check = "refuse"\n')
    code, _, err = run(capsys, "--config", str(cfg), "load", QWEN, "-c", "32768")
    assert code == 1 and "will not fit" in err and "insufficient system resources" not in err


def _cli(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def test_a_load_another_process_runs_is_waited_for_and_said(
    tmp_path: Path, emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(load_seconds=600)  # held until the test finishes it
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no `lms`
    cfg = write_config(tmp_path, emu.api_url)
    first = _cli(cfg, "load", QWEN)
    second: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while not emu.state.engine.pending_jobs():
            assert time.monotonic() < deadline and first.poll() is None, "the first load never started"
            time.sleep(0.05)
        second = _cli(cfg, "load", QWEN)
        assert second.stderr is not None
        said: list[str] = []
        waiting = threading.Event()

        def read() -> None:
            assert second is not None and second.stderr is not None
            for line in second.stderr:
                said.append(line)
                if "Waiting for lmstudio-tray" in line:
                    waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert waiting.wait(60), f"the second load never said it waits: {said}"
        assert f"(pid {first.pid}), which is loading {QWEN} on local" in "".join(said)
        emu.finish_loads()
        out1, _ = first.communicate(timeout=60)
        assert second.stdout is not None
        out2 = second.stdout.read()  # stderr is the reader's
        second.wait(timeout=60)
        reader.join(timeout=10)
        assert first.returncode == 0 and f"Loaded {QWEN}" in out1
        assert second.returncode == 0 and f"{QWEN} is already loaded" in out2
        assert [i["identifier"] for i in emu.loaded()] == [QWEN]  # one copy, no :2
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
