from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lmstudio_tray.emulator import Emulator
from tests.emulator_fixtures import EmulatorFactory, LmsHome

QWEN = "qwen/qwen3-4b-2507"


def lms(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(path), *args], capture_output=True, text=True, timeout=20, env={**os.environ, **(env or {})}
    )


def test_server_status_stop_start(lms_home: LmsHome) -> None:
    emu = lms_home.emulator
    r = lms(lms_home.lms, "server", "status", "--json", "--quiet")
    assert r.returncode == 0 and json.loads(r.stdout) == {"running": True, "port": emu.api_port}
    r = lms(lms_home.lms, "server", "stop")
    assert r.returncode == 0 and r.stderr.strip() == f"Stopped the server on port {emu.api_port}."
    assert not emu.server_running
    r = lms(lms_home.lms, "server", "stop")
    assert r.returncode == 1 and r.stderr.strip() == "Error: The server is not running."
    r = lms(lms_home.lms, "server", "status")
    assert r.stdout == "" and r.stderr.strip() == "The server is not running."
    r = lms(lms_home.lms, "server", "start")
    assert r.returncode == 0 and r.stderr.strip() == f"Success! Server is now running on port {emu.api_port}"
    assert emu.server_running


def test_server_status_without_config_file(lms_home: LmsHome) -> None:
    (lms_home.lmstudio_home / ".internal" / "http-server-config.json").unlink()
    lms_home.emulator.update(jit=True)  # rewrites the config, like LM Studio does on any settings change
    r = lms(lms_home.lms, "server", "status", "--json")
    assert json.loads(r.stdout)["running"] is True


def test_load_progress_ps_ls_unload(lms_home: LmsHome) -> None:
    lms_home.emulator.update(load_seconds=0.3)
    raw = subprocess.run([str(lms_home.lms), "load", "qwen3-4b", "-y", "-c", "8192"], capture_output=True, timeout=20)
    assert raw.returncode == 0, raw.stderr
    # the spinner: `\r<text> <frame>` on stdout, cleared at the end
    spinner = raw.stdout.decode()
    frames = [f for f in spinner.split("\r") if f.startswith(f"Loading {QWEN} ")]
    percents = [int(f.split()[2].rstrip("%")) for f in frames]
    assert len(percents) >= 3 and percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)
    assert spinner.endswith("\r\x1b[K")
    lines = raw.stderr.decode().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Model loaded successfully in ") and lines[0].endswith("ms.")
    assert lines[1] == "(2.33 GiB)"  # the size in base-1024 units, on its own line
    assert lines[2] == f'To use the model in the API/SDK, use the identifier "{QWEN}".'
    lms_home.emulator.update(load_seconds=0.0)
    r = lms(lms_home.lms, "load", QWEN, "--identifier", "second", "--ttl", "600")
    assert r.returncode == 0
    ps = json.loads(lms(lms_home.lms, "ps", "--json").stdout)
    assert [(m["identifier"], m["contextLength"]) for m in ps] == [(QWEN, 8192), ("second", 4096)]
    assert ps[1]["ttlMs"] == 600_000 and ps[0]["ttlMs"] is None
    table = lms(lms_home.lms, "ps").stderr
    assert table.startswith("IDENTIFIER") and "IDLE" in table
    ls = json.loads(lms(lms_home.lms, "ls", "--json").stdout)
    assert len(ls) == 7 and {"modelKey", "format", "sizeBytes", "maxContextLength"} <= set(ls[0])
    assert [m["modelKey"] for m in json.loads(lms(lms_home.lms, "ls", "--json", "--embedding").stdout)] == [
        "text-embedding-nomic-embed-text-v1.5"
    ]
    assert all(m["type"] == "llm" for m in json.loads(lms(lms_home.lms, "ls", "--json", "--llm").stdout))
    r = lms(lms_home.lms, "unload", "second")
    assert r.returncode == 0 and r.stderr.strip() == 'Model "second" unloaded.'
    r = lms(lms_home.lms, "unload", "does-not-exist")
    assert r.returncode == 0 and "Not Found" in r.stderr
    r = lms(lms_home.lms, "unload", "--all")
    assert r.stderr.splitlines() == [f'Unloading "{QWEN}"...', "Unloaded 1 model."]
    assert lms(lms_home.lms, "unload", "-a").stderr.strip() == "No models to unload."
    assert json.loads(lms(lms_home.lms, "ps", "--json").stdout) == []


def test_load_failures_exit_non_zero(lms_home: LmsHome) -> None:
    r = lms(lms_home.lms, "load", "no-such-model", "-y")
    assert r.returncode == 1 and "Model not found" in r.stderr
    r = lms(lms_home.lms, "load", "qwen")
    assert r.returncode == 1 and "several models" in r.stderr  # ambiguous without -y
    lms_home.emulator.update(fail_loads={"openai/gpt-oss-20b": "Model loading was stopped due to insufficient"})
    r = lms(lms_home.lms, "load", "gpt-oss", "-y")
    assert r.returncode == 1 and "insufficient" in r.stderr
    assert lms_home.emulator.loaded() == []


def test_status_command(lms_home: LmsHome) -> None:
    lms_home.emulator.load(QWEN)
    r = lms(lms_home.lms, "status")
    assert r.stderr.startswith(f"Server: ON (port: {lms_home.emulator.api_port})")
    assert f"  · {QWEN} - 2.50 GB" in r.stderr
    lms_home.emulator.stop_server()
    lms_home.emulator.unload_all()
    r = lms(lms_home.lms, "status")
    assert r.stderr.startswith("Server:  OFF ") and "No Models Loaded" in r.stderr


def test_lms_when_lm_studio_is_not_installed(lms_home: LmsHome) -> None:
    lms_home.emulator.kill()
    (lms_home.lmstudio_home / ".internal" / "llmster-install-location.json").unlink()
    r = lms(lms_home.lms, "ps", "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "Error: LM Studio daemon is not running and no valid installation could be found or installed.",
        "Error: Failed to start or connect to local LM Studio API server.",
    ]


def test_install_lms_and_remote_mode(tmp_path: Path, emulator: Emulator, emulator_factory: EmulatorFactory) -> None:
    path = emulator.install_lms(tmp_path / "bin")
    emulator.load(QWEN)
    env = {"LMS_EMULATOR_CONTROL_URL": ""}
    assert json.loads(lms(path, "ps", "--json").stdout)[0]["identifier"] == QWEN
    other = emulator_factory()
    r = lms(path, "ps", "--json", "--host", "127.0.0.1", "--port", str(other.api_port), env=env)
    assert r.returncode == 0 and json.loads(r.stdout) == []
    other.stop_server()
    r = lms(path, "ps", "--json", "--host", "127.0.0.1", "--port", str(other.api_port), env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"Error: The server does not appear to be running at 127.0.0.1:{other.api_port}. Please make sure the "
        "server is running and accessible at the specified address."
    )


def test_runs_as_module(lms_home: LmsHome) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lmstudio_tray.emulator.lms", "server", "status", "--json"],
        capture_output=True, text=True, timeout=20,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["port"] == lms_home.emulator.api_port


def test_ctrl_c_cancels_the_load_in_lm_studio(lms_home: LmsHome) -> None:
    lms_home.emulator.update(load_seconds=3.0)
    proc = subprocess.Popen(
        [str(lms_home.lms), "load", "google/gemma-3-12b", "-y"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.read(len("\rLoading google/gemma-3-12b "))
    assert first == b"\rLoading google/gemma-3-12b "
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 1
    assert proc.stderr.read().decode() == "W Load cancelled.\n"
    proc.stdout.close()
    proc.stderr.close()
    state = lms_home.emulator.snapshot()
    assert state["loading"] == [] and state["loaded"] == []
