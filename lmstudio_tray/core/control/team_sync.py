"""The member side of the team hub: a core service that reports this machine's model use on the team's shared
instances to the hub named in the team profile (`[team] hub`), reads every member's, and keeps the others' uses in
`team-uses.json` in the state dir, where the shared-instance guard of any lmstudio-tray process reads them.

All HTTP runs in a worker thread (httpx, like the team profile's fetch). Ages cross the wire, never times of day:
this machine sends how long ago each use was by its clock and turns the ages it reads into its own clock's times,
so clocks that disagree by minutes do not matter. An unreachable hub changes nothing here but the status (said
once in the log): the guard keeps what this machine knows, plus the last others' uses read while they are recent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from lmstudio_tray.core.config.team import TeamProfile
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.models import HubState, HubStatus
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.core.support.tasks import cancel_and_wait

log = logging.getLogger(__name__)
HUB_TOKEN = "team-hub"  # the name of the member's hub token in the token store (`lmstudio-tray token set team-hub`)
TIMEOUT = 10.0
REPORT_WITHIN = 24 * 3600  # uses older than this are not reported
USAGE_EVERY = 60.0  # seconds between two usage summaries sent (a summary reads the analytics store: not every round)
USAGE_DAYS = 30.0  # the days a summary counts, as `team export` does by default
TEAM_REPORT = ("members", "names", "models", "instances")  # what is kept of the hub's GET /v1/usage
MAX_RETRY_AFTER = 3600.0  # a hub's Retry-After is honoured up to an hour (a longer one is a misconfigured hub)

# instance -> model -> [(member, this machine's wall time of the member's last use)]
OtherUses = dict[str, dict[str, list[tuple[str, float]]]]


class TeamUsage(Protocol):
    """What the analytics surface offers the team hub's member side (`TeamSync`): this member's anonymised usage
    summary, the figures `lmstudio-tray team export` writes (counts per model and per shared instance, no prompts,
    sessions, agents or times). Declared here rather than in `core/ports.py`, because ports reads types of the
    control modules and a port there for a control module would make an import cycle."""

    def summary(self, shared_instances: Sequence[str], team: str | None, days: float) -> dict[str, Any]:
        """The summary of the last `days`; instances not in `shared_instances` counted as "private". Blocking
        (reads the store): call it off the core loop."""
        ...


def usage_file() -> Path:
    """The team's merged usage as the hub last gave it: `team-usage.json` in the state dir (`team report` reads it
    when the hub does not answer)."""
    return paths.state_dir() / "team-usage.json"


def read_usage(path: Path | None = None) -> dict[str, Any] | None:
    """`team-usage.json` ({"received", "hub", "report"}); None when missing or unreadable. A blocking file read."""
    try:
        raw = json.loads((path or usage_file()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(raw, dict) and isinstance(raw.get("report"), dict) and isinstance(raw.get("received"), (int, float))
    return raw if ok else None


def others_file() -> Path:
    """The other members' uses as last read from the hub: `team-uses.json` in the state dir."""
    return paths.state_dir() / "team-uses.json"


def read_others(path: Path | None = None) -> OtherUses:
    """`team-uses.json`; {} when missing or unreadable. A blocking file read."""
    try:
        raw = json.loads((path or others_file()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: OtherUses = {}
    for instance, models in (raw.items() if isinstance(raw, dict) else ()):
        for model, entries in (models.items() if isinstance(models, dict) else ()):
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], (int, float)):
                    seen = (str(entry[0]), float(entry[1]))
                    out.setdefault(str(instance), {}).setdefault(str(model), []).append(seen)
    return out


class HubRefused(Exception):
    """The sync cannot be done as configured; the message says why and what to do."""


class TokenRefused(HubRefused):
    """The hub refused the member token (401, 403): read it again before the next round."""


class HubBusy(Exception):
    """The hub answered 429: this member sends or reads too often; wait `retry_after` seconds before the next
    round."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """`url` without a trailing slash; HubRefused unless it is https://, or http:// to this machine (the member token
    must not cross a network in clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubRefused(f"[team] hub = {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise HubRefused(f"[team] hub = {url!r}: the member token is not sent over plain HTTP to another machine; "
                         "serve the hub with --tls-cert/--tls-key and use https://")
    return url.rstrip("/")


def trust_env(url: str) -> bool:
    """Whether httpx may take proxies (and SSL_CERT_FILE) from the environment for the hub at `url`: only over
    https, where a proxy sees a CONNECT and never the token. A plain-HTTP hub is on this machine (`check_url`), and
    httpx would send it, token in clear, through HTTP_PROXY unless NO_PROXY names 127.0.0.1."""
    return urlsplit(url).scheme == "https"


class TeamSync:
    """Reports this machine's uses to the team hub every `[team] hub_every` seconds and keeps the others' uses."""

    def __init__(self, team: Callable[[], TeamProfile | None], uses: ModelUseLog, token: Callable[[], str | None],
                 *, others: Path | None = None, usage_path: Path | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`team`: the profile in effect (read at each round); `uses`: this machine's record; `token`: the member's hub
        token (blocking: called in the worker thread); `sleep`: the wait between rounds."""
        self.team = team
        self.uses = uses
        self.token = token
        self.others_path = others or others_file()
        self.usage_path = usage_path or usage_file()
        self.sleep = sleep
        self.status = HubStatus()
        # the other members' uses and the team's usage as the hub last told: each replaced whole by the worker thread,
        # so readers on any thread (the tray's menu, the dashboard) take them as they are, without a lock
        self.others: OtherUses = {}
        self.team_usage: dict[str, Any] | None = None  # {"received", "hub", "report"} as in `team-usage.json`
        self._usage: TeamUsage | None = None
        self._usage_sent = -USAGE_EVERY
        self._usage_note = ""  # why the hub refused the last usage summary ("" when it took it): said in the status
        self._task: asyncio.Task[None] | None = None
        self._hold = 0.0  # seconds the hub asked this member to wait (Retry-After), for the next pause only
        # the token as last read: the keyring (D-Bus, maybe a prompt) is asked again only when there is none yet, the
        # hub refused it, or `forget_token` says it changed, not at every round (as often as every 0.2 s)
        self._token: str | None = None

    async def start(self, usage: TeamUsage | None = None) -> None:
        """Start the rounds on the core's loop (each round's HTTP runs in a worker thread). `usage`: where this
        member's usage summary comes from (the analytics, handed over by the composition root); None sends none."""
        self._usage = usage
        self.others = await asyncio.to_thread(read_others, self.others_path)  # what the last run heard, until a round
        self.team_usage = await asyncio.to_thread(read_usage, self.usage_path)
        self._task = asyncio.create_task(self._run(), name="team-hub-sync")

    async def stop(self) -> None:
        """Stop the rounds (a round in a worker thread finishes on its own, within its timeout)."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            team: TeamProfile | None = None
            try:
                team = self.team()
                if team is not None and team.hub:
                    self._set(await asyncio.to_thread(self._round, team))
                else:
                    self._set(HubStatus())
            except Exception as exc:  # a failed round (a full disk, a broken profile) must not end the service
                log.debug("team hub round failed", exc_info=True)
                self._set(HubStatus(HubState.UNREACHABLE, f"the last round failed: {type(exc).__name__}: {exc}"))
            pause, self._hold = max(team.hub_every if team is not None else 5.0, self._hold), 0.0
            await self.sleep(pause)

    def forget_token(self) -> None:
        """The member token changed (stored or deleted in this process): read it again at the next round."""
        self._token = None

    def _set(self, status: HubStatus) -> None:
        """Keep `status`; log a change of state once, not at every round."""
        if status.state is not self.status.state:
            level = logging.INFO if status.state in (HubState.CONNECTED, HubState.OFF) else logging.WARNING
            log.log(level, "team hub: %s%s", status.state.value, f": {status.message}" if status.message else "")
        self.status = status

    def _round(self, team: TeamProfile) -> HubStatus:
        """One report and one read (blocking)."""
        import httpx

        try:
            url = check_url(team.hub or "")
            token = self._token = self._token or self.token()
            if not token:
                raise HubRefused(f"no hub token: store the one the hub's admin gave you with "
                                 f"`lmstudio-tray token set {HUB_TOKEN}`")
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(timeout=TIMEOUT, headers=headers, trust_env=trust_env(url)) as client:
                sent = client.post(f"{url}/v1/uses", json={"uses": self._mine(team)})
                _check(sent)
                member = str(sent.json().get("member"))
                got = client.get(f"{url}/v1/uses")
                _check(got)
                self._keep_others(got.json().get("uses", []), member)
                if self._usage is not None and time.monotonic() - self._usage_sent >= USAGE_EVERY:
                    self._share_usage(client, url, team, self._usage)
        except HubRefused as exc:
            if isinstance(exc, TokenRefused):
                self._token = None  # perhaps replaced since (`token set team-hub`): read it again next round
            return HubStatus(HubState.REFUSED, str(exc))
        except HubBusy as exc:
            self._hold = exc.retry_after
            return HubStatus(HubState.LIMITED, f"the hub asked this member to wait {exc.retry_after:g} s before "
                             f"its next report or read: {exc}")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            untrusted = untrusted_certificate(exc, team.hub or "")
            if untrusted:
                return HubStatus(HubState.REFUSED, untrusted)
            return HubStatus(HubState.UNREACHABLE, f"{team.hub} did not answer ({type(exc).__name__}); "
                             "only the uses seen on this machine are known")
        return HubStatus(HubState.CONNECTED, self._usage_note, member)

    def _mine(self, team: TeamProfile) -> list[dict[str, Any]]:
        now = time.time()
        return [{"instance": instance, "model": model, "age_seconds": round(max(0.0, now - t), 1)}
                for instance, models in self.uses.read().items() if instance in team.shared_instances
                for model, t in models.items() if now - t < REPORT_WITHIN]

    def _share_usage(self, client: Any, url: str, team: TeamProfile, usage: TeamUsage) -> None:
        """Send this member's usage summary, then keep the team's merged usage the hub answers (blocking). A summary
        the hub refuses does not make the round refused (the uses went through): it becomes a note of the status,
        logged once; tried or not, the next one waits USAGE_EVERY (it reads 30 days of analytics)."""
        self._usage_sent = time.monotonic()
        summary = usage.summary(team.shared_instances, team.name, USAGE_DAYS)
        sent = client.post(f"{url}/v1/usage", json=summary)
        if sent.status_code == 404:  # a hub from before team usage: it keeps the uses, that is all
            return
        try:
            _check(sent)
        except HubRefused:
            note = f"the hub refused this member's usage summary ({sent.status_code}): {_why(sent)}"
            if note != self._usage_note:
                log.warning("team hub: %s", note)
            self._usage_note = note
            return
        self._usage_note = ""
        got = client.get(f"{url}/v1/usage")
        _check(got)
        report = got.json()
        if not isinstance(report, dict):
            raise ValueError("the hub's usage answer is not an object")
        # the totals only: an older hub also answered each member's own summary, which this machine must not keep
        report = {key: report[key] for key in TEAM_REPORT if key in report}
        kept = {"received": time.time(), "hub": url, "report": report}
        atomic_write(self.usage_path, json.dumps(kept), 0o600)
        self.team_usage = kept

    def _keep_others(self, uses: list[Any], member: str) -> None:
        now = time.time()
        out: OtherUses = {}
        for use in uses:
            if not isinstance(use, dict) or use.get("member") == member:
                continue  # this machine's own uses are in its ModelUseLog
            if isinstance(use.get("age_seconds"), (int, float)):
                out.setdefault(str(use.get("instance")), {}).setdefault(str(use.get("model")), []).append(
                    (str(use.get("member")), now - float(use["age_seconds"])))
        atomic_write(self.others_path, json.dumps(out), 0o600)
        self.others = out


def untrusted_certificate(exc: BaseException, hub: str) -> str | None:
    """What to do when `exc` (an httpx error) came from a hub certificate this machine does not trust; else None."""
    import ssl  # here: a plain-http round, or none at all, needs no ssl module

    seen: BaseException | None = exc
    for _ in range(8):  # httpx -> httpcore -> ssl: a short chain
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (f"{hub}: its TLS certificate is not trusted here ({seen.verify_message}); for a certificate of "
                    "your own CA or a self-signed one, set SSL_CERT_FILE to its PEM file")
        seen = seen.__cause__ or seen.__context__
    return None


def _check(response: Any) -> None:
    if not 400 <= response.status_code < 500:
        response.raise_for_status()  # a 5xx: the hub failed, as if it did not answer
        return
    why = _why(response)
    if response.status_code in (401, 403):
        raise TokenRefused(f"the hub refused this member's token: {why}")
    if response.status_code == 429:
        raise HubBusy(why, retry_after(response.headers.get("Retry-After")))
    raise HubRefused(f"the hub refused the report ({response.status_code}): {why}")


def _why(response: Any) -> str:
    """The hub's reason for a refusal (its JSON `error`), or the start of the body."""
    try:
        return str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        return str(response.text[:200])


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), within 1 s and MAX_RETRY_AFTER."""
    seconds = 1.0
    if value:
        try:
            seconds = float(value)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - now()
    return min(max(seconds, 1.0), MAX_RETRY_AFTER) if seconds == seconds else 1.0  # NaN: 1 s
