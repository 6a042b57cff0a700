"""Health rows of the monitored instances (`instances list`): state, reachability, latency, API generation,
loaded models, token and pools, from the status snapshots without asking LM Studio again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState

HEALTHY = (InstanceState.IDLE, InstanceState.READY, InstanceState.LOADING)


@dataclass(frozen=True)
class InstanceHealth:
    """One row of `instances list`: state, reachability and latency of the last poll, API generation, loaded copies,
    whether a token is stored, the pools the instance is in and the router's recent failures with it."""

    name: str
    url: str
    active: bool
    configured: bool  # False: seen through an OpenCode provider URL only
    state: str
    reachable: bool
    latency_ms: float | None
    api: str | None  # which LM Studio API generation answered (v1: 0.4+, v0: 0.3.6+, openai: older)
    loaded: tuple[str, ...]
    error: str | None
    has_token: bool
    pools: tuple[str, ...]
    recent_failures: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The row as JSON data (`instances list --json`)."""
        return {
            "name": self.name, "url": self.url, "active": self.active, "configured": self.configured,
            "state": self.state, "reachable": self.reachable,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
            "api": self.api, "loaded": list(self.loaded), "error": self.error, "has_token": self.has_token,
            "pools": list(self.pools), "recent_failures": list(self.recent_failures),
        }


def health(
    config: Config,
    snapshots: list[InstanceSnapshot],
    *,
    active: str | None,
    has_token: dict[str, bool],
    failures: dict[str, list[dict[str, Any]]] | None = None,
) -> list[InstanceHealth]:
    """One `InstanceHealth` per snapshot, from what is known already (no LM Studio call): `has_token` per instance name,
    `failures` the running router's recent connection failures per instance."""
    configured = {i.name for i in config.instances}
    out = []
    for snap in snapshots:
        out.append(InstanceHealth(
            name=snap.name, url=snap.url, active=snap.name == active, configured=snap.name in configured,
            state=snap.state.value, reachable=snap.state in HEALTHY, latency_ms=snap.latency_ms,
            api=snap.api.value if snap.api else None,
            loaded=tuple(i.id for m in snap.loaded_models for i in m.instances),
            error=snap.error, has_token=has_token.get(snap.name, False),
            pools=tuple(p.name for p in config.pools if snap.name in p.instances),
            recent_failures=tuple((failures or {}).get(snap.name, ())),
        ))
    return out
