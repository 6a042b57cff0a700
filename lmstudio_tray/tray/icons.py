"""Tray icons drawn with Pillow: a disc in the state colour with a white glyph, plus a progress ring.

Sources live in `assets/` (palette.json, glyphs.json: unit-square vectors), so the look changes without
touching code. Drawing happens at 4x and is downsampled, and glyph edges are snapped to the target
pixel grid, which keeps 16 px icons sharp instead of smeared.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lmstudio_tray.core.models import InstanceState, StatusReport

log = logging.getLogger(__name__)

ASSETS_ENV = "LMSTUDIO_TRAY_ASSETS"
SUPERSAMPLE = 4
PROGRESS_STEPS = 24  # the ring moves in 15° steps: fewer redraws, and finer is invisible at 22 px

# Which state the single tray icon shows when instances disagree: the one needing attention first.
_PRIORITY = (
    InstanceState.LOADING,
    InstanceState.ERROR,
    InstanceState.AUTH_FAILED,
    InstanceState.READY,
    InstanceState.IDLE,
    InstanceState.OFFLINE,
)

# Used only when the asset files cannot be found (a broken install); the icon must still say something.
_FALLBACK_FILL = {
    "offline": "#7C828C",
    "auth_failed": "#D97706",
    "idle": "#0284C7",
    "ready": "#16A34A",
    "loading": "#7C3AED",
    "error": "#DC2626",
}


def assets_dir() -> Path | None:
    """Where palette.json and glyphs.json are: $LMSTUDIO_TRAY_ASSETS, the package, or the checkout."""
    here = Path(__file__).resolve()
    candidates = [
        os.environ.get(ASSETS_ENV),
        here.parent.parent / "assets",  # lmstudio_tray/assets in a built wheel
        here.parent.parent.parent / "assets",  # the repository root in a source checkout
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "palette.json").is_file():
            return Path(candidate)
    return None


@lru_cache(maxsize=1)
def load_assets() -> tuple[dict[str, dict[str, str]], dict[str, list[dict[str, Any]]]]:
    where = assets_dir()
    if where is None:
        log.warning("icon assets not found; drawing plain discs (reinstall lmstudio-tray to fix)")
        return {k: {"fill": v, "glyph": "#FFFFFF", "track": "#D0D0D0"} for k, v in _FALLBACK_FILL.items()}, {}
    palette = json.loads((where / "palette.json").read_text(encoding="utf-8"))
    glyphs = json.loads((where / "glyphs.json").read_text(encoding="utf-8"))
    palette.pop("_comment", None)
    glyphs.pop("_comment", None)
    return palette, glyphs


def hex_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def state_colour(state: InstanceState | str) -> tuple[int, int, int]:
    palette, _ = load_assets()
    return hex_rgb(palette[InstanceState(state).value]["fill"])


def aggregate(report: StatusReport) -> tuple[InstanceState, float | None]:
    """The state the icon shows for all instances, and the progress of the slowest running load."""
    states = {snap.state for snap in report.instances}
    state = next((s for s in _PRIORITY if s in states), InstanceState.OFFLINE)
    progress: float | None = None
    if state is InstanceState.LOADING:
        figures = [load.progress for snap in report.instances for load in snap.loads if load.progress is not None]
        progress = min(figures) if figures else None
    return state, progress


def quantize(progress: float | None) -> float | None:
    if progress is None:
        return None
    return math.floor(max(0.0, min(1.0, progress)) * PROGRESS_STEPS) / PROGRESS_STEPS


def render_icon(state: InstanceState | str, size: int = 64, progress: float | None = None) -> Image.Image:
    """An RGBA icon of `size` px. `progress` (0..1) only matters for LOADING; None = indeterminate."""
    state = InstanceState(state)
    step = quantize(progress) if state is InstanceState.LOADING else None
    return _render(state.value, size, step).copy()


@lru_cache(maxsize=128)
def _render(state: str, size: int, progress: float | None) -> Image.Image:
    palette, glyphs = load_assets()
    colours = palette[state]
    big = size * SUPERSAMPLE
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    fill = hex_rgb(colours["fill"])
    glyph_colour = hex_rgb(colours.get("glyph", "#FFFFFF"))
    margin = 0
    if state == InstanceState.LOADING.value:
        # The ring takes the outer band; the disc shrinks so the two never touch.
        ring = max(SUPERSAMPLE * 2, round(big * 0.12))
        track = hex_rgb(colours.get("track", "#D0D0D0"))
        draw.ellipse((0, 0, big - 1, big - 1), fill=track)
        if progress is None:
            start, end = -90.0, 0.0  # a quarter: "busy, amount unknown"
        else:
            start, end = -90.0, -90.0 + 360.0 * progress
        if end > start:
            draw.pieslice((0, 0, big - 1, big - 1), start, end, fill=fill)
        inner = ring
        draw.ellipse((inner, inner, big - 1 - inner, big - 1 - inner), fill=(0, 0, 0, 0))
        margin = inner + max(SUPERSAMPLE, round(big * 0.04))
    draw.ellipse((margin, margin, big - 1 - margin, big - 1 - margin), fill=fill)
    _draw_glyph(draw, glyphs.get(state, []), big, margin, glyph_colour)
    # BOX = area average: with grid-snapped glyphs it gives exact colours and no ringing halo.
    return img.resize((size, size), Image.Resampling.BOX)


def _snap(value: float, big: int) -> int:
    # Round to whole target pixels (multiples of SUPERSAMPLE) so edges land on the pixel grid.
    return round(value * big / SUPERSAMPLE) * SUPERSAMPLE


def _draw_glyph(
    draw: ImageDraw.ImageDraw, shapes: Iterable[dict[str, Any]], big: int, margin: int, colour: tuple[int, int, int]
) -> None:
    # Glyphs are defined for the full square; a smaller disc (loading) scales them about the centre.
    scale = (big - 2 * margin) / big

    def pt(v: float) -> float:
        return (0.5 + (v - 0.5) * scale) * big / big

    for shape in shapes:
        kind = shape.get("shape")
        if kind == "rect":
            x0, y0, x1, y1 = (pt(v) for v in shape["box"])
            box = (_snap(x0, big), _snap(y0, big), _snap(x1, big) - 1, _snap(y1, big) - 1)
            draw.rectangle(box, fill=colour)
        elif kind == "ellipse":
            x0, y0, x1, y1 = (pt(v) * big for v in shape["box"])
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == "line":
            x0, y0, x1, y1 = (pt(v) * big for v in shape["points"])
            width = max(SUPERSAMPLE, round(shape.get("width", 0.1) * big * scale))
            draw.line((x0, y0, x1, y1), fill=colour, width=width)
            r = width / 2  # round caps, or the ends look chopped at 16 px
            for x, y in ((x0, y0), (x1, y1)):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == "arc":
            x0, y0, x1, y1 = (pt(v) * big for v in shape["box"])
            width = max(SUPERSAMPLE, round(shape.get("width", 0.08) * big * scale))
            draw.arc((x0, y0, x1, y1), shape.get("start", 0), shape.get("end", 360), fill=colour, width=width)


def icon_for(report: StatusReport, size: int = 64) -> Image.Image:
    state, progress = aggregate(report)
    return render_icon(state, size, progress)
