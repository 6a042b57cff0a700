"""Looking at the X screen from tests: tray icon windows, popup menus, pixels, dunst history; stopping
the processes a desktop test started."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (the way a session ends a tray), then SIGKILL after `grace` seconds; nothing if it has ended."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)
        last = predicate()
    return last


def tray_icons() -> dict[int, tuple[int, int, int, int]]:
    """Viewable windows carrying _XEMBED_INFO (docked tray icons): id -> absolute (x, y, w, h)."""
    from Xlib import display

    d = display.Display()
    out: dict[int, tuple[int, int, int, int]] = {}
    try:
        xembed = d.intern_atom("_XEMBED_INFO")
        root = d.screen().root

        def walk(win: Any) -> None:
            for child in win.query_tree().children:
                try:
                    if child.get_full_property(xembed, 0) is not None and child.get_attributes().map_state == 2:
                        g = child.get_geometry()
                        t = child.translate_coords(root, 0, 0)
                        out[child.id] = (-t.x, -t.y, g.width, g.height)
                except Exception:
                    pass
                walk(child)

        walk(root)
    finally:
        d.close()
    return out


def popups() -> dict[int, tuple[int, int, int, int]]:
    """Mapped override-redirect top-level windows bigger than 40x40: open menus."""
    from Xlib import display

    d = display.Display()
    out: dict[int, tuple[int, int, int, int]] = {}
    try:
        for child in d.screen().root.query_tree().children:
            try:
                attrs = child.get_attributes()
                if attrs.map_state == 2 and attrs.override_redirect:
                    g = child.get_geometry()
                    if g.width > 40 and g.height > 40:
                        out[child.id] = (g.x, g.y, g.width, g.height)
            except Exception:
                pass
    finally:
        d.close()
    return out


def grab(box: tuple[int, int, int, int]) -> Any:
    from PIL import ImageGrab

    x, y, w, h = box
    return ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ["DISPLAY"]).convert("RGB")


def colour_share(box: tuple[int, int, int, int], rgb: tuple[int, int, int], tol: int = 40) -> float:
    """Fraction of pixels in `box` within `tol` of `rgb` (robust to the tray scaling the icon)."""
    img = grab(box)
    pixels = list(img.get_flattened_data()) if hasattr(img, "get_flattened_data") else list(img.getdata())
    hits = sum(1 for p in pixels if all(abs(a - b) <= tol for a, b in zip(p, rgb, strict=True)))
    return hits / max(1, len(pixels))


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10)


def dunst_history() -> list[dict[str, str]]:
    """Every notification dunst has shown (bubbles are closed first so they reach the history)."""
    subprocess.run(["dunstctl", "close-all"], check=True, timeout=10)
    time.sleep(0.1)
    raw = subprocess.run(["dunstctl", "history"], check=True, capture_output=True, text=True, timeout=10).stdout
    data = json.loads(raw)["data"][0]
    return [{k: v["data"] for k, v in entry.items() if isinstance(v, dict) and "data" in v} for entry in data]


def dunst_displayed() -> int:
    out = subprocess.run(["dunstctl", "count", "displayed"], capture_output=True, text=True, timeout=10).stdout
    return int(out.strip() or 0)
