"""What both tray views share with the desktop: the menu dump tests read, the clipboard, opening a path."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.tray.menu import MenuItem

log = logging.getLogger(__name__)

MENU_DUMP_ENV = "LMSTUDIO_TRAY_MENU_DUMP"  # appindicator uses the icon name as its D-Bus object path


def menu_json(item: MenuItem) -> dict[str, Any]:
    return {
        "label": item.label,
        "enabled": item.enabled,
        "separator": item.separator,
        "checked": item.checked,
        "action": None if item.action is None else [item.action.kind.value, item.action.instance, item.action.target,
                                                     item.action.context_length],
        "children": [menu_json(c) for c in item.children],
    }


def dump_menu(items: tuple[MenuItem, ...]) -> None:
    """What the menu shows, as JSON in $LMSTUDIO_TRAY_MENU_DUMP, for desktop tests and bug reports
    (a GTK menu cannot be read back)."""
    dump = os.environ.get(MENU_DUMP_ENV)
    if dump:
        try:
            atomic_write(Path(dump), json.dumps([menu_json(i) for i in items], indent=1))
        except OSError as exc:
            log.debug("menu dump failed: %s", exc)


def copy_to_clipboard(text: str) -> bool:
    """Copy with whatever this OS has; False when nothing works (the caller shows the text instead)."""
    if sys.platform == "darwin":
        commands = [["pbcopy"]]
    elif sys.platform == "win32":
        commands = [["clip"]]
    else:
        commands = [["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"]]
        if not os.environ.get("WAYLAND_DISPLAY"):
            commands = commands[1:] + commands[:1]
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            continue
        try:
            # xclip keeps running to serve the selection: do not wait for it.
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            assert proc.stdin is not None
            proc.stdin.write(text.encode())
            proc.stdin.close()
            return True
        except OSError as exc:
            log.debug("%s failed: %s", cmd[0], exc)
    return False


def open_with_desktop(path: str) -> bool:
    try:
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]
            return True
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        if shutil.which(opener) is None:
            return False
        subprocess.Popen([opener, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        return True
    except OSError as exc:
        log.warning("could not open %s: %s", path, exc)
        return False
