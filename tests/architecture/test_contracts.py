"""The layering of pyproject.toml holds with no exceptions: surfaces import no other surface, and the
composition root (`lmstudio_tray.wiring`) is the one module above them, imported by the command line only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from tests.architecture.helpers import PACKAGE

ROOT = PACKAGE.parent
SURFACES = ["lmstudio_tray.api", "lmstudio_tray.tray", "lmstudio_tray.notify", "lmstudio_tray.opencode",
            "lmstudio_tray.analytics", "lmstudio_tray.diagnostics", "lmstudio_tray.hub"]


def contracts() -> list[dict[str, object]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = data["tool"]["importlinter"]["contracts"]
    return found


def test_no_contract_has_exceptions() -> None:
    excepted = {str(c["name"]): c["ignore_imports"] for c in contracts() if c.get("ignore_imports")}
    assert not excepted, f"imports excepted from the layering: {excepted}"


def test_the_composition_root_sits_between_the_command_line_and_the_surfaces() -> None:
    layers = [c["layers"] for c in contracts() if c["type"] == "layers"]
    assert len(layers) == 1
    assert layers[0] == ["lmstudio_tray.cli", "lmstudio_tray.wiring", " | ".join(SURFACES), "lmstudio_tray.core"]
    independent = [c for c in contracts() if c["type"] == "independence"]
    assert len(independent) == 1 and independent[0]["modules"] == SURFACES


def test_lint_imports_keeps_every_contract() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
