"""A real `opencode run` through `lmstudio-tray serve`: what the store records from it, and `stats` on it.

Reuses the end-to-end setup of tests/opencode (the pinned opencode binary, the plugin, the emulator as
LM Studio); `serve` attaches the analytics store, so this is the real hook and event path end to end.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from lmstudio_tray.cli import main
from tests.opencode.conftest import opencode_bin  # noqa: F401  (fixture used by e2e)
from tests.opencode.test_e2e import GEMMA, QWEN, Env, e2e  # noqa: F401  (e2e is a fixture)

pytestmark = pytest.mark.opencode


def rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def wait_rows(db: Path, sql: str, timeout: float = 20.0) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                found = rows(db, sql)
            except sqlite3.OperationalError:  # the tables are being created
                found = []
            if found:
                return found
        time.sleep(0.2)
    raise AssertionError(f"nothing recorded for {sql}")


def test_a_real_opencode_run_is_recorded(e2e: Env, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    ok = e2e.run("say hi")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    blocked = e2e.run("say hi", model=GEMMA)
    assert blocked.returncode == 1

    db = Path(e2e.env["XDG_DATA_HOME"]) / "lmstudio-tray" / "analytics.sqlite3"
    turns = wait_rows(db, f"SELECT * FROM turns WHERE model = '{QWEN}' AND error IS NULL AND output_tokens > 0")
    wait_rows(db, f"SELECT * FROM sessions WHERE model = '{GEMMA}' AND outcome = 'error'")
    build = [t for t in turns if t["agent"] == "build"]
    assert build, [dict(t) for t in turns]
    t = build[0]
    assert t["instance"] == "local" and t["provider"] == "lmstudio" and t["loaded_context"] == 8192
    assert t["input_tokens"] > 0 and t["duration_s"] > 0 and t["tokens_per_s"] > 0

    verdicts = rows(db, "SELECT model, category, ok FROM verdicts")
    assert (QWEN, "ready", 1) in [tuple(v) for v in verdicts]
    assert (GEMMA, "not_loaded", 0) in [tuple(v) for v in verdicts]  # JIT is off in this setup
    sessions = {r["model"]: r for r in rows(db, "SELECT * FROM sessions")}
    assert sessions[QWEN]["outcome"] == "ok"
    assert "LM Studio 'local'" in sessions[GEMMA]["last_error"]

    assert main(["stats", "--db", str(db), "--json", "--since", "1d"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    qwen = next(m for m in report["models"] if m["model"] == QWEN)
    gemma = next(m for m in report["models"] if m["model"] == GEMMA)
    assert qwen["turns"] >= 1 and qwen["session_success_rate"] == 1.0 and qwen["tokens_per_s"] > 0
    assert gemma["verdicts_blocked"] >= 1 and gemma["session_success_rate"] == 0.0
