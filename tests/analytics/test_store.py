"""The store on recorded event streams: what each stream leaves in the database, migrations, retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from lmstudio_tray.analytics.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, connect, default_path, reading
from lmstudio_tray.core import events as ev
from tests.analytics import streams as s
from tests.analytics.helpers import BASE, ingest


def rows(path: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    with reading(path) as conn:
        return list(conn.execute(sql, args))


def test_the_store_lives_in_the_platform_data_dir(isolated_env: Path, tmp_path: Path) -> None:
    assert default_path() == tmp_path / "xdg" / "data" / "lmstudio-tray" / "analytics.sqlite3"
    store = Store()
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    assert default_path().exists()


def test_replay_of_a_real_opencode_run(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    t0 = time.time() - 60
    counts = ingest(db, s.opencode_run(BASE, "qwen/qwen3-4b-2507", t0), context={("local", "qwen/qwen3-4b-2507"): 8192})
    assert counts["turns"] == 2  # title + build; the repeated final update of the build turn is one turn
    assert counts["sessions"] == 1 and counts["session_events"] == 0
    build = rows(db, "SELECT * FROM turns WHERE message_id = 'msg_build'")[0]
    assert (build["instance"], build["model"], build["agent"], build["provider"]) == (
        "local", "qwen/qwen3-4b-2507", "build", "lmstudio")
    assert (build["input_tokens"], build["output_tokens"], build["error"]) == (10, 3, None)
    assert build["duration_s"] == pytest.approx(1.0, abs=0.01)
    assert build["tokens_per_s"] == pytest.approx(3.0, rel=0.02)
    assert build["loaded_context"] == 8192
    session = rows(db, "SELECT * FROM sessions")[0]
    assert (session["session_id"], session["outcome"], session["model"]) == ("ses_run1", "ok", "qwen/qwen3-4b-2507")
    assert session["ended"] == pytest.approx(t0 + 1.3, abs=0.01)


def test_failures_retries_and_aborts(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    t = time.time() - 100
    stream = [
        *s.failed_turn(BASE, "m", t, "s_err", "x1", s.api_error("No models loaded", BASE + "/chat/completions")),
        *s.retrying(BASE, "m", t, "s_retry"),
        *s.failed_turn(BASE, "m", t, "s_abort", "x2", {"name": "MessageAbortedError", "data": {}}),
    ]
    ingest(db, stream)
    outcomes = {r["session_id"]: (r["outcome"], r["last_error"]) for r in rows(db, "SELECT * FROM sessions")}
    assert outcomes["s_err"] == ("error", "No models loaded")
    assert outcomes["s_retry"] == ("retrying", "Cannot connect to API: Unable to connect.")
    assert outcomes["s_abort"][0] == "aborted"
    kinds = sorted((r["session_id"], r["kind"]) for r in rows(db, "SELECT * FROM session_events"))
    assert kinds == [("s_abort", "aborted"), ("s_err", "error"), *[("s_retry", "retry")] * 3]
    errors = {r["message_id"]: r["error"] for r in rows(db, "SELECT * FROM turns")}
    assert errors == {"x1": "APIError", "x2": "MessageAbortedError"}


def test_bus_events_become_rows(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    t = time.time()
    counts = ingest(db, bus=[
        (t, ev.VerdictGiven("local", model="qwen", model_key="qwen/qwen3-4b-2507", category="ready", ok=True,
                            latency_ms=0.42, session_id="s1")),
        (t, ev.VerdictGiven("", model="nope", category="offline", ok=False, latency_ms=0.3)),
        (t, ev.LoadFinished("local", model="qwen/qwen3-4b-2507", instance_id="qwen/qwen3-4b-2507", seconds=2.5,
                            size_bytes=2_500_000_000)),
        (t, ev.LoadFailed("local", model="google/gemma-3-12b", reason="out of memory", context_length=32768)),
        (t, ev.ModelLoaded("local", model="qwen/qwen3-4b-2507", instance_id="qwen/qwen3-4b-2507", context_length=8192)),
        (t, ev.ModelUnloaded("local", model="qwen/qwen3-4b-2507", instance_id="qwen/qwen3-4b-2507")),
        (t, ev.StateChanged("local", old="ready", new="offline")),
        (t, ev.InstanceOffline("local", url="http://x", reason="connection refused")),
        (t, ev.ServerStarted("local")),  # not something the store keeps
    ])
    assert counts == {"verdicts": 2, "sessions": 0, "turns": 0, "session_events": 0, "model_events": 2,
                      "loads": 2, "health": 2, "resources": 0, "bench_runs": 0}
    v = rows(db, "SELECT * FROM verdicts ORDER BY id")
    assert (v[0]["model_key"], v[0]["category"], v[0]["ok"], v[0]["latency_ms"]) == (
        "qwen/qwen3-4b-2507", "ready", 1, 0.42)
    assert (v[1]["instance"], v[1]["ok"]) == (None, 0)
    loads = rows(db, "SELECT * FROM loads ORDER BY id")
    assert (loads[0]["ok"], loads[0]["seconds"], loads[0]["size_bytes"]) == (1, 2.5, 2_500_000_000)
    assert (loads[1]["ok"], loads[1]["reason"], loads[1]["context_length"]) == (0, "out of memory", 32768)
    health = rows(db, "SELECT kind, old, new, reason FROM health ORDER BY id")
    assert [tuple(r) for r in health] == [("state", "ready", "offline", None), ("offline", None, None,
                                                                                 "connection refused")]


def test_a_version_1_file_is_migrated_with_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO verdicts(ts, model, category, ok) VALUES (1.0, 'kept', 'ready', 1)")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    store = Store(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"verdicts_ts", "turns_ts", "loads_ts", "bench_runs_ts"} <= indexes
    assert store.conn.execute("SELECT model FROM verdicts").fetchall() == [("kept",)]
    store.close()


def test_a_file_from_a_newer_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite3"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"newer lmstudio-tray \(schema 99.*upgrade"):
        Store(db)
    with pytest.raises(StoreError, match="newer"), reading(db):
        pass
    assert db.read_bytes() == before


def test_a_corrupt_file_is_reported_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "bad.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"not a usable analytics database.*move it aside"):
        connect(db)
    assert db.read_bytes() == b"this is not a database" * 100


def test_reports_before_anything_was_recorded_say_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no analytics recorded yet"), reading(tmp_path / "missing.sqlite3"):
        pass


def test_retention_by_age_and_by_rows(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    now = time.time()
    old = [(now - 10 * 86400, ev.VerdictGiven("local", model="old", category="ready")) for _ in range(30)]
    new = [(now - i, ev.VerdictGiven("local", model=f"new{i}", category="ready")) for i in range(30)]
    ingest(db, bus=[*old, *new])
    store = Store(db, retention_days=7, max_rows=1000)
    assert store.prune(now) == 30
    assert store.counts()["verdicts"] == 30
    store.max_rows = 10
    store.prune(now)
    kept = [r[0] for r in store.conn.execute("SELECT model FROM verdicts ORDER BY id")]
    assert kept == [f"new{i}" for i in range(20, 30)]  # the newest ten
    store.close()


def test_retention_bounds_the_file_size(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite3"
    now = time.time()
    ingest(db, bus=[(now, ev.VerdictGiven("local", model="m" * 200, category="ready")) for _ in range(20_000)])
    store = Store(db, max_rows=1000)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    big = db.stat().st_size
    store.prune(now)
    small = db.stat().st_size
    assert store.counts()["verdicts"] == 1000
    assert small < big / 5, (big, small)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()
