"""The installer files agree with the app: names, ids and switches that must match across OSes."""

from __future__ import annotations

import re

from PIL import Image, ImageChops

from lmstudio_tray.platform.autostart import BUNDLE_ID, ENTRY_NAME
from lmstudio_tray.platform.autostart.windows import RUN_KEY, VALUE_NAME
from lmstudio_tray.tray.icons import render_icon

from .helpers import ROOT

INSTALLERS = ROOT / "installers"


def test_committed_app_icons_match_the_icon_code() -> None:
    # `python installers/make_icons.py` regenerates them; a stale PNG means the launcher and tray differ.
    for size in (48, 128, 256):
        with Image.open(ROOT / "assets" / "app-icon" / f"lmstudio-tray-{size}.png") as committed:
            fresh = render_icon("ready", size)
            assert committed.size == (size, size)
            assert ImageChops.difference(committed.convert("RGBA"), fresh).getbbox() is None, size
    with Image.open(ROOT / "assets" / "app-icon" / "lmstudio-tray.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    with Image.open(ROOT / "assets" / "app-icon" / "lmstudio-tray.icns") as icns:
        assert icns.size[0] >= 256


def test_inno_setup_script_is_per_user_opt_in_and_matches_the_app() -> None:
    iss = (INSTALLERS / "windows" / "lmstudio-tray.iss").read_text()
    assert "PrivilegesRequired=lowest" in iss
    assert re.search(r"^DefaultDirName=\{localappdata\}\\Programs\\", iss, re.M)
    task = re.search(r'^Name: "autostart";.*$', iss, re.M)
    assert task and "Flags: unchecked" in task.group(0)  # never on unless ticked
    assert f'#define AppUserModelID "{BUNDLE_ID}"' in iss and 'AppUserModelID: "{#AppUserModelID}"' in iss
    assert f'#define RunValue "{VALUE_NAME}"' in iss and f'Subkey: "{RUN_KEY}"' in iss
    assert "uninsdeletevalue" in iss and '"autostart disable"' in iss
    spec = (INSTALLERS / "windows" / "lmstudio-tray.spec").read_text()
    assert 'name=f"{common.APP_NAME}w", console=False' in spec  # the windowless exe the .iss starts
    assert '#define AppExe "lmstudio-trayw.exe"' in iss


def test_macos_spec_builds_a_menu_bar_app_with_the_launch_agent_label() -> None:
    spec = (INSTALLERS / "macos" / "lmstudio-tray.spec").read_text()
    assert '"LSUIElement": True' in spec and "bundle_identifier=common.BUNDLE_ID" in spec
    assert 'icon=str(common.ICONS / "lmstudio-tray.icns")' in spec
    common = (INSTALLERS / "bundle_common.py").read_text()
    assert f'BUNDLE_ID = "{BUNDLE_ID}"' in common and f'APP_NAME = "{ENTRY_NAME}"' in common


def test_workflow_builds_and_smoke_tests_each_bundle_on_its_own_runner() -> None:
    text = (ROOT / ".github" / "workflows" / "bundles.yml").read_text()
    # Split at the job keys (two-space indent under `jobs:`); no YAML library is a dependency here.
    body = text.split("\njobs:\n", 1)[1]
    jobs = dict(re.findall(r"^  (linux|macos|windows):\n(.*?)(?=^  \w+:\n|\Z)", body, re.M | re.S))
    assert set(jobs) == {"linux", "macos", "windows"}
    runner = {name: re.search(r"runs-on: (\S+)", body).group(1) for name, body in jobs.items()}  # type: ignore[union-attr]
    assert runner["linux"].startswith("ubuntu") and runner["macos"].startswith("macos")
    assert runner["windows"].startswith("windows")
    for name, body in jobs.items():
        spec = f"installers/{name}/lmstudio-tray.spec"
        assert f"pyinstaller --noconfirm --clean {spec}" in body and (ROOT / spec).is_file()
        assert "python installers/smoke_test.py" in body
