"""Smoke-test a built bundle: it starts, prints its version, and reports `status --json` from the LM
Studio emulator it carries. Standard library only: CI runs it on each OS right after PyInstaller.

    python installers/smoke_test.py PATH/TO/lmstudio-tray[.exe] [--info-plist PATH] [--expect-version V]

Exit 0 when every check passed; otherwise the failing check is printed.
"""

from __future__ import annotations

import argparse
import json
import plistlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "qwen/qwen3-4b-2507"  # in the emulator's default catalog


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


def run(exe: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="smoke-test an lmstudio-tray bundle")
    parser.add_argument("exe")
    parser.add_argument("--info-plist", type=Path, help="macOS: the .app's Info.plist to check")
    parser.add_argument("--expect-version", help="version the bundle must report")
    args = parser.parse_args(argv)
    exe = str(Path(args.exe).resolve())

    started = time.perf_counter()
    r = run(exe, "--version")
    elapsed = time.perf_counter() - started
    check(r.returncode == 0 and re.fullmatch(r"lmstudio-tray \S+", r.stdout.strip()) is not None,
          f"--version prints the version ({r.stdout.strip()!r}, {elapsed:.2f} s)")
    if args.expect_version:
        check(r.stdout.strip() == f"lmstudio-tray {args.expect_version}", f"version is {args.expect_version}")

    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        emu = subprocess.Popen([exe, "emulator", "--ready-file", str(ready), "--load", MODEL],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not ready.exists() and emu.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.1)
            check(ready.exists(), f"`emulator` starts (exit code {emu.poll()})")
            url = json.loads(ready.read_text())["api_url"]
            cfg = Path(tmp) / "config.toml"
            cfg.write_text(f'[[instances]]\nname = "local"\nurl = "{url}"\n', encoding="utf-8")
            r = run(exe, "--config", str(cfg), "status", "--json")
            check(r.returncode == 0, f"status --json exits 0 (stderr: {r.stderr.strip()[-500:]!r})")
            inst = json.loads(r.stdout)["instances"][0]
            check(inst["state"] == "ready", f"the instance is ready ({inst['state']})")
            loaded = [m["key"] for m in inst["models"] if m["loaded"]]
            check(loaded == [MODEL], f"status lists the loaded model ({loaded})")
        finally:
            emu.terminate()
            try:
                emu.wait(20)
            except subprocess.TimeoutExpired:
                emu.kill()
            if emu.stderr:
                emu.stderr.close()

    r = run(exe, "autostart", "status", "--json")
    check(r.returncode == 0 and json.loads(r.stdout)["enabled"] is False, "autostart is off after installation")

    if args.info_plist:
        info = plistlib.loads(args.info_plist.read_bytes())
        check(info.get("LSUIElement") is True, "Info.plist has LSUIElement (no Dock icon)")
        check(info.get("CFBundleIdentifier") == "io.github.lmstudio-tray", "Info.plist has the bundle id")
        check(bool(info.get("CFBundleIconFile")), "Info.plist names an icon")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
