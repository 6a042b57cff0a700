"""The analytics database: SQLite in WAL mode, numbered migrations, bounded size.

One writer (the batch writer's thread) commits whole batches in single transactions; a crash, even
kill -9, loses at most the batch in flight and never corrupts the file (WAL + synchronous=NORMAL is
atomic per transaction against process crashes). Readers open their own connections.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lmstudio_tray.core.support import paths

DB_NAME = "analytics.sqlite3"

# Each entry upgrades the schema by one version; PRAGMA user_version says how many ran.
# Never edit a released migration: append a new one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the tables
    """
    CREATE TABLE verdicts(id INTEGER PRIMARY KEY, ts REAL NOT NULL, instance TEXT, model TEXT, model_key TEXT,
                          category TEXT, ok INTEGER, latency_ms REAL, session_id TEXT);
    CREATE TABLE sessions(id INTEGER PRIMARY KEY, session_id TEXT NOT NULL UNIQUE, ts REAL NOT NULL,
                          last_seen REAL NOT NULL, instance TEXT, model TEXT, agent TEXT, outcome TEXT,
                          last_error TEXT, ended REAL);
    CREATE TABLE turns(id INTEGER PRIMARY KEY, ts REAL NOT NULL, message_id TEXT UNIQUE, session_id TEXT,
                       instance TEXT, model TEXT, agent TEXT, provider TEXT, input_tokens INTEGER,
                       output_tokens INTEGER, reasoning_tokens INTEGER, cache_read_tokens INTEGER,
                       duration_s REAL, tokens_per_s REAL, loaded_context INTEGER, error TEXT);
    CREATE TABLE session_events(id INTEGER PRIMARY KEY, ts REAL NOT NULL, session_id TEXT, instance TEXT,
                                model TEXT, kind TEXT, error_name TEXT, message TEXT);
    CREATE TABLE model_events(id INTEGER PRIMARY KEY, ts REAL NOT NULL, instance TEXT, model TEXT,
                              instance_id TEXT, kind TEXT, context_length INTEGER);
    CREATE TABLE loads(id INTEGER PRIMARY KEY, ts REAL NOT NULL, instance TEXT, model TEXT, instance_id TEXT,
                       size_bytes INTEGER, seconds REAL, ok INTEGER, reason TEXT, context_length INTEGER);
    CREATE TABLE health(id INTEGER PRIMARY KEY, ts REAL NOT NULL, instance TEXT, kind TEXT, old TEXT, new TEXT,
                        reason TEXT);
    CREATE TABLE resources(id INTEGER PRIMARY KEY, ts REAL NOT NULL, instance TEXT, rss_bytes INTEGER,
                           cpu_percent REAL, processes INTEGER, loaded_bytes INTEGER, loaded_models INTEGER);
    """,
    # 2: reports filter by time and group by model
    """
    CREATE INDEX verdicts_ts ON verdicts(ts);
    CREATE INDEX turns_ts ON turns(ts);
    CREATE INDEX sessions_last_seen ON sessions(last_seen);
    CREATE INDEX session_events_ts ON session_events(ts);
    CREATE INDEX model_events_ts ON model_events(ts);
    CREATE INDEX loads_ts ON loads(ts);
    CREATE INDEX health_ts ON health(ts);
    CREATE INDEX resources_ts ON resources(ts);
    """,
    # 3: `lmstudio-tray bench` results, one row per model and bench, comparable when suite and version match
    """
    CREATE TABLE bench_runs(id INTEGER PRIMARY KEY, ts REAL NOT NULL, instance TEXT, lmstudio_version TEXT,
                            suite TEXT, suite_version INTEGER, model TEXT, quantization TEXT,
                            context_length INTEGER, memory_bytes INTEGER, runs INTEGER, load_s REAL,
                            first_token_s REAL, first_token_low REAL, first_token_high REAL,
                            prompt_tps REAL, prompt_tps_low REAL, prompt_tps_high REAL,
                            gen_tps REAL, gen_tps_low REAL, gen_tps_high REAL, checks_passed INTEGER, checks INTEGER);
    CREATE INDEX bench_runs_ts ON bench_runs(ts);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = (
    "verdicts", "sessions", "turns", "session_events", "model_events", "loads", "health", "resources", "bench_runs",
)
# `sessions` ages by its last activity, the others by when the record happened
_AGE_COLUMN = {"sessions": "last_seen"}


class StoreError(Exception):
    """The analytics file cannot be used; the message names the file and what to do."""


def default_path() -> Path:
    """The analytics database in the platform's data dir (e.g. ~/.local/share/lmstudio-tray/)."""
    return paths.data_dir() / DB_NAME


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every user of the file needs; migrates a writable file first."""
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise StoreError(f"no analytics recorded yet ({path} does not exist)")
    try:
        conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        if readonly:
            conn.execute("PRAGMA query_only=1")
            if _check_version(conn, path) == 0:
                conn.close()
                raise StoreError(f"no analytics recorded yet ({path} is empty)")
            return conn
        # auto_vacuum must be chosen before the first table exists; it lets retention shrink the file
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode ({mode}); is the file on a network share?")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a usable analytics database ({exc}); move it aside (it is kept as it is) and "
            "lmstudio-tray starts a new one"
        ) from None
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer lmstudio-tray (schema {version}, this one knows {SCHEMA_VERSION}); "
            "upgrade lmstudio-tray, or move the file aside to start a new one"
        )
    return version


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Run the missing migrations, each in its own transaction with its version bump."""
    version = _check_version(conn, path)
    for number in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read inside the lock: another process may have migrated meanwhile
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) > number:
                conn.execute("COMMIT")
                continue
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


Row = tuple[str, Sequence[Any]]  # (INSERT/UPSERT statement, parameters)


class Store:
    """The writer's side: batches in, retention. Use from one thread only."""

    def __init__(self, path: Path | None = None, *, retention_days: float = 90.0, max_rows: int = 200_000) -> None:
        self.path = path or default_path()
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.conn = connect(self.path)
        self.batches = 0
        self.rows = 0

    def write(self, rows: Sequence[Row]) -> None:
        """All rows in one transaction: after a crash either the whole batch is there or none of it."""
        if not rows:
            return
        self.conn.execute("BEGIN")
        try:
            for sql, params in rows:
                self.conn.execute(sql, params)
            self.conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self.batches += 1
        self.rows += len(rows)

    def prune(self, now: float | None = None) -> int:
        """Apply retention (age, then rows per table); returns how many rows went."""
        cutoff = (now if now is not None else time.time()) - self.retention_days * 86400
        removed = 0
        self.conn.execute("BEGIN")
        try:
            for table in TABLES:
                col = _AGE_COLUMN.get(table, "ts")
                removed += self.conn.execute(f"DELETE FROM {table} WHERE {col} < ?", (cutoff,)).rowcount
                removed += self.conn.execute(
                    f"DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?", (self.max_rows,)
                ).rowcount
            self.conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        if removed:
            # executescript steps the pragma to the end; execute() would free a single page
            self.conn.executescript("PRAGMA incremental_vacuum;")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def counts(self) -> dict[str, int]:
        return {t: int(self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA optimize")
        self.conn.close()


@contextlib.contextmanager
def reading(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    """A read-only connection for reports (raises StoreError when nothing was recorded yet)."""
    conn = connect(path or default_path(), readonly=True)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()
