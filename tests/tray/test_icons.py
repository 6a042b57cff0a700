from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lmstudio_tray.core.models import InstanceState, LoadProgress
from lmstudio_tray.tray import icons
from lmstudio_tray.tray.icons import aggregate, hex_rgb, icon_for, quantize, render_icon, state_colour

from .factories import loading, ready, report, snap

ASSETS = Path(__file__).resolve().parents[2] / "assets"
ALL_STATES = list(InstanceState)


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def test_assets_define_every_state() -> None:
    palette = json.loads((ASSETS / "palette.json").read_text())
    glyphs = json.loads((ASSETS / "glyphs.json").read_text())
    for state in InstanceState:
        assert state.value in palette
        assert state.value in glyphs
    assert icons.assets_dir() == ASSETS


@pytest.mark.parametrize("size", [16, 22, 24, 32, 48, 64])
@pytest.mark.parametrize("state", ALL_STATES)
def test_every_state_renders_at_every_size(state: InstanceState, size: int) -> None:
    img = render_icon(state, size)
    assert img.size == (size, size) and img.mode == "RGBA"
    # Corners are transparent: the disc does not fill the square, so any tray background shows.
    assert img.getpixel((0, 0))[3] == 0
    assert img.getpixel((size - 1, size - 1))[3] == 0


@pytest.mark.parametrize("state", [s for s in ALL_STATES if s is not InstanceState.LOADING])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_disc_has_the_state_colour(state: InstanceState, size: int) -> None:
    img = render_icon(state, size)
    # Left of centre, between the rim and the glyph: pure fill.
    px = img.getpixel((round(size * 0.18), size // 2))
    assert close(px[:3], state_colour(state)), (state, size, px)
    assert px[3] == 255


@pytest.mark.parametrize("state", [s for s in ALL_STATES if s is not InstanceState.LOADING])
def test_glyph_is_white_and_crisp_at_16px(state: InstanceState) -> None:
    img = render_icon(state, 16).convert("RGBA")
    pixels = [img.getpixel((x, y)) for x in range(16) for y in range(16)]
    white = [p for p in pixels if p[3] == 255 and min(p[:3]) >= 240]
    assert len(white) >= 4, f"{state}: glyph vanished at 16 px"


def test_states_are_distinguishable_by_colour() -> None:
    colours = {state_colour(s) for s in ALL_STATES}
    assert len(colours) == len(ALL_STATES)


def test_loading_ring_follows_progress() -> None:
    fill = state_colour(InstanceState.LOADING)
    track = hex_rgb(icons.load_assets()[0]["loading"]["track"])
    size = 64
    # Probe on the ring, at 3 o'clock (25 % of the way round from 12) and 9 o'clock (75 %).
    east, west = (size - 3, size // 2), (2, size // 2)
    half = render_icon(InstanceState.LOADING, size, 0.5)
    assert close(half.getpixel(east)[:3], fill, 30)
    assert close(half.getpixel(west)[:3], track, 30)
    full = render_icon(InstanceState.LOADING, size, 1.0)
    assert close(full.getpixel(west)[:3], fill, 30)
    empty = render_icon(InstanceState.LOADING, size, 0.0)
    assert close(empty.getpixel(east)[:3], track, 30)
    # The inner disc keeps the state colour whatever the progress.
    assert close(half.getpixel((size // 2 - 14, size // 2))[:3], fill)


def test_indeterminate_loading_shows_a_quarter() -> None:
    img = render_icon(InstanceState.LOADING, 64, None)
    fill = state_colour(InstanceState.LOADING)
    assert close(img.getpixel((46, 6))[:3], fill, 40)  # between 12 and 3 o'clock
    assert not close(img.getpixel((18, 58))[:3], fill, 40)  # between 6 and 9 o'clock


def test_progress_is_quantized_so_icons_are_reused() -> None:
    assert quantize(None) is None
    assert quantize(0.0) == 0.0
    assert quantize(1.5) == 1.0
    assert quantize(0.51) == quantize(0.52)
    a = render_icon(InstanceState.LOADING, 32, 0.51)
    b = render_icon(InstanceState.LOADING, 32, 0.52)
    assert a.tobytes() == b.tobytes()
    assert a is not b  # callers get copies: mutating one must not poison the cache


def test_aggregate_picks_the_state_needing_attention() -> None:
    assert aggregate(report())[0] is InstanceState.OFFLINE
    assert aggregate(report(ready()))[0] is InstanceState.READY
    both = report(ready(), snap(InstanceState.ERROR, name="remote", error="500"))
    assert aggregate(both)[0] is InstanceState.ERROR
    state, progress = aggregate(report(ready("a"), loading()))
    assert state is InstanceState.LOADING and progress == 0.45
    idle_offline = report(snap(InstanceState.OFFLINE), snap(InstanceState.IDLE, name="b"))
    assert aggregate(idle_offline)[0] is InstanceState.IDLE
    unknown = report(snap(InstanceState.LOADING, loads=(LoadProgress("m", 0.0),)))
    assert aggregate(unknown) == (InstanceState.LOADING, None)


def test_icon_for_report() -> None:
    img = icon_for(report(ready()), 32)
    assert isinstance(img, Image.Image)
    assert close(img.getpixel((6, 16))[:3], state_colour(InstanceState.READY))


def test_missing_assets_still_draw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(icons, "assets_dir", lambda: None)
    icons.load_assets.cache_clear()
    icons._render.cache_clear()
    try:
        img = render_icon(InstanceState.ERROR, 16)
        assert close(img.getpixel((3, 8))[:3], hex_rgb("#DC2626"))
    finally:
        icons.load_assets.cache_clear()
        icons._render.cache_clear()
