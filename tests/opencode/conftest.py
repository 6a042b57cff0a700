"""Where the pinned OpenCode toolchain lives (scripts/deps/opencode.sh), and how a test asks for it.

Missing tools skip the test, except when LMSTUDIO_TRAY_REQUIRE_OPENCODE=1 (CI): then they fail, so a
broken install cannot turn the end-to-end suite green by skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPENCODE_VERSION = "1.18.33"
PLUGIN_FILE = ROOT / "lmstudio_tray" / "opencode" / "lmstudio-tray.ts"
JSONC_PARSER_VERSION = "3.3.1"  # what scripts/deps/opencode.sh installs; OpenCode 1.18.33 bundles 3.3.x
JSONC_REFERENCE_JS = Path(__file__).with_name("jsonc_reference.js")


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


def _nonfinite(obj: dict[str, Any]) -> Any:
    """jsonc_reference.js's mark for a number beyond a double (1e400 reads as Infinity in both readers)."""
    if list(obj) == ["__jsonc_reference_nonfinite__"]:
        return float(obj["__jsonc_reference_nonfinite__"].replace("Infinity", "inf"))
    return obj


class JsoncReference:
    """jsonc-parser (what OpenCode reads its config with) in one long-lived node process, fed one JSON line
    per text, so each hypothesis example costs a pipe round trip instead of a node start."""

    def __init__(self, node_modules: Path) -> None:
        self._proc = subprocess.Popen(["node", str(JSONC_REFERENCE_JS), str(node_modules)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def parse(self, text: str) -> tuple[list[tuple[int, int]], Any]:
        """(jsonc-parser's errors as (code, offset), the value it returned)."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(text).encode("ascii") + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the jsonc-parser reference ended (exit status {self._proc.wait(10)})")
        answer = json.loads(line, object_hook=_nonfinite)
        return [(int(code), int(offset)) for code, offset in answer["errors"]], answer.get("value")

    def accepts(self, text: str) -> bool:
        return not self.parse(text)[0]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


@pytest.fixture(scope="session")
def jsonc_reference() -> Iterator[JsoncReference]:
    nm = deps_dir() / "node_modules"
    pkg = nm / "jsonc-parser" / "package.json"
    version = json.loads(pkg.read_text()).get("version") if pkg.is_file() else None
    if version != JSONC_PARSER_VERSION:
        require_or_skip(f"jsonc-parser@{JSONC_PARSER_VERSION} is not installed under {nm} (found {version})")
    if shutil.which("node") is None:
        require_or_skip("node is not on PATH")
    ref = JsoncReference(nm)
    try:
        yield ref
    finally:
        ref.close()
