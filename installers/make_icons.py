"""Render the application icon from the tray's own icon code into `assets/app-icon/`.

    python installers/make_icons.py

The app icon is the tray's "ready" icon, so launcher, installer and tray look alike. Output: PNGs for the
freedesktop hicolor theme, `lmstudio-tray.ico` (Windows, several sizes) and `lmstudio-tray.icns` (macOS).
The files are committed; tests/installers/test_icons_current.py fails when they drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "app-icon"
PNG_SIZES = (48, 128, 256)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512)
STATE = "ready"


def render(out: Path = OUT) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from lmstudio_tray.tray.icons import render_icon

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size in PNG_SIZES:
        path = out / f"lmstudio-tray-{size}.png"
        render_icon(STATE, size).save(path, optimize=True)
        written.append(path)
    big = render_icon(STATE, 512)
    ico = out / "lmstudio-tray.ico"
    big.save(ico, sizes=[(s, s) for s in ICO_SIZES])
    icns = out / "lmstudio-tray.icns"
    big.save(icns, sizes=[(s, s) for s in ICNS_SIZES])
    written += [ico, icns]
    return written


if __name__ == "__main__":
    for p in render():
        print(p.relative_to(ROOT))
