"""`doctor` on the test desktop (scripts/with-desktop.sh): Secret Service keyring, tray host and dunst all pass.

    scripts/with-desktop.sh .venv/bin/pytest -m desktop tests/diagnostics/test_doctor_desktop.py

Outside a desktop it skips, unless LMSTUDIO_TRAY_REQUIRE_DESKTOP=1 (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmstudio_tray.emulator import Emulator

pytestmark = [pytest.mark.desktop, pytest.mark.real_keyring]


@pytest.fixture(autouse=True)
def _desktop() -> None:
    missing = [v for v in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS") if not os.environ.get(v)]
    if not missing:
        return
    problem = f"no test desktop ({', '.join(missing)} not set); run under scripts/with-desktop.sh"
    if os.environ.get("LMSTUDIO_TRAY_REQUIRE_DESKTOP") == "1":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


def test_doctor_passes_the_desktop_checks(tmp_path: Path, emulator: Emulator) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "local"\nurl = "{emulator.api_url}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    done = subprocess.run([sys.executable, "-m", "lmstudio_tray", "--config", str(config), "doctor", "--json"],
                          capture_output=True, text=True, timeout=120, env=env)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["keyring"]["status"] == "ok", checks["keyring"]
    assert checks["keyring"]["data"]["secure"] is True and "SecretService" in checks["keyring"]["detail"]
    assert checks["tray"]["status"] == "ok", checks["tray"]
    assert checks["notifications"]["status"] == "ok", checks["notifications"]
    assert checks["instance:local"]["status"] == "ok"
