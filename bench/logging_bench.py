"""Cost of one log record with our JSON file handler and redaction, against a plain stdlib file handler.

    .venv/bin/python bench/logging_bench.py [--records 20000] [--secrets 20]

Measured in the same run, to a temporary directory (same disk, same process):
  1. baseline: `logging.FileHandler` with the stdlib text formatter, no redaction; and the rotating
     variant the tray used before (plain text, no redaction);
  2. ours: `configure_logging` (JSON lines, rotating file, redaction filter and final pass), with no
     registered secret and with --secrets registered tokens;
  3. a record carrying a request body with a prompt (the redactor rewrites it) and a Bearer header.
Prints microseconds per record (median of 5 rounds) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import logging.handlers
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmstudio_tray.core.support import logs as logging_setup

BODY = json.dumps({"model": "qwen/qwen3-4b-2507", "messages": [{"role": "user", "content": "hello " * 40}]})


def _time(records: int, emit: Callable[[int], None]) -> float:
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(records):
            emit(i)
        rounds.append((time.perf_counter() - start) / records * 1e6)
    return statistics.median(rounds)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--secrets", type=int, default=20)
    args = ap.parse_args()
    log = logging.getLogger("bench")
    root = logging.getLogger()
    with tempfile.TemporaryDirectory() as tmp:
        plain = logging.FileHandler(Path(tmp) / "plain.log", encoding="utf-8")
        plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(plain)
        root.setLevel(logging.INFO)
        base = _time(args.records, lambda i: log.info("poll %s took %.1f ms (%d models)", "local", 1.25, i))
        root.removeHandler(plain)
        plain.close()
        # What the tray wrote before: rotating, plain text, no redaction.
        rotating = logging.handlers.RotatingFileHandler(Path(tmp) / "rot.log", maxBytes=50_000_000, backupCount=3)
        rotating.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(rotating)
        rot = _time(args.records, lambda i: log.info("poll %s took %.1f ms (%d models)", "local", 1.25, i))
        root.removeHandler(rotating)
        rotating.close()

        # As a one-shot command runs by default: info to the file, warnings to the terminal.
        logging_setup.configure_logging("info", console=io.StringIO(), console_level="warning",
                                        file=Path(tmp) / "ours.log", max_bytes=50_000_000)
        ours = _time(args.records, lambda i: log.info("poll %s took %.1f ms (%d models)", "local", 1.25, i))
        for n in range(args.secrets):
            logging_setup.register_secret(f"sk-lm-benchSecret{n:04d}-abcdefghijklmnop")
        with_secrets = _time(args.records, lambda i: log.info("poll %s took %.1f ms (%d models)", "local", 1.25, i))
        body = _time(args.records // 4,
                     lambda i: log.info("request %s headers %s", BODY, "Authorization: Bearer sk-lm-xyz123456"))
    print(f"records per round: {args.records} (5 rounds, median)")
    print(f"baseline stdlib text file handler : {base:7.1f} us/record")
    print(f"stdlib rotating text handler      : {rot:7.1f} us/record  ({rot / base:.1f}x baseline)")
    print(f"ours, JSON + redaction            : {ours:7.1f} us/record  ({ours / base:.1f}x baseline)")
    print(f"ours with {args.secrets:3d} registered secrets  : {with_secrets:7.1f} us/record  "
          f"({with_secrets / base:.1f}x baseline)")
    print(f"ours, request body + Bearer header: {body:7.1f} us/record  ({body / base:.1f}x baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
