"""No package folder holds more than 15 modules: past that, a folder stops saying what is in it."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lmstudio_tray"
MAX_MODULES = 15


def modules_per_folder() -> dict[str, int]:
    counts = {}
    for init in PACKAGE.rglob("__init__.py"):
        folder = init.parent
        if "__pycache__" not in folder.parts:
            counts[folder.relative_to(PACKAGE).as_posix() or "."] = len(list(folder.glob("*.py")))
    return counts


def test_no_package_folder_has_more_than_15_modules() -> None:
    counts = modules_per_folder()
    assert counts["cli"] <= MAX_MODULES and counts["cli/commands"] <= MAX_MODULES
    over = {f: n for f, n in counts.items() if n > MAX_MODULES}
    assert not over, f"group these folders' modules into sub-packages (at most {MAX_MODULES} each): {over}"
