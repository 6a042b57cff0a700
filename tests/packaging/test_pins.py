"""Libraries whose private API the code touches are pinned to the version it was tested with."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]

# distribution -> where and what private API the code uses
PRIVATE_API = {
    "pystray": "tray/app.py: PystrayView connects to the GTK backend's Icon._status_icon",
}


def test_private_api_users_are_pinned_and_the_pinned_version_is_installed() -> None:
    deps = {Requirement(d).name: Requirement(d) for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for dist, why in PRIVATE_API.items():
        spec = deps[dist].specifier
        pins = [s for s in spec if s.operator == "=="]
        assert len(pins) == 1 and len(spec) == 1, f"{dist} must be pinned with == ({why}); it is {spec}"
        assert version(dist) == pins[0].version, f"{dist} {version(dist)} installed, {pins[0].version} pinned"
