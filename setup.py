"""Ships the top-level `assets/` (icon sources) inside the package as `lmstudio_tray/assets/`.

Everything else is declared in pyproject.toml; this hook exists only because package data cannot be
taken from outside the package directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "assets"
        target = Path(self.build_lib) / "lmstudio_tray" / "assets"
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithAssets})
