"""The command line against the emulator: output shapes, exit codes, errors a person can act on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray import __version__
from lmstudio_tray.cli import main
from lmstudio_tray.emulator import Emulator
from tests.emulator_fixtures import EmulatorFactory

QWEN = "qwen/qwen3-4b-2507"


def write_config(tmp_path: Path, *urls: str) -> Path:
    path = tmp_path / "config.toml"
    body = "".join(
        f'[[instances]]\nname = "{"local" if n == 0 else f"i{n}"}"\nurl = "{u}"\n' for n, u in enumerate(urls)
    )
    path.write_text(body)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_json_shape(tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.load(QWEN, context_length=8192)
    cfg = write_config(tmp_path, emulator.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "status", "--json")
    assert code == 0
    data = json.loads(out)
    inst = data["instances"][0]
    assert {"name", "url", "state", "models"} <= inst.keys()
    assert (inst["name"], inst["url"], inst["state"]) == ("local", emulator.api_url, "ready")
    qwen = next(m for m in inst["models"] if m["key"] == QWEN)
    assert qwen["loaded"] is True and qwen["instances"] == [{"id": QWEN, "context_length": 8192}]
    assert qwen["type"] == "llm" and qwen["size_bytes"] > 0 and qwen["max_context_length"] > 8192


def test_status_text_and_exit_code_when_offline(
    tmp_path: Path, emulator_factory: EmulatorFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    up = emulator_factory()
    down = emulator_factory()
    up.load(QWEN)
    down.stop_server()
    cfg = write_config(tmp_path, up.api_url, down.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "status")
    assert code == 1
    assert f"local (active): ready — {up.api_url}" in out and f"● {QWEN}" in out
    assert f"i1: offline — {down.api_url}" in out


def test_load_unload_switch_from_the_command_line(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, emulator.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "load", QWEN, "-c", "4096")
    assert code == 0 and f"Loaded {QWEN} as {QWEN}" in out and "context 4096" in out
    code, out, _ = run(capsys, "--config", str(cfg), "load", QWEN)
    assert code == 0 and "already loaded" in out
    code, out, _ = run(capsys, "--config", str(cfg), "switch", "google/gemma-3-12b", "--json")
    assert code == 0 and json.loads(out)["instance_id"] == "google/gemma-3-12b"
    assert [r["identifier"] for r in emulator.loaded()] == ["google/gemma-3-12b"]
    code, out, _ = run(capsys, "--config", str(cfg), "unload", "--all")
    assert code == 0 and "Unloaded google/gemma-3-12b." in out
    code, _, err = run(capsys, "--config", str(cfg), "load", "nobody/nothing")
    assert code == 1 and "not downloaded" in err
    code, _, err = run(capsys, "--config", str(cfg), "unload")
    assert code == 2 and "--all" in err


def test_models_list(tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    emulator.load(QWEN)
    cfg = write_config(tmp_path, emulator.api_url)
    code, out, _ = run(capsys, "--config", str(cfg), "models", "list")
    assert code == 0 and out.splitlines()[0].startswith(f"● {QWEN}")
    code, out, _ = run(capsys, "--config", str(cfg), "models", "list", "--loaded", "--json")
    assert [m["key"] for m in json.loads(out)["models"]] == [QWEN]


def test_bad_config_exits_2_with_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[monitor]\npoll_interval = 'fast'\n")
    code, _, err = run(capsys, "--config", str(cfg), "status")
    assert code == 2
    assert "monitor.poll_interval = 'fast'" in err and "nothing was changed" in err
    code, _, err = run(capsys, "--config", str(cfg), "config", "validate")
    assert code == 2


def test_config_path_show_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "path")
    assert code == 0 and out.strip().endswith("lmstudio-tray/config.toml")
    code, out, _ = run(capsys, "config", "show")
    assert 'url = "http://127.0.0.1:1234"' in out
    code, out, _ = run(capsys, "config", "validate")
    assert code == 0 and "defaults apply" in out


def test_unknown_instance_is_a_usage_error(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, emulator.api_url)
    code, _, err = run(capsys, "--config", str(cfg), "load", QWEN, "--instance", "gpu")
    assert code == 2 and "no instance named 'gpu'; configured: local" in err


def test_token_set_reads_stdin_and_never_echoes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-lm-abcdEFGH:abcdefghijABCDEFGHij\n"))
    code, out, err = run(capsys, "token", "set", "local")
    assert code == 0 and "sk-lm-" not in out + err
    code, out, _ = run(capsys, "token", "status")
    assert "local: set" in out


def test_module_entry_point_prints_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lmstudio_tray", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"lmstudio-tray {__version__}"


def test_tray_options_without_a_command_go_to_run() -> None:
    from lmstudio_tray.cli import build_parser, default_to_run

    argv = default_to_run(["--config", "/tmp/c.toml", "--demo", "--log-level=debug", "--headless"])
    assert argv == ["--config", "/tmp/c.toml", "--log-level=debug", "run", "--demo", "--headless"]
    args = build_parser("tray").parse_args(argv)
    assert (args.command, args.demo, args.headless, args.config) == ("run", True, True, "/tmp/c.toml")
