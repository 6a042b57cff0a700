"""installers/linux/install.sh and uninstall.sh for real, into the test's temporary HOME and XDG dirs.

A real virtual environment is created and the checkout installed into it with pip (the wheel cache is
kept in .cache/pip so later runs do not download again).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lmstudio_tray import __version__
from lmstudio_tray.platform.autostart.linux import exec_unquote, read_desktop_entry

from .helpers import ROOT, desktop_file_validate, systemd_verify_user_unit

pytestmark = pytest.mark.timeout(900)  # a real venv and pip install, on a shared 2-core machine

INSTALL = ROOT / "installers" / "linux" / "install.sh"
APP_DIRS = ("lmstudio-tray",)  # the app's own config/state/cache dirs: kept without --purge


def env() -> dict[str, str]:
    e = dict(os.environ)
    # rustup's proxies on this machine's PATH write ~/.rustup into any HOME where a build probes rustc;
    # that is the build machine's doing, not the installer's, so keep them out.
    e["PATH"] = os.pathsep.join(p for p in e["PATH"].split(os.pathsep) if ".cargo" not in p)
    e["PIP_CACHE_DIR"] = str(ROOT / ".cache" / "pip")
    e.pop("PIP_REQUIRE_VIRTUALENV", None)
    return e


def run(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env(),
                          stdin=subprocess.DEVNULL, check=False)


def tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def xdg(name: str) -> Path:
    return Path(os.environ[name])


@pytest.fixture
def everything(tmp_path: Path) -> Path:
    """The directory holding the test's HOME and XDG dirs (conftest puts both under tmp_path)."""
    return tmp_path


def test_install_with_autostart_then_uninstall_leaves_nothing(everything: Path, tmp_path: Path) -> None:
    before = tree(everything)
    home, data, config = Path.home(), xdg("XDG_DATA_HOME"), xdg("XDG_CONFIG_HOME")

    r = run("bash", INSTALL, "--autostart", "--method", "venv", "--python", sys.executable)
    assert r.returncode == 0, r.stdout + r.stderr
    venv_exe = data / "lmstudio-tray" / "venv" / "bin" / "lmstudio-tray"
    assert f"Installed lmstudio-tray (venv): {venv_exe}" in r.stdout

    # The app: its own venv under the XDG data dir, and a link in ~/.local/bin.
    link = home / ".local" / "bin" / "lmstudio-tray"
    assert link.is_symlink() and link.resolve() == venv_exe.resolve()
    v = run(link, "--version")
    assert v.returncode == 0 and __version__ in v.stdout

    # Launcher entry and icons where the XDG/icon-theme specs say.
    entry = data / "applications" / "lmstudio-tray.desktop"
    desktop_file_validate(entry)
    keys = read_desktop_entry(entry)
    assert exec_unquote(keys["Exec"]) == [str(venv_exe), "run"]
    assert keys["Icon"] == "lmstudio-tray" and keys["TryExec"] == str(venv_exe)
    for size in (48, 128, 256):
        icon = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "lmstudio-tray.png"
        with Image.open(icon) as img:
            assert img.size == (size, size) and img.mode == "RGBA"

    # Start at login, because the user said so: written by the app itself.
    auto = config / "autostart" / "lmstudio-tray.desktop"
    desktop_file_validate(auto)
    assert exec_unquote(read_desktop_entry(auto)["Exec"]) == [str(venv_exe), "run"]

    # Later the user switches to the systemd unit; it must point at this install and verify.
    s = run(venv_exe, "autostart", "enable", "--systemd")
    assert s.returncode == 0, s.stderr
    unit = config / "systemd" / "user" / "lmstudio-tray.service"
    systemd_verify_user_unit(unit, tmp_path / "sd")
    assert not auto.exists()

    manifest = data / "lmstudio-tray" / "install-manifest.txt"
    listed = manifest.read_text()
    for path in (link, entry, data / "lmstudio-tray" / "venv", data / "lmstudio-tray" / "uninstall.sh"):
        assert f" {path}\n" in listed

    # Installing twice is refused instead of leaving two half-installs.
    again = run("bash", INSTALL, "--no-autostart")
    assert again.returncode != 0 and "already installed" in again.stderr

    # The installed copy of the uninstaller works after the checkout is gone.
    u = run("bash", data / "lmstudio-tray" / "uninstall.sh")
    assert u.returncode == 0, u.stdout + u.stderr
    assert (tmp_path / "sd").exists()
    leftovers = {p for p in tree(everything) - before if not p.is_relative_to(tmp_path / "sd")}
    # Only the app's own settings/state dirs may remain (the run above may log); --purge removes them.
    foreign = {p for p in leftovers if not any(part in APP_DIRS for part in p.relative_to(everything).parts)}
    assert foreign == set(), sorted(map(str, foreign))
    assert not unit.exists() and not link.exists() and not entry.exists()


def test_default_install_does_not_start_at_login_and_purge_removes_settings(everything: Path) -> None:
    before = tree(everything)
    data, config = xdg("XDG_DATA_HOME"), xdg("XDG_CONFIG_HOME")
    r = run("bash", INSTALL, "--method", "venv", "--python", sys.executable)  # no terminal: nobody to ask
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not started at login" in r.stdout
    assert not (config / "autostart").exists()
    exe = data / "lmstudio-tray" / "venv" / "bin" / "lmstudio-tray"
    # The app writes its settings somewhere in its config dir; purge must take them.
    cfg = config / "lmstudio-tray" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[[instances]]\nname = "local"\nurl = "http://127.0.0.1:1234"\n')
    assert run(exe, "--version").returncode == 0

    u = run("bash", data / "lmstudio-tray" / "uninstall.sh", "--purge")
    assert u.returncode == 0, u.stdout + u.stderr
    assert tree(everything) == before
    again = run("bash", data / "lmstudio-tray" / "uninstall.sh")
    assert again.returncode != 0


def test_bad_options_are_explained() -> None:
    r = run("bash", INSTALL, "--method", "conda")
    assert r.returncode != 0 and "--method must be auto, uv, pipx or venv" in r.stderr
    r = run("bash", INSTALL, "--frobnicate")
    assert r.returncode != 0 and "unknown option: --frobnicate" in r.stderr
    assert not (xdg("XDG_DATA_HOME") / "lmstudio-tray").exists()


def test_shipped_desktop_entry_is_valid() -> None:
    desktop_file_validate(ROOT / "installers" / "linux" / "lmstudio-tray.desktop")


def test_uses_uv_tool_when_uv_is_installed(everything: Path, tmp_path: Path) -> None:
    uv = Path(sys.executable).with_name("uv")
    assert uv.is_file(), "uv comes with the test extras: pip install -e '.[test]'"
    bindir = tmp_path / "uv-on-path"
    bindir.mkdir()
    (bindir / "uv").symlink_to(uv)
    before = tree(everything)
    data = xdg("XDG_DATA_HOME")
    extra = {"PATH": f"{bindir}{os.pathsep}{env()['PATH']}", "UV_CACHE_DIR": str(ROOT / ".cache" / "uv"),
             "UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never"}

    def run_uv(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                              env={**env(), **extra}, stdin=subprocess.DEVNULL, check=False)

    r = run_uv("bash", INSTALL, "--no-autostart")
    assert r.returncode == 0, r.stdout + r.stderr
    tool_bin = Path(os.path.normpath(run_uv(uv, "tool", "dir", "--bin").stdout.strip()))
    exe = tool_bin / "lmstudio-tray"
    assert f"Installed lmstudio-tray (uv): {exe}" in r.stdout
    assert __version__ in run_uv(exe, "--version").stdout
    entry = data / "applications" / "lmstudio-tray.desktop"
    desktop_file_validate(entry)
    assert exec_unquote(read_desktop_entry(entry)["Exec"]) == [str(exe), "run"]
    assert "tool uv\n" in (data / "lmstudio-tray" / "install-manifest.txt").read_text()
    assert not (data / "lmstudio-tray" / "venv").exists()

    u = run_uv("bash", data / "lmstudio-tray" / "uninstall.sh")
    assert u.returncode == 0, u.stdout + u.stderr
    assert not exe.exists() and not entry.exists()
    assert "lmstudio-tray" not in run_uv(uv, "tool", "list").stdout
    leftovers = {p for p in tree(everything) - before if not p.is_relative_to(bindir)}
    # uv keeps its own bookkeeping (tools/.lock); anything else must be the app's settings/state.
    foreign = {p for p in leftovers if not p.is_relative_to(data / "uv")
               and not any(part in APP_DIRS for part in p.relative_to(everything).parts)}
    assert foreign == set(), sorted(map(str, foreign))


def test_failed_install_can_be_undone(everything: Path, tmp_path: Path) -> None:
    before = tree(everything)
    missing = tmp_path / "no-such-checkout"
    r = run("bash", INSTALL, "--method", "venv", "--python", sys.executable, "--source", str(missing))
    assert r.returncode != 0
    uninstall = ROOT / "installers" / "linux" / "uninstall.sh"
    assert f"{uninstall} removes what was installed so far" in r.stderr
    assert (xdg("XDG_DATA_HOME") / "lmstudio-tray" / "venv").is_dir()  # the half-made venv is listed...
    u = run("bash", uninstall)
    assert u.returncode == 0, u.stdout + u.stderr
    assert tree(everything) == before  # ...and removed with everything else
