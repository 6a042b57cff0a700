"""The built wheel carries what an installed copy needs: icon sources, the OpenCode plugin, typing marker."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel, and everything the build printed (what a first `scripts/run.sh` shows the user)."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(out)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (built,) = out.glob("lmstudio_tray-*.whl")
    return built, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(build: tuple[Path, str]) -> Path:
    return build[0]


def test_the_build_is_quiet_and_declares_the_license(build: tuple[Path, str]) -> None:
    built, output = build
    # setuptools' deprecation notices (e.g. the old `license = {text = ...}` table) fill a first install's
    # screen; the project's metadata must be in the current form
    noise = [line for line in output.splitlines() if "DeprecationWarning" in line or "BuildBackendWarning" in line
             or "deprecated" in line.lower()]
    assert not noise, output
    with zipfile.ZipFile(built) as whl:
        metadata = next(whl.read(n).decode() for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: MIT" in metadata.splitlines()
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in whl.namelist())


def test_wheel_holds_assets_plugin_and_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("lmstudio_tray/assets/palette.json", "lmstudio_tray/assets/glyphs.json",
                   "lmstudio_tray/opencode/lmstudio-tray.ts", "lmstudio_tray/py.typed"):
        assert needed in names


def test_installed_copy_draws_the_real_icons(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
        "from lmstudio_tray.tray import icons\n"
        "print(icons.assets_dir())\n"
        "from lmstudio_tray.core.models import InstanceState\n"
        "print(icons.render_icon(InstanceState.READY, 32).tobytes().hex())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LMSTUDIO_TRAY_ASSETS"}
    env["PYTHONPATH"] = str(site)
    # run from an empty directory so the checkout's own copy cannot be imported instead
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    where = done.stdout.splitlines()[0]
    assert where == str(site / "lmstudio_tray" / "assets")
    assert "assets not found" not in done.stderr
    from lmstudio_tray.core.models import InstanceState
    from lmstudio_tray.tray.icons import render_icon

    assert done.stdout.splitlines()[1] == render_icon(InstanceState.READY, 32).tobytes().hex()
