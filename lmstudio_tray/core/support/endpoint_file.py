"""The discovery file `endpoint.json`: how the OpenCode plugin (and the CLI) find the running endpoint.

It holds the bearer token, so it is written 0600 in a private state dir, atomically (a reader never sees
half a file), and removed on a clean exit. A file left behind by a crash names a dead pid and is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write


@dataclass(frozen=True)
class EndpointInfo:
    """What `endpoint.json` holds: where the running endpoint listens, its bearer token and its process."""

    url: str
    token: str
    pid: int
    started_at: float = 0.0
    version: str = ""

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object."""
        return {"url": self.url, "token": self.token, "pid": self.pid, "started_at": self.started_at,
                "version": self.version}


def pid_alive(pid: int) -> bool:
    """Does process `pid` run (not a zombie)? This process counts; psutil when installed, else `kill(pid, 0)`."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        import psutil

        return bool(psutil.pid_exists(pid)) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # psutil missing or the process vanished between the two calls
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return False
        return True


def write_endpoint(info: EndpointInfo, path: Path | None = None) -> Path:
    """Write `info` to `path` (default: the state dir's `endpoint.json`), 0600 from the first byte, atomically;
    returns the path. Blocking: the endpoint calls it in a worker thread."""
    target = path or paths.endpoint_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # Windows, or a dir we do not own: the file mode still protects
        os.chmod(target.parent, 0o700)
    # the temporary file is 0600 from its first byte: the token is never readable by others, not even briefly
    atomic_write(target, json.dumps(info.to_json()), mode=0o600)
    return target


def read_endpoint(path: Path | None = None, *, include_stale: bool = False) -> EndpointInfo | None:
    """The endpoint of a running lmstudio-tray, or None (no file, unreadable, or its process is gone)."""
    target = path or paths.endpoint_file()
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        info = EndpointInfo(
            url=str(data["url"]),
            token=str(data["token"]),
            pid=int(data["pid"]),
            started_at=float(data.get("started_at", 0.0)),
            version=str(data.get("version", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not include_stale and not pid_alive(info.pid):
        return None
    return info


def remove_endpoint(token: str, path: Path | None = None) -> bool:
    """Remove the file only if it is still ours (same token): a newer instance may have replaced it."""
    target = path or paths.endpoint_file()
    current = read_endpoint(target, include_stale=True)
    if current is None or current.token != token:
        return False
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    return True


class EndpointUnavailable(Exception):
    """No running endpoint gave what was asked; the message says why and what to do."""


def dashboard_link(path: Path | None = None, *, timeout: float = 10.0) -> str:
    """A single-use sign-in link to the running endpoint's dashboard (valid for a minute).

    Blocking (a loopback HTTP call): for the CLI, or a worker thread of the tray. The standard library's
    client is enough for one loopback request, and it is told to ignore HTTP(S)_PROXY: loopback is never
    proxied.
    """
    info = read_endpoint(path)
    if info is None:
        raise EndpointUnavailable("no running endpoint found; start the tray or `lmstudio-tray serve` first.")
    request = urllib.request.Request(info.url + "/v1/dashboard/code", method="POST",
                                     headers={"authorization": f"Bearer {info.token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return str(json.loads(response.read())["url"])
    except urllib.error.HTTPError as exc:
        raise EndpointUnavailable(f"the endpoint at {info.url} refused (HTTP {exc.code}); is it an older "
                                  "lmstudio-tray? Restart the tray or `lmstudio-tray serve`.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EndpointUnavailable(f"the endpoint at {info.url} did not answer ({exc}).") from None
