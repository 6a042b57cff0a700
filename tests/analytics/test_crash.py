"""kill -9 in the middle of writing: the file stays intact and only the unfinished batch is missing."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmstudio_tray.analytics.store import Store

# The child records an endless numbered stream through the real BatchWriter and prints how many items
# were committed so far; the parent kills it with SIGKILL while it is busy writing.
CHILD = r"""
import sys, time
from pathlib import Path
from lmstudio_tray.analytics.store import Store
from lmstudio_tray.analytics.writer import BatchWriter
from lmstudio_tray.core.events import VerdictGiven

store = Store(Path(sys.argv[1]))
start = store.conn.execute("SELECT count(*) FROM verdicts").fetchone()[0]
writer = BatchWriter(store, flush_interval=0.001, batch_size=300)
writer.start()
seq = start
while True:
    for _ in range(300):
        writer.put(VerdictGiven("local", model="m", category="ready", latency_ms=float(seq)))
        seq += 1
    print(start + writer.written_items, flush=True)
    while writer.pending > 3000:
        time.sleep(0.0005)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX; Windows' TerminateProcess is the same idea")
def test_kill_9_mid_write_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    db = tmp_path / "analytics.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(5)
    for round_ in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None
        committed = 0
        target = 5_000 * (round_ + 1) + rng.randint(0, 3000)
        deadline = time.monotonic() + 120
        while committed < target and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            committed = int(line)
        time.sleep(rng.uniform(0, 0.05))  # land somewhere inside a batch, not right after a report
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert committed >= target, "the child did not write enough before the deadline"
        assert (tmp_path / "analytics.sqlite3-wal").exists(), "killed with the WAL still in use"

        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [int(r[0]) for r in conn.execute("SELECT latency_ms FROM verdicts ORDER BY id")]
        conn.close()
        # every batch reported committed is there, and what is there is a gap-free prefix of the stream:
        # no half batch, no lost batch in the middle
        assert len(seqs) >= committed
        assert seqs == list(range(len(seqs)))

    store = Store(db)  # and it opens for writing again
    assert store.counts()["verdicts"] == len(seqs)
    store.close()
