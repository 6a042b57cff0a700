"""Getting a team profile's text: from a path or over HTTPS, with the last good copy kept in the cache dir
as the fallback when the source is unreachable or invalid. Blocking: never on the core's loop."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace
from pathlib import Path

from lmstudio_tray.core.config.team import TeamProfile, parse_profile
from lmstudio_tray.core.errors import TeamProfileError
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write

log = logging.getLogger(__name__)
FETCH_TIMEOUT = 3.0
REFRESH_SECONDS = 600.0  # a fetched URL is reused this long before it is fetched again


def cache_file(source: str) -> Path:
    """Where the last good copy of the profile at `source` is kept: the cache dir's `team/` folder, named by a hash of
    `source`."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return paths.cache_dir() / "team" / f"{digest}.toml"


def _fetch(source: str) -> str:
    if source.startswith("https://") or source.startswith("http://"):
        if source.startswith("http://"):
            raise TeamProfileError(f"{source}: team profiles are fetched over https:// only")
        import httpx

        try:
            r = httpx.get(source, timeout=FETCH_TIMEOUT, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise TeamProfileError(f"cannot fetch {source} ({type(exc).__name__}: {exc})") from None
        if r.status_code != 200:
            raise TeamProfileError(f"{source} answered HTTP {r.status_code}")
        return r.text
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TeamProfileError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None


def _cached(source: str, reason: str) -> TeamProfile:
    path = cache_file(source)
    try:
        text = path.read_text(encoding="utf-8")
        fetched_at = path.stat().st_mtime
        profile = parse_profile(text, source, fetched_at=fetched_at)
    except (OSError, TeamProfileError):
        raise TeamProfileError(f"team profile {source} is unusable ({reason}) and there is no good copy "
                               "from before; fix it or unset team_profile") from None
    age = time.strftime("%Y-%m-%d %H:%M", time.localtime(fetched_at))
    warning = f"team profile {source}: {reason}; using the last good copy from {age}"
    log.warning("%s", warning)
    return replace(profile, from_cache=True, warning=warning)


def load_team(source: str, *, refresh_seconds: float = REFRESH_SECONDS) -> TeamProfile:
    """The profile at `source`; when it is unreachable or invalid, the last good copy with a warning."""
    cache = cache_file(source)
    remote = source.startswith("https://")
    if remote and refresh_seconds > 0:
        try:
            fresh = time.time() - cache.stat().st_mtime < refresh_seconds
        except OSError:
            fresh = False
        if fresh:
            try:
                return parse_profile(cache.read_text(encoding="utf-8"), source, fetched_at=cache.stat().st_mtime)
            except (OSError, TeamProfileError):
                pass  # a damaged cache: fetch again below
    try:
        text = _fetch(source)
        profile = parse_profile(text, source, fetched_at=time.time())
    except TeamProfileError as exc:
        reason = str(exc).removeprefix(f"{source}: ")
        return _cached(source, reason)
    try:
        if not cache.exists() or cache.read_text(encoding="utf-8") != text or remote:
            atomic_write(cache, text, 0o600)
    except OSError as exc:  # a read-only cache dir only costs the fallback
        log.info("could not keep a copy of the team profile in %s: %s", cache, exc)
    return profile


