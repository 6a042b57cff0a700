"""`doctor --export`: the zip holds versions, redacted config, logs, status and stats, and no secret at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.endpoint_file import EndpointInfo, write_endpoint
from lmstudio_tray.diagnostics.export import ExportError, find_secrets, write_zip
from lmstudio_tray.emulator import Emulator

KEYRING_TOKEN = "sk-lm-KeyringPlanted-11112222333344445555"
ENV_TOKEN = "sk-lm-EnvPlanted-aaaabbbbccccddddeeee"
LOG_TOKEN = "sk-lm-LogOnlyPlanted-99998888777766665555"
URL_PASSWORD = "UrlPassw0rdPlanted77"
ENDPOINT_TOKEN = "EndpointTokenPlanted-0f9e8d7c6b5a4f3e2d1c"
PROMPT = "my confidential merger plan for ACME-Globex"
ALL_SECRETS = (KEYRING_TOKEN, ENV_TOKEN, LOG_TOKEN, URL_PASSWORD, ENDPOINT_TOKEN, PROMPT, "ACME-Globex")
PLAIN_KEYRING = "keyrings.alt.file.PlaintextKeyring"


def _members(archive: Path) -> dict[str, str]:
    with zipfile.ZipFile(archive) as zf:
        return {i.filename.split("/", 1)[1]: zf.read(i).decode("utf-8") for i in zf.infolist()}


def _plant(tmp_path: Path, emulator: Emulator) -> tuple[Path, dict[str, str]]:
    """Tokens everywhere a careless export could pick them up: keyring, env, logs, config, discovery file."""
    from keyrings.alt.file import PlaintextKeyring

    PlaintextKeyring().set_password("lmstudio-tray", "local", KEYRING_TOKEN)  # same file the subprocess reads
    port = emulator.api_port
    config = tmp_path / "config.toml"
    config.write_text(
        f"# local server; its token is {KEYRING_TOKEN} (kept in the keyring, noted here by mistake)\n"
        f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n'
        f'[[instances]]\nname = "other"\nurl = "http://admin:{URL_PASSWORD}@127.0.0.1:{port}"\n'
        f"# api_key = {ENV_TOKEN}\n",
        encoding="utf-8",
    )
    log_dir = paths.log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    # An old plain-text log written before redaction existed, and a JSON line with a request body.
    (log_dir / "tray.log").write_text(
        f"2026-01-01 INFO sent Authorization: Bearer {LOG_TOKEN}\n"
        f"2026-01-01 DEBUG token for local is {KEYRING_TOKEN}\n", encoding="utf-8")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]})
    (log_dir / "lmstudio-tray.log").write_text(
        json.dumps({"ts": "2026-01-01T00:00:00+00:00", "level": "debug", "msg": f"request {body}"}) + "\n"
        + json.dumps({"level": "info", "msg": f"env token {ENV_TOKEN}"}) + "\n", encoding="utf-8")
    write_endpoint(EndpointInfo(url="http://127.0.0.1:9", token=ENDPOINT_TOKEN, pid=os.getpid()))
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": PLAIN_KEYRING, "LMSTUDIO_TRAY_TOKEN_OTHER": ENV_TOKEN}
    return config, env


def _record_turns() -> None:
    from lmstudio_tray.analytics.records import forwarded_rows
    from lmstudio_tray.analytics.store import Store

    store = Store()
    start = time.time() - 600
    info = {"id": "m1", "role": "assistant", "modelID": "qwen/qwen3-4b-2507",
            "time": {"created": start * 1000, "completed": (start + 2) * 1000},
            "tokens": {"input": 100, "output": 80, "reasoning": 0, "cache": {"read": 0}}}
    store.write(forwarded_rows(start, {"type": "message.updated", "session_id": "s1", "instance": "local",
                                       "model": "qwen/qwen3-4b-2507", "properties": {"info": info}}))
    store.close()


def test_export_contains_everything_useful_and_no_planted_secret(tmp_path: Path, emulator: Emulator) -> None:
    config, env = _plant(tmp_path, emulator)
    analytics = True
    try:
        _record_turns()
    except ImportError:
        analytics = False
    target = tmp_path / "out" / "debug.zip"
    done = subprocess.run(
        [sys.executable, "-m", "lmstudio_tray", "--log-level", "debug", "--config", str(config), "doctor",
         "--export", str(target)], capture_output=True, text=True, timeout=120, env=env)
    assert target.exists(), done.stderr
    assert f"Debug export written to {target}" in done.stdout
    assert oct(target.stat().st_mode & 0o777) == "0o600"

    # Every byte of every member, compressed or not, is free of every planted secret.
    members = _members(target)
    for name, text in members.items():
        for secret in ALL_SECRETS:
            assert secret not in text, f"{secret!r} leaked into {name}"
    assert find_secrets(target, ALL_SECRETS) == []
    raw = target.read_bytes()
    assert not any(s.encode() in raw for s in ALL_SECRETS)
    for log in ("lmstudio-tray.log", "tray.log"):  # the sources really had them
        assert any(s in (paths.log_dir() / log).read_text(encoding="utf-8") for s in ALL_SECRETS)

    assert {"README.txt", "versions.json", "doctor.json", "config.toml", "status.json"} <= set(members)
    assert {"logs/lmstudio-tray.log", "logs/tray.log"} <= set(members)
    versions = json.loads(members["versions.json"])
    assert versions["lmstudio_tray"] and versions["python"] == sys.version.split()[0]
    assert versions["lmstudio"]["local"]["api"] == "v1"
    assert [c["name"] for c in json.loads(members["doctor.json"])["checks"]][:3] == ["config", "keyring", "lms"]
    status = json.loads(members["status.json"])
    assert {i["name"]: i["state"] for i in status["instances"]}["local"] in ("idle", "ready")
    cfg = members["config.toml"]
    assert f"http://admin:[redacted]@127.0.0.1:{emulator.api_port}" in cfg and 'name = "other"' in cfg
    assert "[redacted]" in members["logs/tray.log"] and "Bearer [redacted]" in members["logs/tray.log"]
    assert "[prompt redacted]" in members["logs/lmstudio-tray.log"]
    if analytics:
        stats = json.loads(members["stats.json"])
        assert stats["available"] and stats["totals"]["turns"] == 1
    else:
        assert "stats-not-included.txt" in members


def test_without_analytics_data_the_zip_says_why(tmp_path: Path, emulator: Emulator) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n', encoding="utf-8")
    target = tmp_path / "d.zip"
    subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(config), "doctor", "--export",
                    str(target)], capture_output=True, text=True, timeout=120,
                   env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    members = _members(target)
    assert "stats.json" not in members
    assert members["stats-not-included.txt"].startswith("No usage statistics are included: ")
    assert "stats-not-included.txt" in members["README.txt"]


def test_a_member_with_a_secret_is_never_written(tmp_path: Path) -> None:
    tmp_path = tmp_path / "exports"
    target = tmp_path / "x.zip"
    with pytest.raises(ExportError, match=r"secret survived in lmstudio-tray-debug/notes\.txt"):
        write_zip(target, {"notes.txt": f"oops {KEYRING_TOKEN}", "ok.txt": "fine"}, [KEYRING_TOKEN])
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no half file, no temp file


def test_export_to_an_unwritable_place_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="choose another path"):
        write_zip(blocker / "sub" / "x.zip", {"a.txt": "a"}, [])
