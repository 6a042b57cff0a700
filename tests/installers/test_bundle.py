"""The PyInstaller one-file Linux build: it starts, knows its version, and reports status from the
emulator it carries (the same smoke test the bundles workflow runs on each OS).

The build takes minutes, so it happens once per session and is reused from .cache/bundle while no input
changed (installers/bundle.py compares modification times).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray import __version__

from .bundle_support import build, bundle_emulator, write_config

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="session")
def bundle_exe() -> Path:
    return build()


def run(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=180, check=False)


def test_bundle_is_one_executable_that_prints_its_version(bundle_exe: Path) -> None:
    assert bundle_exe.is_file() and bundle_exe.stat().st_mode & 0o111
    r = run(bundle_exe, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"lmstudio-tray {__version__}"


def test_bundle_reports_status_json_from_its_emulator(bundle_exe: Path, tmp_path: Path) -> None:
    with bundle_emulator(bundle_exe, tmp_path, "qwen/qwen3-4b-2507") as url:
        cfg = write_config(tmp_path / "config.toml", url)
        r = run(bundle_exe, "--config", str(cfg), "status", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    (inst,) = report["instances"]
    assert inst["url"] == url and inst["state"] == "ready" and inst["api"] == "v1"
    loaded = [m["key"] for m in inst["models"] if m["loaded"]]
    assert loaded == ["qwen/qwen3-4b-2507"]
    assert len(inst["models"]) > 1  # the whole catalog, not only what is loaded


def test_bundle_reports_offline_with_a_failing_exit_code(bundle_exe: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", "http://127.0.0.1:9")  # discard port: nothing listens
    r = run(bundle_exe, "--config", str(cfg), "status", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["instances"][0]["state"] == "offline"


def test_bundle_carries_the_data_files_the_app_reads(bundle_exe: Path) -> None:
    from PyInstaller.archive.readers import CArchiveReader  # type: ignore[import-untyped,unused-ignore]

    names = set(CArchiveReader(str(bundle_exe)).toc)
    # Without these the tray draws plain discs and `opencode install` has no plugin to copy.
    for data in ("lmstudio_tray/assets/palette.json", "lmstudio_tray/assets/glyphs.json",
                 "lmstudio_tray/opencode/lmstudio-tray.ts"):
        assert data in names


def test_bundle_autostart_registers_the_bundle_itself(bundle_exe: Path) -> None:
    r = run(bundle_exe, "autostart", "enable", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["command"] == [str(bundle_exe), "run"]
    assert run(bundle_exe, "autostart", "disable").returncode == 0


def test_ci_smoke_script_passes_on_this_bundle(bundle_exe: Path) -> None:
    # The bundles workflow runs installers/smoke_test.py on every OS: keep it honest here.
    script = Path(__file__).resolve().parents[2] / "installers" / "smoke_test.py"
    r = subprocess.run([sys.executable, str(script), str(bundle_exe), "--expect-version", __version__],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all checks passed" in r.stdout
