"""The one-file bundle's tray on a real (test) desktop: PyInstaller builds can silently lose the GTK
backend or the StatusNotifierItem one and fall back to an icon without a menu, which no `--version`
check notices.

Run under the test desktop:  scripts/with-desktop.sh .venv/bin/pytest tests/installers/test_bundle_desktop.py
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmstudio_tray.core.models import InstanceState
from lmstudio_tray.tray.icons import state_colour
from tests.desktop import test_tray_sni_desktop as sni
from tests.desktop.test_tray_sni_desktop import Host, near, pixmap_colour
from tests.desktop.xtools import stop_process

from .bundle_support import build

pytestmark = [pytest.mark.desktop, pytest.mark.timeout(1500)]


@pytest.fixture(autouse=True)
def _needs_desktop() -> None:
    # Same rule as tests/desktop/conftest.py: skip outside the test desktop, fail when CI demands one.
    missing = [v for v in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS") if not os.environ.get(v)]
    if missing:
        message = f"no test desktop ({', '.join(missing)} unset): run under scripts/with-desktop.sh"
        if os.environ.get("LMSTUDIO_TRAY_REQUIRE_DESKTOP") == "1":
            pytest.fail(message)
        pytest.skip(message)


sni_host = sni.host  # a StatusNotifierWatcher and a host drawing the items, as a fixture here


@pytest.fixture(scope="module")
def bundle_exe() -> Path:
    return build()


@pytest.fixture
def bundle_tray(bundle_exe: Path, tmp_path: Path, emulator: Any) -> Iterator[dict[str, Any]]:
    from tests.desktop.xtools import tray_icons, wait_for

    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "emu"\nurl = "{emulator.api_url}"\n\n[endpoint]\nport = 0\n')
    env = {k: v for k, v in os.environ.items() if k not in ("PYSTRAY_BACKEND", "LMSTUDIO_TRAY_NOTIFIER")}
    env.update(LMSTUDIO_TRAY_MENU_DUMP=str(tmp_path / "menu.json"), XDG_STATE_HOME=str(tmp_path / "state"))
    log = tmp_path / "tray.stderr"
    before = set(tray_icons())
    proc = subprocess.Popen([str(bundle_exe), "--config", str(config), "--log-level", "info", "run"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))

    def new_icon() -> tuple[int, int, int, int] | None:
        assert proc.poll() is None, f"the bundle's tray exited early:\n{log.read_text(errors='replace')}"
        fresh = [g for wid, g in tray_icons().items() if wid not in before and g[2] >= 16 and g[3] >= 16]
        return fresh[0] if fresh else None

    try:
        icon = wait_for(new_icon, 120, what="the bundle's tray icon")  # one-file: unpacks first
        wait_for((tmp_path / "menu.json").exists, 30, what="the first menu")
        yield {"icon": icon, "menu": tmp_path / "menu.json", "log": log, "proc": proc}
    finally:
        stop_process(proc, grace=20)


def labels(items: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.append(item.get("label", ""))
        out.extend(labels(item.get("children", [])))
    return out


def test_bundle_shows_a_tray_icon_with_a_menu(bundle_tray: dict[str, Any]) -> None:
    from tests.desktop.xtools import colour_share, wait_for

    log_text = bundle_tray["log"].read_text(errors="replace")
    assert "with menu" in log_text, log_text  # GTK or AppIndicator made it into the bundle
    assert "no menu" not in log_text and "running headless" not in log_text
    menu = json.loads(bundle_tray["menu"].read_text())
    all_labels = labels(menu)
    assert "Quit" in all_labels and any(label.startswith("Load model") for label in all_labels)
    # The icon is drawn from the bundled assets (a missing palette would draw the fallback grey disc).
    assert wait_for(lambda: colour_share(bundle_tray["icon"], state_colour(InstanceState.IDLE)) > 0.15, 30,
                    what="the idle colour")
    assert "icon assets not found" not in log_text


def test_bundle_keeps_tokens_in_the_secret_service(bundle_exe: Path, tmp_path: Path) -> None:
    # Frozen builds often lose keyring's backends and fall back silently (jaraco/keyring#324, #468):
    # the token must land in the session's Secret Service, where the pip-installed app finds it too.
    from keyring.backends import SecretService

    name = f"bundle-{uuid.uuid4().hex[:8]}"
    token = "sk-lm-bundle00:" + uuid.uuid4().hex
    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "{name}"\nurl = "http://127.0.0.1:9"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    r = subprocess.run([str(bundle_exe), "--config", str(config), "token", "set", name], input=token + "\n",
                       capture_output=True, text=True, timeout=180, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert token not in r.stdout + r.stderr  # never echoed
    secret_service = SecretService.Keyring()  # type: ignore[no-untyped-call]
    try:
        assert secret_service.get_password("lmstudio-tray", name) == token  # type: ignore[no-untyped-call]
        assert not (Path(os.environ["XDG_DATA_HOME"]) / "lmstudio-tray" / "secrets.json").exists()
    finally:
        secret_service.delete_password("lmstudio-tray", name)  # type: ignore[no-untyped-call]


def test_bundle_tray_on_a_status_notifier_desktop(bundle_exe: Path, sni_host: Host, tmp_path: Path,
                                                  emulator: Any) -> None:
    """The bundle on a StatusNotifierItem desktop: the D-Bus backend (jeepney, no GTK) made it into the
    one-file build, registers, draws the state colour and publishes the menu."""
    from tests.desktop.xtools import wait_for

    config = tmp_path / "config.toml"
    config.write_text(f'[[instances]]\nname = "emu"\nurl = "{emulator.api_url}"\n\n[endpoint]\nport = 0\n')
    env = {k: v for k, v in os.environ.items() if k not in ("PYSTRAY_BACKEND", "LMSTUDIO_TRAY_NOTIFIER")}
    env.update(LMSTUDIO_TRAY_MENU_DUMP=str(tmp_path / "menu.json"), XDG_STATE_HOME=str(tmp_path / "state"))
    log = tmp_path / "tray.stderr"
    proc = subprocess.Popen([str(bundle_exe), "--config", str(config), "--log-level", "info", "run"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))

    def registered() -> str | None:
        assert proc.poll() is None, f"the bundle's tray exited early:\n{log.read_text(errors='replace')}"
        items = sni_host.bus.registered_items()
        return items[0].split("/")[0] if items else None

    try:
        service = wait_for(registered, 120, what="the bundle registered with the watcher")  # unpacks first
        assert service is not None
        # the one-file bootloader runs Python in a child process: that one owns the bus name
        pid = int(service.split("-")[1])
        assert "libgtk" not in Path(f"/proc/{pid}/maps").read_text()
        idle = state_colour(InstanceState.IDLE)
        wait_for(lambda: near(pixmap_colour(sni_host.bus.item_property(service, "IconPixmap")), idle), 30,
                 what="IconPixmap in the idle colour")
        wait_for((tmp_path / "menu.json").exists, 30, what="the first menu")
        all_labels = labels(json.loads((tmp_path / "menu.json").read_text()))
        assert "Quit" in all_labels and any(label.startswith("Load model") for label in all_labels)
        assert "StatusNotifierItem icon with menu (no GTK)" in log.read_text(errors="replace")
    finally:
        stop_process(proc, grace=20)
