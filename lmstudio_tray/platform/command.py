"""The command line that starts the app the way it is installed (for autostart entries and launchers)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SCRIPT_NAME = "lmstudio-tray"
RUN_ARGS = ("run",)  # the tray; spelled out so the entry still means "tray" if the default command changes


def launch_command(
    *,
    executable: str | None = None,
    frozen: bool | None = None,
    platform: str | None = None,
) -> list[str]:
    """argv that starts the tray: the frozen bundle, the installed console script, or `python -m`.

    The console script is looked for next to the interpreter (a venv's `bin/`, pipx's and uv's tool venvs,
    Windows' `Scripts\\`), because autostart runs with a minimal PATH on every OS.
    """
    exe = Path(executable or sys.executable)
    is_frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    plat = platform or sys.platform
    if is_frozen:
        if plat.startswith("win") and exe.name.lower() == f"{SCRIPT_NAME}.exe":
            # The Windows bundle has a console program for the CLI and a windowless twin for the tray.
            gui_exe = exe.with_name(f"{SCRIPT_NAME}w.exe")
            if gui_exe.is_file():
                return [str(gui_exe), *RUN_ARGS]
        return [str(exe), *RUN_ARGS]
    if plat.startswith("win"):
        # The pip launcher `lmstudio-tray.exe` is a console program and would leave a console window
        # open after every login; pythonw.exe runs the same code without one.
        gui = exe.with_name("pythonw.exe")
        if gui.is_file():
            return [str(gui), "-m", "lmstudio_tray", *RUN_ARGS]
        script = exe.parent / f"{SCRIPT_NAME}.exe"
        if script.is_file():
            return [str(script), *RUN_ARGS]
        return [str(exe), "-m", "lmstudio_tray", *RUN_ARGS]
    script = exe.parent / SCRIPT_NAME
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), *RUN_ARGS]
    return [str(exe), "-m", "lmstudio_tray", *RUN_ARGS]
