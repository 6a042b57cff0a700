"""macOS: a user LaunchAgent `~/Library/LaunchAgents/io.github.lmstudio-tray.plist` with `RunAtLoad`.

launchd loads every plist in that folder at login; `enable` also bootstraps it into the running GUI
session (`launchctl bootstrap gui/$UID`) and `disable` boots it out, so the change holds without a
logout. The user's own switch (System Settings > General > Login Items, "Allow in the Background") shows
up as a disabled service in `launchctl print-disabled gui/$UID`; that is `user_disabled`.

`launchctl` is reached through an injectable runner (default: the `launchctl` on PATH, then
/bin/launchctl), so tests drive a fake one on any OS.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmstudio_tray.core.support.files import atomic_write_bytes
from lmstudio_tray.platform.autostart.base import BUNDLE_ID, Autostart, AutostartError, AutostartStatus
from lmstudio_tray.platform.command import launch_command

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _default_runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    argv = list(argv)
    if argv and argv[0] == "launchctl":
        argv[0] = shutil.which("launchctl") or "/bin/launchctl"
    return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)


def agent_plist(command: Sequence[str], label: str = BUNDLE_ID) -> dict[str, Any]:
    return {
        "Label": label,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        # Quit from the menu means quit: launchd must not restart the tray.
        "KeepAlive": False,
        "ProcessType": "Interactive",
        # Only in a graphical login, never in an ssh session.
        "LimitLoadToSessionType": "Aqua",
    }


class MacAutostart(Autostart):
    mechanism = "launchagent"

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        agents_dir: Path | None = None,
        runner: Runner | None = None,
        uid: int | None = None,
        label: str = BUNDLE_ID,
    ) -> None:
        self.command = list(command) if command else launch_command()
        self.agents_dir = agents_dir or Path.home() / "Library" / "LaunchAgents"
        self._run = runner or _default_runner
        self.uid = uid if uid is not None else (os.getuid() if hasattr(os, "getuid") else 0)
        self.label = label

    @property
    def plist_path(self) -> Path:
        return self.agents_dir / f"{self.label}.plist"

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    def _launchctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return self._run(["launchctl", *args])
        except (OSError, subprocess.SubprocessError) as exc:
            raise AutostartError(f"could not run launchctl ({exc}); is this macOS?") from exc

    def is_loaded(self) -> bool:
        return self._launchctl("print", f"{self.domain}/{self.label}").returncode == 0

    def _switched_off_by_user(self) -> bool:
        out = self._launchctl("print-disabled", self.domain).stdout or ""
        # Lines look like `"io.github.lmstudio-tray" => disabled` (macOS 13+) or `=> true` (older).
        match = re.search(rf'"{re.escape(self.label)}"\s*=>\s*(\w+)', out)
        return bool(match and match.group(1) in ("disabled", "true"))

    # ---- interface ------------------------------------------------------------------------------

    def enable(self) -> AutostartStatus:
        data = plistlib.dumps(agent_plist(self.command, self.label), fmt=plistlib.FMT_XML)
        atomic_write_bytes(self.plist_path, data)
        if self._switched_off_by_user():
            self._launchctl("enable", f"{self.domain}/{self.label}")  # the user turned it back on, here
        if self.is_loaded():
            # Reload so launchd sees a changed command line (after an upgrade that moved the app).
            self._launchctl("bootout", f"{self.domain}/{self.label}")
        result = self._launchctl("bootstrap", self.domain, str(self.plist_path))
        if result.returncode != 0 and not self.is_loaded():
            # The plist is in place and launchd reads it at next login; say why it is not running now.
            raise AutostartError(
                f"wrote {self.plist_path} but `launchctl bootstrap {self.domain}` failed: "
                f"{(result.stderr or result.stdout).strip() or f'exit {result.returncode}'}. "
                "It takes effect at next login."
            )
        return self.status()

    def disable(self) -> AutostartStatus:
        if self.is_loaded():
            result = self._launchctl("bootout", f"{self.domain}/{self.label}")
            if result.returncode != 0 and self.is_loaded():
                raise AutostartError(
                    f"`launchctl bootout {self.domain}/{self.label}` failed: "
                    f"{(result.stderr or result.stdout).strip() or f'exit {result.returncode}'}"
                )
        if self.plist_path.exists():
            self.plist_path.unlink()
        return self.status()

    def status(self) -> AutostartStatus:
        path = self.plist_path
        if not path.is_file():
            return AutostartStatus(False, None, mechanism=self.mechanism, detail="no LaunchAgent")
        try:
            data = plistlib.loads(path.read_bytes())
        except Exception as exc:  # plistlib raises expat, ValueError, InvalidFileException... for junk
            return AutostartStatus(False, str(path), mechanism=self.mechanism,
                                   detail=f"{path} is not a readable plist ({exc}); `autostart enable` rewrites it")
        argv = tuple(str(a) for a in data.get("ProgramArguments", ()))
        loaded = self.is_loaded()
        extra = {"loaded": loaded}
        if data.get("Disabled") is True or self._switched_off_by_user():
            return AutostartStatus(False, str(path), user_disabled=True, mechanism=self.mechanism, command=argv,
                                   detail="switched off in System Settings > General > Login Items", extra=extra)
        if not data.get("RunAtLoad"):
            return AutostartStatus(False, str(path), mechanism=self.mechanism, command=argv,
                                   detail=f"{path} has no RunAtLoad", extra=extra)
        return AutostartStatus(True, str(path), mechanism=self.mechanism, command=argv,
                               detail=f"starts at login via {path}", extra=extra)
