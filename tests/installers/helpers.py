"""What the installer and autostart tests share."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def desktop_file_validate(path: Path) -> None:
    """Fails the test with the validator's words unless `path` is a clean desktop entry."""
    tool = shutil.which("desktop-file-validate")
    assert tool, "desktop-file-validate is missing: apt-get install desktop-file-utils"
    r = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and not r.stdout.strip(), f"{path}:\n{r.stdout}{r.stderr}\n{path.read_text()}"


def systemd_verify_user_unit(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze --user verify` must accept the unit without a single warning.

    The user manager it simulates needs $XDG_RUNTIME_DIR; a container has none, so a private one is given.
    """
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    r = subprocess.run([tool, "--user", "verify", str(unit)], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), (
        f"systemd-analyze --user verify {unit} (exit {r.returncode}):\n{r.stdout}{r.stderr}\n{unit.read_text()}"
    )


def xdg_config_home() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME")
    if not value:
        pytest.fail("conftest should set XDG_CONFIG_HOME for every test")
    return Path(value)
