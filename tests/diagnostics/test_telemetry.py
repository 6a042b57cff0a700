"""Opt-in local telemetry: off writes nothing; on writes only aggregated counts to the data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.events import ALL_KINDS, EventBus, ModelLoaded, VerdictGiven
from lmstudio_tray.core.support import paths
from lmstudio_tray.diagnostics.telemetry import Telemetry, read_counts, telemetry_file
from lmstudio_tray.emulator import Emulator

ENV = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmstudio_tray", *args], capture_output=True, text=True,
                          timeout=90, env={**os.environ, **ENV})


def _config(tmp_path: Path, url: str, *, telemetry: bool | None) -> Path:
    text = f'[[instances]]\nname = "local"\nurl = "{url}"\n'
    if telemetry is not None:
        text += f"\n[logging]\ntelemetry = {'true' if telemetry else 'false'}\n"
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_telemetry_is_off_by_default() -> None:
    assert Config().logging.telemetry is False


def test_off_writes_nothing_even_after_commands_and_loads(tmp_path: Path, emulator: Emulator) -> None:
    for telemetry in (None, False):
        config = _config(tmp_path, emulator.api_url, telemetry=telemetry)
        assert _cli("--config", str(config), "status").returncode == 0
        assert _cli("--config", str(config), "load", "qwen/qwen3-4b-2507").returncode == 0
    assert not telemetry_file().exists()
    assert not any(p.name.startswith("telemetry") for p in paths.data_dir().rglob("*"))

    tel = Telemetry(False)
    tel.count("command.status")
    tel.on_event(ModelLoaded(instance="local", model="x", instance_id="x"))
    tel.flush()
    assert not tel.path.exists()


def test_on_counts_commands_and_event_kinds_without_names(tmp_path: Path, emulator: Emulator) -> None:
    config = _config(tmp_path, emulator.api_url, telemetry=True)
    for args in (["status"], ["status"], ["load", "qwen/qwen3-4b-2507"]):
        done = _cli("--config", str(config), *args)
        assert done.returncode == 0, done.stderr
    counts = read_counts()
    assert counts["command.status"] == 2
    assert counts["command.load"] == 1
    assert counts["event.load.started"] == 1 and counts["event.model.loaded"] >= 1
    text = telemetry_file().read_text(encoding="utf-8")
    data = json.loads(text)
    assert "Nothing is sent anywhere" in data["note"]
    # Aggregated counts only: no model key, URL, port or instance name is recorded.
    for secretish in ("qwen", "127.0.0.1", str(emulator.api_port), '"local"'):
        assert secretish not in text
    assert oct(telemetry_file().stat().st_mode & 0o777) == "0o600"


def test_verdicts_are_counted_by_category_and_merged_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    bus = EventBus()
    for _ in range(2):
        tel = Telemetry(True, path)
        unsubscribe = bus.subscribe(tel.on_event, *ALL_KINDS)
        bus.publish(VerdictGiven(instance="local", model="secret-model", category="not_loaded", ok=False))
        bus.publish(VerdictGiven(instance="local", model="secret-model", category="ready"))
        unsubscribe()
        tel.close()
    counts = read_counts(path)
    assert counts == {"event.validate.verdict": 4, "verdict.not_loaded": 2, "verdict.ready": 2}
    assert "secret-model" not in path.read_text(encoding="utf-8")


def test_a_corrupt_counts_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{not json", encoding="utf-8")
    tel = Telemetry(True, path)
    tel.count("command.status")
    tel.flush()
    assert read_counts(path) == {"command.status": 1}
    assert (tmp_path / "t.json.corrupt").read_text(encoding="utf-8") == "{not json"
