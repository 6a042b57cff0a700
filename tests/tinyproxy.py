"""A real forwarding proxy for tests: Debian's tinyproxy (installed by scripts/deps/desktop.sh), whose log
tells which requests it carried.

With `outgoing`, tinyproxy opens its connections to the targets from that loopback address (its `Bind`
setting), so a target server tells a request the proxy carried from a direct one by the peer address alone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "LMSTUDIO_TRAY_REQUIRE_DESKTOP"  # the CI switch for the Debian packages of scripts/deps/desktop.sh
_REQUEST_LINE = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tinyproxy:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def carried(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy took, in order."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return [(m.group(1), m.group(2)) for m in _REQUEST_LINE.finditer(text)]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_tinyproxy(workdir: Path, extra: str = "", *, outgoing: str | None = None) -> Tinyproxy:
    binary = shutil.which("tinyproxy")
    if binary is None:
        problem = "tinyproxy is not installed; run scripts/deps/desktop.sh (as root)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    workdir.mkdir(parents=True, exist_ok=True)
    if outgoing is not None:
        extra = f"Bind {outgoing}\n{extra}"
    for attempt in range(5):  # the free port may be taken by someone else before tinyproxy binds it
        port, log = free_port(), workdir / f"tinyproxy-{attempt}.log"
        conf = workdir / f"tinyproxy-{attempt}.conf"
        conf.write_text(f'Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile "{log}"\nLogLevel Connect\n'
                        f"MaxClients 50\nAllow 127.0.0.1\n{extra}")
        proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if _listening(port):
                return Tinyproxy(proc, port, log)
            time.sleep(0.02)
        proc.kill()
        proc.wait(10)
    pytest.fail("tinyproxy did not start")


