"""`lmstudio-tray get` against the emulator: output in each mode, the exit code of each outcome, and Ctrl-C (a real
SIGINT to a real CLI process) for a REST download (it goes on in LM Studio, and `get` again attaches) and for an
`lms get` run (stopped with the command)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from lmstudio_tray.cli import build_parser
from lmstudio_tray.cli.downloads import GetExit, _Output
from lmstudio_tray.core.events import DownloadProgressed
from tests.core.test_cli import run, write_config
from tests.emulator_fixtures import EmulatorFactory, LmsHome

GRANITE = "ibm/granite-4-micro"
GRANITE_BYTES = 2_279_145_003


class Cli:
    """`lmstudio-tray get ...` as a child process whose stdout lines are read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmstudio_tray", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env or dict(os.environ), preexec_fn=_as_at_a_terminal,
        )
        self.lines: list[str] = []

    def read_until(self, wanted: str) -> str:
        """The first stdout line containing `wanted` (the child's own pace; EOF fails with its stderr)."""
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        for line in out:
            self.lines.append(line)
            if wanted in line:
                return line
        raise AssertionError(f"no {wanted!r} in {self.lines}; stderr: {self.finish()[1]}")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=60)
        self.lines += out.splitlines(keepends=True)
        return self.proc.returncode, "".join(self.lines), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _as_at_a_terminal() -> None:
    """Ctrl-C as a command at a terminal gets it: a runner that started the tests in the background (a script's
    `&`) leaves SIGINT ignored, and Python keeps it ignored in its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_get_json_lines_from_start_to_result(tmp_path: Path, emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0)  # stands still until the test finishes it
    cfg = write_config(tmp_path, emu.api_url)
    cli = Cli("--config", str(cfg), "get", GRANITE, "--json")
    try:
        cli.read_until('"event": "progress"')
        emu.finish_downloads()
        code, out, _ = cli.finish()
    finally:
        cli.kill()
    lines = json_lines(out)
    events = [line["event"] for line in lines]
    assert events[0] == "started" and events[-1] == "result" and "progress" in events
    progress = next(line for line in lines if line["event"] == "progress")
    assert progress["total_bytes"] == GRANITE_BYTES and progress["bytes_per_second"] == 1.0
    assert progress["eta_seconds"] is not None and progress["percent"] is not None
    assert lines[-1]["status"] == "completed" and lines[-1]["downloaded_bytes"] == GRANITE_BYTES
    assert code == GetExit.OK
    assert GRANITE in [m["modelKey"] for m in emu.downloaded()]


def test_get_failing_halfway_exits_1(tmp_path: Path, emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1.0, fail_downloads={GRANITE: 0.5})
    cfg = write_config(tmp_path, emu.api_url)
    cli = Cli("--config", str(cfg), "get", GRANITE, "--json")
    try:
        cli.read_until('"event": "progress"')
        emu.finish_downloads()
        code, out, _ = cli.finish()
    finally:
        cli.kill()
    result = json_lines(out)[-1]
    assert (result["event"], result["status"], result["cause"]) == ("result", "failed", "failed")
    assert result["downloaded_bytes"] == GRANITE_BYTES // 2  # REST gives no reason: the result says who failed
    assert result["reason"] == "LM Studio reported the download as failed"
    assert code == GetExit.FAILED


def test_get_plain_lines_and_each_refusal(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator_factory(download_speed=5e10)
    cfg = write_config(tmp_path, emu.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "get", GRANITE)
    assert code == GetExit.OK
    assert f"Downloading {GRANITE} (2.3 GB) on local." in out
    assert f"Downloaded {GRANITE} (2.3 GB) on local" in out and f"`lmstudio-tray load {GRANITE}`" in out
    code, out, _ = run(capsys, "--config", str(cfg), "get", GRANITE)
    assert code == GetExit.OK and "downloaded already" in out
    code, _, err = run(capsys, "--config", str(cfg), "get", "nobody/nothing")
    assert code == GetExit.UNKNOWN_MODEL and "does not know the model 'nobody/nothing'" in err
    code, out, _ = run(capsys, "--config", str(cfg), "get", "nobody/nothing", "--json")
    assert code == GetExit.UNKNOWN_MODEL and json_lines(out)[-1]["kind"] == "unknown_model"
    code, _, err = run(capsys, "--config", str(cfg), "get", GRANITE, "--instance", "nope")
    assert code == GetExit.USAGE and "no instance named 'nope'" in err
    emu.stop_server()
    code, _, err = run(capsys, "--config", str(cfg), "get", GRANITE)
    assert code == GetExit.UNREACHABLE and "not running" in err


def test_get_on_old_lm_studio_without_lms(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator_factory(version="0.3.31")
    cfg = write_config(tmp_path, emu.api_url)
    code, _, err = run(capsys, "--config", str(cfg), "get", GRANITE)
    assert code == GetExit.NO_ROUTE and "npx lmstudio install-cli" in err


def test_plain_lines_every_ten_percent(capsys: pytest.CaptureFixture[str]) -> None:
    out = _Output()
    for done in (0, 5, 10, 15, 37, 100):
        out.progress(DownloadProgressed("local", model=GRANITE, job_id="j", downloaded_bytes=done, total_bytes=100,
                                        bytes_per_second=10.0))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1].split("%")[0] for line in lines] == ["10", "37", "100"]
    assert lines[0] == f"{GRANITE}: 10% of 100 B, 10 B/s, ETA 0:09"


def test_ctrl_c_leaves_a_rest_download_running_and_get_again_attaches(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator_factory(download_speed=1.0)
    cfg = write_config(tmp_path, emu.api_url)
    cli = Cli("--config", str(cfg), "get", GRANITE)
    try:
        cli.read_until(f"Downloading {GRANITE}")
        wait_for(lambda: len(emu.downloads()) == 1, "the job in LM Studio")
        cli.proc.send_signal(signal.SIGINT)
        code, _, err = cli.finish()
    finally:
        cli.kill()
    job_id = emu.downloads()[0]["job_id"]
    assert code == GetExit.INTERRUPTED
    assert f"stopped following the download of {GRANITE} (job {job_id}): it goes on inside LM Studio" in err
    assert f"`lmstudio-tray get {GRANITE}`" in err
    assert emu.downloads()[0]["status"] == "downloading"  # still running inside LM Studio
    parse_named_command(err)
    emu.update(download_speed=5e10)
    code, out, _ = run(capsys, "--config", str(cfg), "get", GRANITE, "--json")
    lines = json_lines(out)
    assert lines[0]["event"] == "started" and lines[0]["job_id"] == job_id  # LM Studio gave the running job
    assert lines[-1]["status"] == "completed" and code == GetExit.OK
    assert len(emu.downloads()) == 1  # no second job


def test_ctrl_c_stops_an_lms_get_download(
    tmp_path: Path, emulator_factory: EmulatorFactory, lms_home: LmsHome
) -> None:
    lms_home.emulator.close()
    emu = emulator_factory(home=lms_home.lmstudio_home, version="0.3.31", download_speed=1.0)
    cfg = write_config(tmp_path, emu.api_url)
    cli = Cli("--config", str(cfg), "get", GRANITE, "--json")
    try:
        cli.read_until('"event": "progress"')
        children = [p for p in psutil.Process(cli.proc.pid).children(recursive=True) if "get" in cmdline(p)]
        assert children, "no `lms get` child"
        cli.proc.send_signal(signal.SIGINT)
        code, out, _ = cli.finish()
    finally:
        cli.kill()
    assert code == GetExit.INTERRUPTED
    last = json_lines(out)[-1]
    assert last["event"] == "interrupted" and last["continues_in_lm_studio"] is False
    assert f"the `lms get` process downloading {GRANITE}" in last["message"] and "was stopped" in last["message"]
    wait_for(lambda: not any(alive(p) for p in children), "the `lms get` child to end")


def cmdline(proc: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return proc.cmdline()
    return []


def alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def parse_named_command(text: str) -> None:
    """The command the message names parses with the real parser."""
    command = text.split("`lmstudio-tray ", 1)[1].split("`", 1)[0]
    build_parser().parse_args(command.split())


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_get_draws_a_bar_with_speed_and_eta_on_a_terminal(tmp_path: Path, emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(download_speed=1e6)
    cfg = write_config(tmp_path, emu.api_url)
    leader, follower = pty.openpty()
    env = dict(os.environ, COLUMNS="160", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "lmstudio_tray", "--config", str(cfg), "get", GRANITE],
                            stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    seen = b""
    try:
        while b"MB/s" not in seen or b"ETA " not in seen:
            chunk = os.read(leader, 65536)  # EOF (OSError on Linux) fails the test with what was seen
            assert chunk, seen
            seen += chunk
        emu.finish_downloads()
        while chunk := _read(leader):
            seen += chunk
        assert proc.wait(60) == GetExit.OK
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert "1.0 MB/s" in text and re.search(r"ETA 3\d:\d\d", text), text  # 2.28 GB at 1 MB/s: about 38 min
    assert f"Downloaded {GRANITE}" in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the other end closed: the child is done
        return b""
