"""`doctor --export FILE`: one zip a person can attach to a bug report, with nothing secret in it.

Contents: versions, the doctor results, the status of every instance, the config with secrets removed,
recent logs (redacted again, whatever wrote them), a stats summary from the analytics store when there is
one, and the telemetry counts when telemetry is on. Secrets are removed twice: each part is built
without them, then every member is scrubbed of every token we know of (keyring, env, endpoint file)
before it is written, and the archive is checked once more after writing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from lmstudio_tray import __version__
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_writer
from lmstudio_tray.core.support.logs import (
    DEFAULT_BACKUPS,
    LOG_FILE_NAME,
    REDACTED,
    redact,
    register_env_tokens,
    register_secret,
    registered_secrets,
)
from lmstudio_tray.diagnostics.checks import Diagnosis

LOG_LINES = 3000
PACKAGES = ("httpx", "pydantic", "platformdirs", "keyring", "fastapi", "uvicorn", "pystray", "pillow",
            "desktop-notifier", "plyer", "psutil", "rich", "tomlkit", "jeepney", "python-xlib")
# Log files other surfaces may write next to ours (the tray kept a plain-text one).
EXTRA_LOGS = ("tray.log",)


class ExportError(Exception):
    pass


def versions(diagnosis: Diagnosis) -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    lmstudio = {r.name.split(":", 1)[1]: {"api": r.data.get("api"), "version": r.data.get("version")}
                for r in diagnosis.results if r.name.startswith("instance:")}
    return {
        "lmstudio_tray": __version__,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "desktop": os.environ.get("XDG_CURRENT_DESKTOP") or os.environ.get("DESKTOP_SESSION"),
        "session_type": os.environ.get("XDG_SESSION_TYPE"),
        "packages": packages,
        "lmstudio": lmstudio,
    }


def redacted_config(path: Path) -> str:
    """The config file's text with token-like values and URL passwords removed (or why it is absent)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"# no config file at {path}: every setting has its default\n"
    except OSError as exc:
        return f"# the config file {path} could not be read: {exc.strerror}\n"
    return f"# {path} (secrets removed)\n" + redact(text)


def recent_logs(limit: int = LOG_LINES) -> dict[str, str]:
    """Archive name -> redacted text of the newest lines of each log file we know of."""
    out: dict[str, str] = {}
    log_dir = paths.log_dir()
    for base in (LOG_FILE_NAME, *EXTRA_LOGS):
        files = [log_dir / f"{base}.{i}" for i in range(DEFAULT_BACKUPS, 0, -1)] + [log_dir / base]
        lines: list[str] = []
        for f in files:
            with contextlib.suppress(OSError):
                lines.extend(f.read_text(encoding="utf-8", errors="replace").splitlines())
        if lines:
            out[f"logs/{base}"] = "\n".join(redact(line) for line in lines[-limit:]) + "\n"
    return out


def known_secrets(diagnosis: Diagnosis, endpoint_file: Path | None = None) -> set[str]:
    """Every token this machine holds for lmstudio-tray: instance tokens (keyring, file, env) and the endpoint's."""
    register_env_tokens()
    found: set[str] = set(registered_secrets())
    if diagnosis.config is not None:
        from lmstudio_tray.diagnostics.checks import read_tokens

        found |= {t for t in read_tokens(diagnosis.config).values() if t}
    from lmstudio_tray.core.support.endpoint_file import read_endpoint

    info = read_endpoint(endpoint_file or paths.endpoint_file(), include_stale=True)
    if info is not None and info.token:
        found.add(info.token)
    for secret in found:
        register_secret(secret)
    return found


def build_members(
    diagnosis: Diagnosis,
    config_path: Path,
    status: dict[str, Any] | None,
    *,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, str]:
    members: dict[str, str] = {
        "versions.json": _json(versions(diagnosis)),
        "doctor.json": _json(diagnosis.to_json()),
        "config.toml": redacted_config(config_path),
        "status.json": _json(status if status is not None else {"available": False,
                                                                  "why": "no valid config, so no instance was asked"}),
    }
    members.update(recent_logs())
    if not any(name.startswith("logs/") for name in members):
        members["logs/NONE.txt"] = f"No log files were found in {paths.log_dir()}.\n"
    summary = stats() if stats is not None else _stats_summary()
    if summary.get("available"):
        members["stats.json"] = _json(summary)
    else:
        members["stats-not-included.txt"] = (
            "No usage statistics are included: " + str(summary.get("why", "unknown reason")) + "\n"
        )
    from lmstudio_tray.diagnostics.telemetry import telemetry_file

    with contextlib.suppress(OSError):
        members["telemetry.json"] = telemetry_file().read_text(encoding="utf-8")
    members["README.txt"] = _readme(sorted(members))
    return members


def _stats_summary() -> dict[str, Any]:
    from lmstudio_tray.diagnostics.usage import stats_summary

    return stats_summary()


def scrub(members: dict[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """Remove every known secret, and anything that looks like one, from every member (the second line of defence)."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    out: dict[str, str] = {}
    for name, text in members.items():
        for secret in ordered:
            text = text.replace(secret, REDACTED)
        # Bearer values, URL passwords and token-like keys in any member (an instance url in status.json).
        out[name] = "\n".join(redact(line) for line in text.split("\n"))
    return out


def write_zip(target: Path, members: dict[str, str], secrets: Iterable[str]) -> Path:
    """Write atomically (0600): a crash leaves no half archive; re-read it first to prove no secret is inside."""
    target = target.expanduser()
    if target.is_dir():
        target = target / f"lmstudio-tray-debug-{time.strftime('%Y%m%d-%H%M%S')}.zip"
    if target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    try:
        with atomic_writer(target, mode=0o600) as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, text in sorted(members.items()):
                    zf.writestr(f"lmstudio-tray-debug/{name}", text)
            leaked = find_secrets(fh, secrets)  # the bytes about to be committed, not a copy of them
            if leaked:
                raise ExportError(f"refusing to write the export: a secret survived in {', '.join(leaked)}")
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}; choose another path") from None
    return target


def find_secrets(archive: Path | IO[bytes], secrets: Iterable[str]) -> list[str]:
    """Members of `archive` that contain any of `secrets` (empty when it is clean)."""
    wanted = [s.encode() for s in secrets if s]
    leaked: list[str] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if any(s in data for s in wanted):
                leaked.append(info.filename)
    return leaked


def export(
    target: Path,
    diagnosis: Diagnosis,
    config_path: Path,
    status: dict[str, Any] | None,
    *,
    endpoint_file: Path | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
) -> Path:
    secrets = known_secrets(diagnosis, endpoint_file)
    members = scrub(build_members(diagnosis, config_path, status, stats=stats), secrets)
    return write_zip(target, members, secrets)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


def _readme(names: list[str]) -> str:
    lines = [
        f"lmstudio-tray {__version__} debug export, made {time.strftime('%Y-%m-%d %H:%M:%S %z')}.",
        "",
        "API tokens, the endpoint token, Bearer headers, token-like config values, URL passwords and prompt",
        f"contents were replaced by {REDACTED}. Read it before you share it.",
        "",
        "Files:",
        *(f"  {n}" for n in sorted({*names, "README.txt"})),
    ]
    return "\n".join(lines) + "\n"
