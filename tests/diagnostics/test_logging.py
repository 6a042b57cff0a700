"""Structured logs: JSON lines in the platformdirs log dir, rotation, levels, and redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.logs import configure_logging, log_file, recent_log_lines, register_secret
from lmstudio_tray.emulator import Emulator

TOKEN = "sk-lm-PlantedToken-9f8e7d6c5b4a"
PROMPT = "please summarise my private diary entry about Zanzibar"


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_json_lines_go_to_the_platform_log_dir_and_text_to_the_terminal() -> None:
    term = io.StringIO()
    target = configure_logging("info", console=term)
    assert target == log_file()
    assert target.parent == paths.log_dir()
    log = logging.getLogger("lmstudio_tray.test")
    log.info("loaded %s in %.1f s", "qwen/qwen3-4b-2507", 2.5, extra={"instance": "local"})
    log.debug("not at info level")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("load failed")

    records = _lines(target)
    assert [r["msg"] for r in records] == ["loaded qwen/qwen3-4b-2507 in 2.5 s", "load failed"]
    first = records[0]
    assert first["level"] == "info" and first["logger"] == "lmstudio_tray.test"
    assert first["instance"] == "local" and first["pid"] == os.getpid()
    assert str(first["ts"]).endswith("+00:00")
    assert "RuntimeError: boom" in str(records[1]["exc"])
    # The terminal got plain text, not JSON.
    shown = term.getvalue().splitlines()
    assert any("INFO" in line and "lmstudio_tray.test: loaded qwen/qwen3-4b-2507 in 2.5 s" in line for line in shown)
    assert not shown[0].startswith("{")


def test_terminal_defaults_to_warnings_while_the_file_keeps_info() -> None:
    term = io.StringIO()
    target = configure_logging(None, console=term)
    assert target is not None
    logging.getLogger("x").info("routine detail")
    logging.getLogger("x").warning("something to see")
    assert "routine detail" not in term.getvalue()
    assert "something to see" in term.getvalue()
    assert [r["msg"] for r in _lines(target)] == ["routine detail", "something to see"]


def test_log_level_debug_reaches_both_and_error_hides_warnings() -> None:
    term = io.StringIO()
    target = configure_logging("debug", console=term)
    assert target is not None
    logging.getLogger("x").debug("fine detail")
    assert "fine detail" in term.getvalue() and _lines(target)[-1]["level"] == "debug"

    term2 = io.StringIO()
    target = configure_logging("error", console=term2)
    assert target is not None
    logging.getLogger("x").warning("a warning")
    assert "a warning" not in term2.getvalue()
    assert all(r["msg"] != "a warning" for r in _lines(target))


def test_rotation_keeps_backups_of_whole_json_lines(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    target = configure_logging("info", console=io.StringIO(), file=logs / "t.log", max_bytes=4000, backups=2)
    assert target is not None
    for i in range(400):
        logging.getLogger("rot").info("line %d %s", i, "x" * 40)
    tmp_path = logs
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["t.log", "t.log.1", "t.log.2"]
    for name in names:
        assert (tmp_path / name).stat().st_size <= 4000
        for record in _lines(tmp_path / name):  # every line parses: rotation never splits a record
            assert str(record["msg"]).startswith("line ")
    recent = recent_log_lines(1000, [tmp_path / "t.log.2", tmp_path / "t.log.1", tmp_path / "t.log"])
    assert json.loads(recent[-1])["msg"].startswith("line 399 ")


def test_an_unwritable_log_dir_degrades_to_the_terminal(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log dir should be")
    term = io.StringIO()
    assert configure_logging("info", console=term, file=blocker / "sub" / "x.log") is None
    logging.getLogger("x").info("still shown")
    assert "cannot write logs to" in term.getvalue() and "still shown" in term.getvalue()


def test_planted_token_and_prompt_never_reach_the_log_file() -> None:
    term = io.StringIO()
    target = configure_logging("debug", console=term)
    assert target is not None
    register_secret(TOKEN)
    log = logging.getLogger("lmstudio_tray.leaky")
    log.info("token is %s", TOKEN)
    log.info("headers %r", {"Authorization": f"Bearer {TOKEN}"})
    log.debug("request body %s", json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}))
    log.info("prompt=%s", json.dumps({"prompt": PROMPT}))
    log.info("event", extra={"content": PROMPT, "detail": f"used {TOKEN}"})
    log.warning("an unregistered bearer: Bearer abcDEF123456ghiJKL")
    log.info("config token = %s", "other-secret-value-42")
    log.info("polling %s", "http://admin:UrlSecret123@10.0.0.1:1234/api/v1/models")
    try:
        raise ValueError(f"server refused {TOKEN}")
    except ValueError:
        log.exception("call failed")

    text = target.read_text(encoding="utf-8") + term.getvalue()
    assert TOKEN not in text
    assert PROMPT not in text and "Zanzibar" not in text
    assert "abcDEF123456ghiJKL" not in text and "other-secret-value-42" not in text
    assert "UrlSecret123" not in text and "http://admin:[redacted]@10.0.0.1:1234" in text
    assert text.count("[redacted]") >= 7
    records = _lines(target)  # redaction keeps every line valid JSON
    assert len(records) == 9
    assert str(records[2]["msg"]).startswith('request body {"model": "m", "messages": "[prompt redacted]"')


def test_env_tokens_are_registered_at_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSTUDIO_TRAY_TOKEN_LOCAL", TOKEN)
    target = configure_logging("info", console=io.StringIO())
    assert target is not None
    logging.getLogger("x").info("odd: %s", TOKEN[3:])  # even a piece of a longer string is matched whole
    logging.getLogger("x").info("whole: %s!", TOKEN)
    text = target.read_text(encoding="utf-8")
    assert TOKEN not in text and "whole: [redacted]!" in text


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmstudio_tray", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_writes_json_log_and_never_the_instance_token(tmp_path: Path, emulator_factory: object) -> None:
    emu: Emulator = emulator_factory(auth_token=TOKEN)  # type: ignore[operator]
    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "local"\nurl = "{emu.api_url}"\n', encoding="utf-8")
    # The keyring of a subprocess is not the test's in-memory one: the env override carries the token.
    done = _cli("--log-level", "debug", "--config", str(config), "status", "--json",
                env={"LMSTUDIO_TRAY_TOKEN_LOCAL": TOKEN, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["instances"][0]["state"] in ("idle", "ready")
    records = _lines(log_file())
    assert records, "the CLI wrote no log records"
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert TOKEN not in log_file().read_text(encoding="utf-8") + done.stderr


def test_cli_log_level_error_keeps_the_file_quiet_about_info(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[instances]]\nname = "local"\nurl = "http://127.0.0.1:9"\n', encoding="utf-8")
    _cli("--log-level", "error", "--config", str(config), "status",
         env={"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    levels = {r["level"] for r in _lines(log_file())} if log_file().exists() else set()
    assert levels <= {"error", "critical"}
