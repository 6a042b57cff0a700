"""The analytics store under a full disk and a kill -9, with a real `serve` writing it.

What must hold: the endpoint keeps answering verdicts while the store cannot write (recording is not on
the hook path), the failure is logged once per batch in words, recording resumes by itself once there is
space again, and the SQLite file passes `PRAGMA integrity_check` after every fault, with the rows written
before the fault still there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstudio_tray.emulator import Emulator
from tests.hardening.helpers import ServeProcess, child_env, start_serve, wait_for, write_config

MODEL = "qwen/qwen3-4b-2507"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs at `path`: a real "no space left on device" for whatever writes there."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test ({mount.stderr.strip()}); "
                    "this test needs root or CAP_SYS_ADMIN (the CI container runs as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a filler file until the file system is full."""
    filler = directory / "filler.bin"
    chunk = b"\0" * 65536
    with contextlib.suppress(OSError), filler.open("wb") as fh:
        while True:
            fh.write(chunk)
            fh.flush()
    with contextlib.suppress(OSError), filler.open("ab") as fh:  # the last partial block
        while True:
            fh.write(b"\0" * 512)
            fh.flush()
    return filler


def session_errors(tag: str, n: int) -> dict[str, Any]:
    message = f"{tag} " + "x" * 280
    return {"events": [{"type": "session.error", "properties": {
        "sessionID": f"{tag}-{uuid.uuid4().hex}", "error": {"name": "APIError", "data": {"message": message}}}}
        for _ in range(n)]}


def rows_with(db: Path, tag: str) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM session_events WHERE message LIKE ?",
                                (f"{tag} %",)).fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


class Client:
    def __init__(self, serve: ServeProcess, emu: Emulator) -> None:
        info = serve.wait_ready()
        self.http = httpx.Client(base_url=info["url"], headers={"authorization": f"Bearer {info['token']}"},
                                 timeout=30)
        self.emu = emu

    def validate(self) -> dict[str, Any]:
        r = self.http.post("/v1/validate", json={"model": MODEL, "base_url": self.emu.api_url + "/v1"})
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def events(self, tag: str, n: int = 200) -> None:
        r = self.http.post("/v1/events", json=session_errors(tag, n))
        assert r.status_code == 200 and r.json()["accepted"] == n, r.text


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_while_writing_the_store(tmp_path: Path, emulator: Emulator) -> None:
    emulator.load(MODEL)
    env = child_env()
    data = small_tmpfs(tmp_path / "data", "4m")
    with data as data_dir:
        env["XDG_DATA_HOME"] = str(data_dir)
        db = data_dir / "lmstudio-tray" / "analytics.sqlite3"
        serve = start_serve(tmp_path, env, write_config(tmp_path / "config.toml", emulator.api_url))
        try:
            client = Client(serve, emulator)
            wait_for(lambda: client.validate()["ok"])
            client.events("before", 50)
            wait_for(lambda: rows_with(db, "before") == 50)
            filler = fill(data_dir)
            for _ in range(15):
                client.events("during")
                assert client.validate()["ok"] is True, "verdicts do not depend on the store"
            wait_for(lambda: "was not written" in serve.stderr, 30)
            assert "Traceback" not in serve.stderr.split("was not written", 1)[0][-2000:]
            assert serve.proc.poll() is None
            filler.unlink()
            client.events("after", 20)
            wait_for(lambda: rows_with(db, "after") == 20, 30)
            assert client.validate()["ok"] is True
        finally:
            assert serve.stop() == 0, serve.stderr[-3000:]
        assert integrity(db) == "ok"
        assert rows_with(db, "before") == 50, "rows written before the disk filled up are kept"


def test_store_survives_kill_9_during_writes(tmp_path: Path, emulator: Emulator) -> None:
    emulator.load(MODEL)
    env = child_env()
    db = Path(env["XDG_DATA_HOME"]) / "lmstudio-tray" / "analytics.sqlite3"
    config = write_config(tmp_path / "config.toml", emulator.api_url)
    serve = start_serve(tmp_path, env, config, name="first")
    client = Client(serve, emulator)
    client.events("before", 100)
    wait_for(lambda: rows_with(db, "before") == 100)
    stop = threading.Event()

    def traffic() -> None:
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            while not stop.is_set():
                client.events("busy", 100)
                client.validate()

    worker = threading.Thread(target=traffic)
    worker.start()
    wait_for(lambda: rows_with(db, "busy") >= 300, 30)
    serve.proc.send_signal(signal.SIGKILL)  # most likely in the middle of a batch transaction
    serve.proc.wait(20)
    stop.set()
    worker.join(30)
    assert integrity(db) == "ok"
    assert rows_with(db, "before") == 100
    # committed batches are all still there; what sat in the writer's queue at the kill is gone (in memory)
    assert rows_with(db, "busy") >= 300
    again = start_serve(tmp_path, env, config, name="second")
    try:
        client = Client(again, emulator)
        client.events("restarted", 10)
        wait_for(lambda: rows_with(db, "restarted") == 10, 30)
    finally:
        assert again.stop() == 0
    assert integrity(db) == "ok"
