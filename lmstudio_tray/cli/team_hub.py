"""What `lmstudio-tray team status` and `team report` say about the team hub: its state as the running lmstudio-tray
last saw it, who uses what on the shared instances (`team-uses.json`), and the team's merged usage read from the
hub (or, when the hub does not answer, the copy the running lmstudio-tray last got from it)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lmstudio_tray.cli._common import RegisteringStore
from lmstudio_tray.core.config.team import TeamProfile
from lmstudio_tray.core.control import team_sync
from lmstudio_tray.core.models import HubState, WireEnum

TIMEOUT = 10.0


class HubReportError(Exception):
    """No team usage could be had from the hub (nor a copy of it); the message says why and what to do."""


class ReportSource(WireEnum):
    """Where `team report`'s figures come from (`source.kind` of `--json`)."""

    HUB = "hub"  # read from the hub now
    COPY = "copy"  # the running lmstudio-tray's last copy of the hub's answer
    FILES = "files"  # the summaries members exported into a folder


@dataclass(frozen=True)
class HubReport:
    """The team's merged usage and where it came from."""

    report: dict[str, Any]
    source: ReportSource  # HUB or COPY
    hub: str
    received: float
    problem: str | None = None  # why the copy was used

    def source_json(self) -> dict[str, Any]:
        """`team report --json`'s `source`."""
        return {"kind": self.source, "hub": self.hub, "received": self.received, "problem": self.problem}

    def where(self) -> str:
        """Where the figures come from, in words."""
        if self.source is ReportSource.HUB:
            return f"the team hub {self.hub} (now)"
        return f"the copy lmstudio-tray last got from the team hub {self.hub}, at {_when(self.received)}"

    def source_text(self) -> str:
        """One line saying where the figures come from."""
        return f"Source: {self.where()}"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def running_hub_status() -> dict[str, Any] | None:
    """`team_hub` of the running lmstudio-tray's /v1/status ({"state", "message", "member"}); None when no
    lmstudio-tray runs or its profile names no hub."""
    import httpx

    from lmstudio_tray.core.support.endpoint_file import read_endpoint

    ep = read_endpoint()
    if ep is None:
        return None
    try:
        # the loopback endpoint, never through a proxy: the token would travel there
        answer = httpx.get(ep.url + "/v1/status", headers={"authorization": f"Bearer {ep.token}"}, timeout=2.0,
                           trust_env=False)
        status = answer.json().get("team_hub") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return status if isinstance(status, dict) else None


def others_in_use(profile: TeamProfile, now: float | None = None) -> list[dict[str, Any]]:
    """The other members' uses on the shared instances as the hub last told the running lmstudio-tray, latest first:
    [{"member", "instance", "model", "age_seconds", "busy"}] (`busy`: within the team's busy window)."""
    moment = time.time() if now is None else now
    rows = [{"member": member, "instance": instance, "model": model, "age_seconds": round(max(0.0, moment - t), 1),
             "busy": moment - t < profile.busy_minutes * 60}
            for instance, models in team_sync.read_others().items() if instance in profile.shared_instances
            for model, seen in models.items() for member, t in seen if moment - t < team_sync.REPORT_WITHIN]
    return sorted(rows, key=lambda r: r["age_seconds"])


def hub_status_lines(profile: TeamProfile) -> list[str]:
    """`team status`'s lines about the hub: its state and who uses what."""
    if not profile.hub:
        return []
    status = running_hub_status()
    if status is None:
        lines = [f"  team hub: {profile.hub} (its state is known to a running `lmstudio-tray serve` or tray; "
                 "none runs here)"]
    else:
        lines = [status_line(profile.hub, status)]
    others = others_in_use(profile)
    if not others:
        lines.append("  other members' models: none used in the last day, as the hub last said")
    for row in others:
        busy = " (in use)" if row["busy"] else ""
        lines.append(f"  {row['instance']}: {row['model']} used by {row['member']} "
                     f"{_age(row['age_seconds'])} ago{busy}")
    return lines


def status_line(hub: str, status: dict[str, Any]) -> str:
    """The hub's state line from the running lmstudio-tray's `team_hub`: the member name when connected, and the
    message whatever the state (a connected hub's message is a note, such as a refused usage summary)."""
    try:
        state: HubState | str = HubState(str(status.get("state")))
    except ValueError:  # a newer lmstudio-tray's state: shown as it is
        state = str(status.get("state"))
    who = f" as {status['member']}" if state is HubState.CONNECTED and status.get("member") else ""
    why = f": {status['message']}" if status.get("message") else ""
    return f"  team hub: {hub}, {state}{who}{why}"


def _age(seconds: float) -> str:
    from lmstudio_tray.core.support.units import format_duration

    return format_duration(seconds)


def hub_status_json(profile: TeamProfile) -> dict[str, Any] | None:
    """`team status --json`'s `hub`."""
    if not profile.hub:
        return None
    return {"url": profile.hub, "status": running_hub_status(), "others": others_in_use(profile)}


def team_usage_from_hub(profile: TeamProfile, store: RegisteringStore | None = None) -> HubReport:
    """The team's merged usage from the hub the profile names; when the hub does not answer, the copy the running
    lmstudio-tray last got (saying so). HubReportError when neither can be had, or the hub refuses the token."""
    import httpx

    if not profile.hub:
        raise HubReportError(f"the team profile {profile.source} names no hub ([team] hub); give the folder "
                             "members export into: `lmstudio-tray team report DIR`")
    try:
        url = team_sync.check_url(profile.hub)
    except team_sync.HubRefused as exc:
        raise HubReportError(str(exc)) from None
    token = (store or RegisteringStore()).get(team_sync.HUB_TOKEN)
    if not token:
        raise HubReportError("no hub token: store the one the hub's admin gave you with "
                             f"`lmstudio-tray token set {team_sync.HUB_TOKEN}`")
    try:
        answer = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT,
                           trust_env=team_sync.trust_env(url))  # a plain-HTTP hub never through a proxy
        if answer.status_code in (401, 403):
            raise HubReportError(f"the team hub {url} refused this member's token: {_error(answer)}")
        if answer.status_code == 429:  # this member reads too often (a loop, a script with its token)
            wait = team_sync.retry_after(answer.headers.get("Retry-After"))
            return _copy(url, f"the team hub {url} asked this member to wait {wait:g} s: {_error(answer)}")
        answer.raise_for_status()
        report = answer.json()
        if not isinstance(report, dict) or not isinstance(report.get("models"), list):
            raise ValueError("not a team usage answer")
    except (httpx.HTTPError, ValueError) as exc:
        untrusted = team_sync.untrusted_certificate(exc, url)
        if untrusted:
            raise HubReportError(f"the team hub {untrusted}") from None
        return _copy(url, f"the team hub {url} did not answer ({type(exc).__name__})")
    return HubReport(report, ReportSource.HUB, url, time.time())


def _error(answer: Any) -> str:
    try:
        return str(answer.json().get("error", ""))
    except (ValueError, AttributeError):
        return str(answer.text)[:200]


def _copy(url: str, problem: str) -> HubReport:
    kept = team_sync.read_usage()
    if kept is None:
        raise HubReportError(f"{problem}, and no copy of the team's usage is kept here (a running lmstudio-tray "
                             "keeps the last one it got); try again later, or give the folder members export into: "
                             "`lmstudio-tray team report DIR`")
    return HubReport(kept["report"], ReportSource.COPY, str(kept.get("hub") or url), float(kept["received"]),
                     problem)
