"""What the three PyInstaller specs share: the entry script, hidden imports and data files.

Imported by `installers/<os>/lmstudio-tray.spec` (PyInstaller runs spec files as Python with SPECPATH
set). Kept out of the package: nothing at runtime needs it.
"""

from __future__ import annotations

import re
from pathlib import Path

from PyInstaller.utils.hooks import collect_submodules  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "lmstudio-tray"
DISPLAY_NAME = "LM Studio Tray"
BUNDLE_ID = "io.github.lmstudio-tray"
ENTRY = str(ROOT / "lmstudio_tray" / "__main__.py")
ICONS = ROOT / "assets" / "app-icon"
_version = re.search(r'__version__ = "([^"]+)"', (ROOT / "lmstudio_tray" / "__init__.py").read_text(encoding="utf-8"))
VERSION = _version.group(1) if _version else "0.0.0"

# The CLI imports each command module by name, and uvicorn/keyring pick their parts at runtime: the
# analysis cannot see these imports, so they are listed.
HIDDEN_IMPORTS = [
    *collect_submodules("lmstudio_tray"),
    *collect_submodules("uvicorn"),
    *collect_submodules("keyring.backends"),
]

# pystray picks its backend module by name at import time; importing pystray to list them needs a display,
# so they are spelled out per OS.
PYSTRAY_BACKENDS = {
    "linux": ["pystray._base", "pystray._xorg", "pystray._gtk", "pystray._appindicator", "pystray._dummy",
              "pystray._util", "pystray._util.gtk", "pystray._util.notify_dbus"],
    "darwin": ["pystray._base", "pystray._darwin", "pystray._dummy", "pystray._util"],
    "win32": ["pystray._base", "pystray._win32", "pystray._dummy", "pystray._util", "pystray._util.win32"],
}


def hidden_imports(platform: str) -> list[str]:
    return [*HIDDEN_IMPORTS, *PYSTRAY_BACKENDS[platform]]


# Modules the app never uses but that get pulled in by optional imports of its dependencies.
EXCLUDES = ["tkinter", "pytest", "hypothesis", "mypy", "IPython", "matplotlib", "numpy", "PyInstaller", "yaml",
            "_pytest", "coverage", "ruff", "setuptools", "pip"]

# PyGObject's hook collects every GTK icon theme, theme and translation it can find (40 MB): the tray's
# menu is drawn by the desktop's tray host, so the bundle keeps only the basics.
GI_HOOKSCONFIG = {"gi": {"icons": ["hicolor"], "themes": ["Adwaita"], "languages": ["en_US"]}}

# (source, destination inside the bundle): icons.py looks for `lmstudio_tray/assets`, the OpenCode
# installer for the plugin file next to its module.
DATAS = [
    (str(ROOT / "assets" / "palette.json"), "lmstudio_tray/assets"),
    (str(ROOT / "assets" / "glyphs.json"), "lmstudio_tray/assets"),
    (str(ROOT / "lmstudio_tray" / "opencode" / "lmstudio-tray.ts"), "lmstudio_tray/opencode"),
    (str(ROOT / "lmstudio_tray" / "py.typed"), "lmstudio_tray"),
]
