"""Real-desktop tests: run them under scripts/with-desktop.sh.

    scripts/deps/desktop.sh            # once, as root: Debian packages + PyGObject<3.51 + dbus-python
    scripts/with-desktop.sh .venv/bin/pytest -m desktop tests/desktop

Outside a desktop they skip, unless LMSTUDIO_TRAY_REQUIRE_DESKTOP=1 (CI), where they fail: a CI job
that silently skipped its desktop tests would look green while testing nothing.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "LMSTUDIO_TRAY_REQUIRE_DESKTOP"


def missing_desktop() -> str | None:
    missing = [v for v in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS") if not os.environ.get(v)]
    if missing:
        return (
            f"no test desktop ({' and '.join(missing)} not set); run: "
            "scripts/with-desktop.sh .venv/bin/pytest -m desktop tests/desktop"
        )
    try:
        import gi  # noqa: F401
    except ImportError:
        return "PyGObject is not installed; run scripts/deps/desktop.sh (as root) first"
    return None


@pytest.fixture(autouse=True)
def _require_desktop(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("desktop") is None:
        return
    problem = missing_desktop()
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
    pytest.skip(problem)
