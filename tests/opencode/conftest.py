"""Where the pinned OpenCode toolchain lives (scripts/deps/opencode.sh), and how a test asks for it.

Missing tools skip the test, except when LMSTUDIO_TRAY_REQUIRE_OPENCODE=1 (CI): then they fail, so a
broken install cannot turn the end-to-end suite green by skipping it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPENCODE_VERSION = "1.18.33"
PLUGIN_FILE = ROOT / "lmstudio_tray" / "opencode" / "lmstudio-tray.ts"


def deps_dir() -> Path:
    return Path(os.environ.get("LMSTUDIO_TRAY_OPENCODE_DEPS") or ROOT / ".cache" / "opencode-deps")


def require_or_skip(reason: str) -> None:
    if os.environ.get("LMSTUDIO_TRAY_REQUIRE_OPENCODE") == "1":
        pytest.fail(f"{reason} (LMSTUDIO_TRAY_REQUIRE_OPENCODE=1; run scripts/deps/opencode.sh)")
    pytest.skip(f"{reason}; run scripts/deps/opencode.sh")


def find_opencode() -> Path | None:
    env = os.environ.get("LMSTUDIO_TRAY_OPENCODE_BIN")
    if env and Path(env).is_file():
        return Path(env)
    nm = deps_dir() / "node_modules"
    for candidate in (nm / ".bin" / "opencode", *sorted(nm.glob("opencode-*/bin/opencode"))):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def opencode_bin() -> Path:
    found = find_opencode()
    if found is None:
        require_or_skip(f"opencode-ai@{OPENCODE_VERSION} is not installed under {deps_dir()}")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def node_modules() -> Path:
    nm = deps_dir() / "node_modules"
    if not (nm / "@opencode-ai" / "plugin" / "package.json").is_file() or not (nm / ".bin" / "tsc").exists():
        require_or_skip(f"@opencode-ai/plugin@{OPENCODE_VERSION} and typescript are not installed under {nm}")
    if shutil.which("node") is None:
        require_or_skip("node is not on PATH")
    return nm
