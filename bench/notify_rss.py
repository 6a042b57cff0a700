"""Memory the notification backend adds to the tray: build the notifier and show one bubble.

Run under the test desktop:  scripts/with-desktop.sh .venv/bin/python bench/notify_rss.py [--runs N] [--json]

Each run is a fresh interpreter that first imports what the running tray already holds (asyncio,
gi/Gtk 3, jeepney for the Secret Service lookup, the core), then measures RSS, builds the notifier the
way the tray does (`make_service` -> `choose_notifier`, backend forced with LMSTUDIO_TRAY_NOTIFIER),
sends one bubble, waits for it to reach the daemon, and measures RSS again. The figure per backend is
the median delta; "log" (no bubble at all) is the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("log", "freedesktop", "desktop-notifier")

CHILD = r"""
import json, sys, time
import asyncio  # noqa: F401  the tray runs its core on an asyncio loop
try:
    import gi
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk  # noqa: F401  pystray's GTK backend
except Exception:
    pass
import jeepney, jeepney.io.blocking, jeepney.wrappers  # noqa: F401  core/secrets.py reads the keyring
from types import SimpleNamespace
from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.events import EventBus
from lmstudio_tray.notify.base import Message
import psutil

def rss() -> int:
    return int(psutil.Process().memory_info().rss)

before = rss()
from lmstudio_tray.notify.service import make_service
service = make_service(SimpleNamespace(bus=EventBus(), config=Config(), actions=None))
service.notifier.send(Message("LM Studio Tray", "notification memory bench"))
flush = getattr(service.notifier, "flush", None)
if flush is not None:
    flush()
else:
    time.sleep(1.0)  # desktop-notifier sends on its own loop thread
after = rss()
print(json.dumps({"backend": service.notifier.name, "before": before, "after": after,
                  "desktop_notifier": "desktop_notifier" in sys.modules, "dbus_fast": "dbus_fast" in sys.modules}))
service.notifier.close()
"""


def run_once(backend: str) -> dict[str, Any]:
    env = {**os.environ, "LMSTUDIO_TRAY_NOTIFIER": backend, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{backend}: child failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["backend"] != backend:
        raise SystemExit(f"asked for {backend}, got {result['backend']} (is a notification daemon running?)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        raise SystemExit("no session bus: run under scripts/with-desktop.sh")
    mib = 1024 * 1024
    report: dict[str, dict[str, Any]] = {}
    for backend in BACKENDS:
        runs = [run_once(backend) for _ in range(args.runs)]
        deltas = [(r["after"] - r["before"]) / mib for r in runs]
        report[backend] = {
            "added_mib": round(statistics.median(deltas), 2),
            "rss_after_mib": round(statistics.median(r["after"] / mib for r in runs), 1),
            "rss_before_mib": round(statistics.median(r["before"] / mib for r in runs), 1),
            "loads_desktop_notifier": any(r["desktop_notifier"] for r in runs),
            "loads_dbus_fast": any(r["dbus_fast"] for r in runs),
        }
    base = report["log"]["added_mib"]
    for entry in report.values():
        entry["vs_log_mib"] = round(entry["added_mib"] - base, 2)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"notifier built + one bubble sent, median of {args.runs} fresh processes (asyncio, Gtk, jeepney preloaded)")
    print(f"{'backend':<18}{'RSS before':>12}{'RSS after':>12}{'added':>10}{'vs log':>10}  desktop_notifier loaded")
    for name, e in report.items():
        print(f"{name:<18}{e['rss_before_mib']:>10.1f}Mi{e['rss_after_mib']:>10.1f}Mi{e['added_mib']:>8.2f}Mi"
              f"{e['vs_log_mib']:>8.2f}Mi  {e['loads_desktop_notifier']}")


if __name__ == "__main__":
    main()
