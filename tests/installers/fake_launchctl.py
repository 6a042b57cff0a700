#!/usr/bin/env python3
"""A fake `launchctl` for the macOS autostart tests, put first on PATH.

Keeps launchd's state in $FAKE_LAUNCHCTL_STATE (loaded.json: label -> plist path, disabled.json: labels
the user switched off) and appends every call to calls.log. It behaves like the real one where the app
depends on it: `bootstrap` parses the plist (rejecting a broken one) and fails when the label is already
loaded, `bootout` fails for an unknown service, `print` exits 113 for an unknown service.
"""

from __future__ import annotations

import json
import os
import plistlib
import sys
from pathlib import Path

state = Path(os.environ["FAKE_LAUNCHCTL_STATE"])
state.mkdir(parents=True, exist_ok=True)
loaded_file, disabled_file = state / "loaded.json", state / "disabled.json"


def load(path: Path) -> dict[str, str] | list[str]:
    return json.loads(path.read_text()) if path.exists() else ({} if path == loaded_file else [])


args = sys.argv[1:]
with (state / "calls.log").open("a") as log:
    log.write(json.dumps(args) + "\n")
loaded = load(loaded_file)
disabled = load(disabled_file)
assert isinstance(loaded, dict) and isinstance(disabled, list)
cmd = args[0] if args else ""
uid_domain = f"gui/{os.getuid()}"

if cmd == "bootstrap":
    domain, plist = args[1], Path(args[2])
    if domain != uid_domain:
        sys.exit(f"Bootstrap failed: 125: Domain does not support specified action ({domain})")
    try:
        label = plistlib.loads(plist.read_bytes())["Label"]
    except Exception:
        print(f"Bootstrap failed: 5: Input/output error ({plist})", file=sys.stderr)
        sys.exit(5)
    if label in loaded or label in disabled:
        print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
        sys.exit(5)
    loaded[label] = str(plist)
elif cmd == "bootout":
    label = args[1].rsplit("/", 1)[-1]
    if label not in loaded:
        print("Boot-out failed: 3: No such process", file=sys.stderr)
        sys.exit(3)
    del loaded[label]
elif cmd == "print":
    label = args[1].rsplit("/", 1)[-1]
    if label not in loaded:
        print(f'Could not find service "{label}" in domain for user gui: {os.getuid()}', file=sys.stderr)
        sys.exit(113)
    print(f"{args[1]} = {{\n\tpath = {loaded[label]}\n\tstate = running\n}}")
elif cmd == "print-disabled":
    print("disabled services = {\n" + "".join(f'\t"{lab}" => disabled\n' for lab in disabled) + "}")
elif cmd == "enable":
    label = args[1].rsplit("/", 1)[-1]
    disabled = [d for d in disabled if d != label]
elif cmd == "disable":
    label = args[1].rsplit("/", 1)[-1]
    disabled = sorted({*disabled, label})
else:
    print(f"Unrecognized subcommand: {cmd}", file=sys.stderr)
    sys.exit(64)
loaded_file.write_text(json.dumps(loaded))
disabled_file.write_text(json.dumps(disabled))
