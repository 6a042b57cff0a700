"""The shared-instance guard: on an instance the team shares, a model that served requests lately is not
unloaded or switched away without `--force` (a person's decision; agents cannot force)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from lmstudio_tray.core.config.team import TeamProfile
from lmstudio_tray.core.control.model_use import ModelUseLog
from lmstudio_tray.core.errors import SharedInstanceBusy
from lmstudio_tray.core.models import InstanceSnapshot, ModelType


def shares(team: TeamProfile | None, instance: str) -> bool:
    """Whether `team` guards changes on `instance` (it shares it and keeps a busy window)."""
    return team is not None and instance in team.shared_instances and team.busy_minutes > 0


def guard_change(
    team: TeamProfile | None,
    instance: str,
    models: list[str],
    *,
    force: bool = False,
    uses: ModelUseLog | None = None,
    now: float | None = None,
    recorded: dict[str, dict[str, float]] | None = None,
    others: Mapping[str, Mapping[str, list[tuple[str, float]]]] | None = None,
) -> None:
    """Refuse unloading/switching away `models` on a shared instance while any served requests within the
    team's busy window, unless `force`. Instances the team does not share are never guarded. `recorded`: the
    model-use file as `ModelUseLog.read` returned it, when the caller read it off its event loop. `others`: the other
    members' uses as the team hub last told (`team_sync.read_others`): a model one of them used within the busy
    window is refused too, naming who and how long ago.

    Only this machine's record of use is known (requests that went through its lmstudio-tray), so the
    message says that much and no more: other machines' sessions on the instance are not visible here."""
    if force or team is None or not shares(team, instance):
        return
    log_ = uses or ModelUseLog()
    moment = time.time() if now is None else now
    busy = []
    for model in models:
        last = log_.last_use(instance, model, recorded)
        if last is not None and moment - last < team.busy_minutes * 60:
            busy.append(f"{model} {max(0, int(moment - last))} s ago")
    by_others = _others_busy(team, instance, models, others or {}, moment)
    if by_others:
        raise SharedInstanceBusy(
            f"{instance} is shared by team {team.name!r}: {' and '.join(by_others + busy)} (from the team hub). "
            f"Wait until it has not been used for {team.busy_minutes:g} minutes, or force it if you have agreed"
        )
    if busy:
        raise SharedInstanceBusy(
            f"{instance} is shared by team {team.name!r}, and requests through lmstudio-tray on this machine "
            f"last used {' and '.join(busy)}. Requests from other machines are not visible here, so whether "
            f"anyone is using it now is not known. Wait until no request has gone through here for "
            f"{team.busy_minutes:g} minutes"
        )


def _others_busy(team: TeamProfile, instance: str, models: list[str],
                 others: Mapping[str, Mapping[str, list[tuple[str, float]]]], moment: float) -> list[str]:
    """'MEMBER used MODEL N s ago' for each other member's use within the busy window."""
    out = []
    for model in models:
        for member, last in others.get(instance, {}).get(model, []):
            if moment - last < team.busy_minutes * 60:
                out.append(f"{member} used {model} {max(0, int(moment - last))} s ago")
    return out


def models_affected(snapshot: InstanceSnapshot | None, *, unload: str | None = None,
                    switch_to: str | None = None) -> list[str]:
    """Model keys an unload (a key, an instance id, or "all") or a switch would take away."""
    if snapshot is None:
        return []
    loaded = snapshot.loaded_models
    if switch_to is not None:
        # a switch keeps embedding models and the target (see actions.switch)
        return [m.key for m in loaded if m.key != switch_to and m.type is not ModelType.EMBEDDING]
    if unload == "all":
        return [m.key for m in loaded]
    if unload:
        found = snapshot.find_instance(unload)
        if found is not None:
            return [found[0].key]
        return [m.key for m in loaded if m.key == unload]
    return []


def guard_action(config_team: TeamProfile | None, snapshot: InstanceSnapshot | None, *, unload: str | None = None,
                 switch_to: str | None = None, force: bool = False, uses: ModelUseLog | None = None) -> None:
    """The guard for one `models unload/switch` (or the tools' and tray's): SharedInstanceBusy when refused."""
    if snapshot is None:
        return
    guard_change(config_team, snapshot.name, models_affected(snapshot, unload=unload, switch_to=switch_to),
                 force=force, uses=uses)


