"""Linux (and the BSDs): an XDG autostart entry, or optionally a `systemd --user` unit.

XDG: `$XDG_CONFIG_HOME/autostart/lmstudio-tray.desktop`, read by every desktop that follows the XDG
Autostart spec (and turned into a unit by systemd-xdg-autostart-generator). `Hidden=true` or
`X-GNOME-Autostart-enabled=false` in that file is how desktops record "the user switched this off": it
is reported as `user_disabled` and left alone until the user turns autostart on again from the app.

systemd: `$XDG_CONFIG_HOME/systemd/user/lmstudio-tray.service`, `PartOf=` and `WantedBy=`
`graphical-session.target`, so it starts with the graphical session (which has the tray and the
session bus) and stops with it. Enabling creates the `.wants/` link itself, exactly what
`systemctl --user enable` would do, so it works without a running user manager (a `daemon-reload` is
attempted and its failure ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import platformdirs

from lmstudio_tray.core.support.files import atomic_write as atomic_write_text
from lmstudio_tray.platform.autostart.base import APP_LABEL, ENTRY_NAME, Autostart, AutostartStatus
from lmstudio_tray.platform.command import launch_command

MANAGED_KEY = "X-LMStudioTray-Managed"  # true: our entry; override: ours, switching off a system-wide one
OVERRIDE = "override"
UNIT_MARKER = "# Written by `lmstudio-tray autostart enable --systemd`; `lmstudio-tray autostart disable` removes it."
SESSION_TARGET = "graphical-session.target"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

# Desktop Entry spec, "The Exec key": characters that force an argument into double quotes, and the ones
# that must be backslash-escaped inside them.
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_EXEC_ESCAPE_IN_QUOTES = set('"`$\\')


def _default_runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=15, check=False)


# ---- desktop entry text ----------------------------------------------------------------------------


def exec_quote(argv: Sequence[str]) -> str:
    """argv as the value of an `Exec=` key (quoting, then the spec's string escaping)."""
    parts = []
    for arg in argv:
        arg = arg.replace("%", "%%")  # `%` starts a field code
        if arg and not (set(arg) & _EXEC_RESERVED):
            parts.append(arg)
        else:
            inner = "".join("\\" + c if c in _EXEC_ESCAPE_IN_QUOTES else c for c in arg)
            parts.append(f'"{inner}"')
    # The value is also a "string" in the spec's sense: backslashes are escaped once more.
    return " ".join(parts).replace("\\", "\\\\")


def exec_unquote(value: str) -> list[str]:
    """The argv an `Exec=` value starts (inverse of `exec_quote`, field codes dropped)."""
    args = _split_double_quoted(_unescape_string(value))
    out = []
    for arg in args:
        if re.fullmatch(r"%[a-zA-Z]", arg):
            continue
        out.append(arg.replace("%%", "%"))
    return out


def _unescape_string(value: str) -> str:
    table = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def read_desktop_entry(path: Path) -> dict[str, str]:
    """The keys of the `[Desktop Entry]` group (other groups and comments ignored)."""
    keys: dict[str, str] = {}
    group = None
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        if group == "Desktop Entry" and "=" in line:
            key, _, value = line.partition("=")
            keys[key.strip()] = value.strip()
    return keys


def desktop_entry_text(argv: Sequence[str]) -> str:
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            f"Name={APP_LABEL}",
            "Comment=System-tray companion for LM Studio",
            f"Exec={exec_quote(argv)}",
            f"Icon={ENTRY_NAME}",
            "Terminal=false",
            "Categories=Utility;",
            "NoDisplay=true",
            "X-GNOME-Autostart-enabled=true",
            f"{MANAGED_KEY}=true",
            "",
        ]
    )


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _is_false(value: str | None) -> bool:
    return (value or "").strip().lower() == "false"


def user_switched_off(keys: dict[str, str]) -> str:
    """Why a desktop would skip this entry ("" when it would start it)."""
    if _is_true(keys.get("Hidden")):
        return "Hidden=true"
    if _is_false(keys.get("X-GNOME-Autostart-enabled")):
        return "X-GNOME-Autostart-enabled=false"
    return ""


# ---- systemd unit text -----------------------------------------------------------------------------


def systemd_quote(argv: Sequence[str]) -> str:
    """argv for `ExecStart=`: `%` specifiers and `$` expansion escaped, odd arguments double-quoted."""
    parts = []
    for arg in argv:
        arg = arg.replace("%", "%%").replace("$", "$$")
        if arg and re.fullmatch(r"[A-Za-z0-9_./:@+=,%$-]+", arg):
            parts.append(arg)
        else:
            parts.append('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(parts)


def unit_text(argv: Sequence[str]) -> str:
    return "\n".join(
        [
            UNIT_MARKER,
            "[Unit]",
            f"Description={APP_LABEL} (system-tray companion for LM Studio)",
            "Documentation=https://github.com/lmstudio-tray/lmstudio-tray",
            f"PartOf={SESSION_TARGET}",
            f"After={SESSION_TARGET}",
            f"Requisite={SESSION_TARGET}",
            "",
            "[Service]",
            "Type=exec",
            f"ExecStart={systemd_quote(argv)}",
            "Restart=on-failure",
            "RestartSec=5",
            "",
            "[Install]",
            f"WantedBy={SESSION_TARGET}",
            "",
        ]
    )


# ---- the platform class ----------------------------------------------------------------------------


class LinuxAutostart(Autostart):
    mechanism = "xdg"

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        systemd: bool = False,
        config_home: Path | None = None,
        config_dirs: Sequence[Path] | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.command = list(command) if command else launch_command()
        self.systemd = systemd
        self.mechanism = "systemd" if systemd else "xdg"
        self.config_home = config_home or Path(platformdirs.user_config_dir())
        if config_dirs is None:
            site = platformdirs.site_config_dir(multipath=True)
            config_dirs = [Path(p) for p in site.split(os.pathsep) if p]
        self.config_dirs = list(config_dirs)
        self._run = runner or _default_runner

    # where things go
    @property
    def desktop_file(self) -> Path:
        return self.config_home / "autostart" / f"{ENTRY_NAME}.desktop"

    @property
    def unit_file(self) -> Path:
        return self.config_home / "systemd" / "user" / f"{ENTRY_NAME}.service"

    @property
    def wants_link(self) -> Path:
        return self.config_home / "systemd" / "user" / f"{SESSION_TARGET}.wants" / f"{ENTRY_NAME}.service"

    def _system_desktop_files(self) -> list[Path]:
        return [d / "autostart" / f"{ENTRY_NAME}.desktop" for d in self.config_dirs]

    # ---- interface ------------------------------------------------------------------------------

    def enable(self) -> AutostartStatus:
        if self.systemd:
            atomic_write_text(self.unit_file, unit_text(self.command))
            self.wants_link.parent.mkdir(parents=True, exist_ok=True)
            if self.wants_link.is_symlink() or self.wants_link.exists():
                self.wants_link.unlink()
            os.symlink(os.path.relpath(self.unit_file, self.wants_link.parent), self.wants_link)
            self._xdg_off()  # one mechanism at a time, or the tray would be started twice
            self._daemon_reload()
        else:
            # Overwrites a `Hidden=true` the user left earlier: this call is the user turning it back on.
            atomic_write_text(self.desktop_file, desktop_entry_text(self.command))
            self._systemd_off()
        return self.status()

    def disable(self) -> AutostartStatus:
        self._systemd_off()
        self._xdg_off()
        return self.status()

    def status(self) -> AutostartStatus:
        unit = self._systemd_status()
        if unit.enabled:
            return unit
        xdg = self._xdg_status()
        if xdg.enabled or xdg.user_disabled or not unit.where:
            return xdg
        return unit

    # ---- XDG ------------------------------------------------------------------------------------

    def _xdg_status(self) -> AutostartStatus:
        # The user's file shadows a system-wide one of the same name (XDG Autostart spec).
        candidates = [self.desktop_file, *self._system_desktop_files()]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return AutostartStatus(False, None, mechanism="xdg", detail="no autostart entry")
        try:
            keys = read_desktop_entry(path)
        except OSError as exc:
            return AutostartStatus(False, str(path), mechanism="xdg", detail=f"cannot read {path}: {exc}")
        argv = tuple(exec_unquote(keys.get("Exec", "")))
        reason = user_switched_off(keys)
        if reason and path == self.desktop_file and keys.get(MANAGED_KEY) == OVERRIDE:
            # Our own override that switches off a system-wide entry: off by `disable`, not by the desktop.
            return AutostartStatus(False, str(path), mechanism="xdg", command=argv,
                                   detail=f"{path} switches off the system-wide entry")
        if reason:
            return AutostartStatus(
                False, str(path), user_disabled=True, mechanism="xdg", command=argv,
                detail=f"switched off in the desktop's startup settings ({reason} in {path})",
            )
        return AutostartStatus(True, str(path), mechanism="xdg", command=argv, detail=f"starts at login via {path}")

    def _xdg_off(self) -> None:
        path = self.desktop_file
        if path.is_file():
            keys = read_desktop_entry(path)
            if _is_true(keys.get(MANAGED_KEY)) or keys.get(MANAGED_KEY) == OVERRIDE:
                path.unlink()
            elif not user_switched_off(keys):
                # Someone else's file for this app (a distro package, the user by hand): switch it off
                # the way desktops do instead of deleting it.
                atomic_write_text(path, _with_key(path.read_text(encoding="utf-8"), "Hidden", "true"))
        if not path.exists() and any(p.is_file() and not user_switched_off(read_desktop_entry(p))
                                     for p in self._system_desktop_files()):
            # A system-wide entry is only switched off by a user file with Hidden=true (XDG Autostart spec).
            ours = f"{MANAGED_KEY}=true"
            text = desktop_entry_text(self.command).replace(ours, f"{MANAGED_KEY}={OVERRIDE}\nHidden=true")
            atomic_write_text(path, text)
        _remove_empty(path.parent)

    # ---- systemd --------------------------------------------------------------------------------

    def _systemd_status(self) -> AutostartStatus:
        if not self.unit_file.is_file():
            return AutostartStatus(False, None, mechanism="systemd", detail="no systemd user unit")
        argv: tuple[str, ...] = ()
        for line in self.unit_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("ExecStart="):
                argv = tuple(_systemd_unquote(line.partition("=")[2]))
        if self.wants_link.is_symlink() or self.wants_link.exists():
            return AutostartStatus(True, str(self.unit_file), mechanism="systemd", command=argv,
                                   detail=f"starts with {SESSION_TARGET} via {self.unit_file}")
        return AutostartStatus(
            False, str(self.unit_file), user_disabled=True, mechanism="systemd", command=argv,
            detail=f"the unit exists but is disabled (systemctl --user disable {ENTRY_NAME})",
        )

    def _systemd_off(self) -> None:
        changed = False
        if self.wants_link.is_symlink() or self.wants_link.exists():
            self.wants_link.unlink()
            changed = True
        if self.unit_file.is_file() and self.unit_file.read_text(encoding="utf-8").startswith(UNIT_MARKER):
            self.unit_file.unlink()
            changed = True
        _remove_empty(self.wants_link.parent, self.unit_file.parent, self.unit_file.parent.parent)
        if changed:
            self._daemon_reload()

    def _daemon_reload(self) -> None:
        if shutil.which("systemctl") is None and self._run is _default_runner:
            return
        # No user manager (a container, a non-systemd distro) is fine: it reads the files at next login.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._run(["systemctl", "--user", "daemon-reload"])


def _remove_empty(*dirs: Path) -> None:
    """rmdir each directory that is empty (innermost first): disable leaves no empty folders behind."""
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()


def _with_key(text: str, key: str, value: str) -> str:
    """`text` with `key=value` set in its [Desktop Entry] group."""
    lines = text.splitlines()
    out: list[str] = []
    group = None
    done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if group == "Desktop Entry" and not done:
                out.append(f"{key}={value}")
                done = True
            group = stripped[1:-1]
        elif group == "Desktop Entry" and stripped.split("=", 1)[0].strip() == key:
            out.append(f"{key}={value}")
            done = True
            continue
        out.append(line)
    if not done:
        out.append(f"{key}={value}")
    return "\n".join(out) + "\n"


def _systemd_unquote(value: str) -> list[str]:
    args = _split_double_quoted(value)
    return [a.replace("%%", "%").replace("$$", "$") for a in args]


def _split_double_quoted(text: str) -> list[str]:
    """Split on whitespace outside double quotes; inside them a backslash escapes the next character.

    Both `Exec=` (after its string unescaping) and systemd's `ExecStart=` quote arguments this way.
    """
    args: list[str] = []
    cur: list[str] = []
    have = quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                quoted = False
            else:
                cur.append(c)
        elif c == '"':
            quoted = have = True
        elif c.isspace():
            if have:
                args.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args
