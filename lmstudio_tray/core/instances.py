"""Several LM Studio instances: adding, removing and choosing them, finding the local one, their health.

Config changes go through `config_store` (comments kept, validated first, backup, atomic, locked), so
a running tray picks them up through its config watch. Tokens go to the secret store, never the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError
from tomlkit.items import AoT

from lmstudio_tray.core import config_store, paths
from lmstudio_tray.core.client import LMStudioClient
from lmstudio_tray.core.config import Config, ConfigError, InstanceConfig, load_config, normalize_url
from lmstudio_tray.core.models import InstanceSnapshot, InstanceState

HEALTHY = (InstanceState.IDLE, InstanceState.READY, InstanceState.LOADING)


# ---- discovery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalServer:
    url: str
    source: Path  # the LM Studio file the port came from
    confirmed: bool  # the greeting probe answered as LM Studio


def local_server_url(home: Path | None = None) -> tuple[str, Path] | None:
    """The local server's address from LM Studio's own settings (`.internal/http-server-config.json`)."""
    source = (home or paths.lmstudio_home()) / ".internal" / "http-server-config.json"
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    port = data.get("port") if isinstance(data, dict) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return None
    return f"http://127.0.0.1:{port}", source


async def greets(url: str, token: str | None = None, timeout: float = 1.0) -> bool:
    """`GET /lmstudio-greeting` answers as LM Studio (the check `lms` itself makes; no token needed)."""
    client = LMStudioClient(url, token=token, timeout=timeout)
    try:
        return await client.greeting()
    finally:
        await client.aclose()


async def discover_local(home: Path | None = None) -> LocalServer | None:
    found = local_server_url(home)
    if found is None:
        return None
    url, source = found
    return LocalServer(url=url, source=source, confirmed=await greets(url))


# ---- editing the config ----------------------------------------------------------------------------


def _instances_of(doc: tomlkit.TOMLDocument, effective: Config) -> AoT:
    """The file's [[instances]]; a file without them gets the instances in effect (the default `local`),
    so adding a second instance never silently drops the first."""
    existing = doc.get("instances")
    if isinstance(existing, AoT):
        return existing
    aot = tomlkit.aot()
    for inst in effective.instances:
        aot.append(tomlkit.item(inst.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
                                | {"name": inst.name, "url": inst.url}))
    doc["instances"] = aot
    return aot


def add_instance(path: Path, name: str, url: str, *, lms_host: str | None = None) -> Config:
    """Append an [[instances]] table; ConfigError (file untouched) for a bad or duplicate name or URL."""
    try:
        InstanceConfig(name=name, url=url, lms_host=lms_host)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])} = {e['input']!r}: "
                    f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()]
        raise ConfigError(path, problems) from None
    url = normalize_url(url)
    with config_store.locked(path):
        old = config_store.read_text(path)
        effective = load_config(path)
        if any(i.name == name for i in effective.instances):
            raise ConfigError(path, [f"an instance named {name!r} exists already; pick another name "
                                     f"or `lmstudio-tray instances remove {name}` first"])
        same = [i.name for i in effective.instances if i.url == url]
        if same:
            raise ConfigError(path, [f"{url} is configured already as {same[0]!r}"])
        doc = config_store.parse_document(old, path)
        table = tomlkit.table()
        table["name"] = name
        table["url"] = url
        if lms_host:
            table["lms_host"] = lms_host
        _instances_of(doc, effective).append(table)
        if "version" not in doc:
            doc["version"] = effective.version
        return config_store.write_validated(path, tomlkit.dumps(doc), old)


def remove_instance(path: Path, name: str) -> Config:
    """Remove an instance (and make another one active if it was); refused while a pool lists it."""
    with config_store.locked(path):
        old = config_store.read_text(path)
        effective = load_config(path)
        names = [i.name for i in effective.instances]
        if name not in names:
            raise ConfigError(path, [f"no instance named {name!r} (configured: {', '.join(names) or 'none'})"])
        pools = [p.name for p in effective.pools if name in p.instances]
        if pools:
            raise ConfigError(path, [f"{name!r} is in pool(s) {', '.join(pools)}; take it out of their "
                                     "`instances` first (a pool must only name existing instances)"])
        doc = config_store.parse_document(old, path)
        aot = _instances_of(doc, effective)
        for index, table in enumerate(list(aot)):
            if table.get("name") == name:
                del aot[index]
                break
        if len(aot) == 0:
            # an empty list would mean "no instances"; absent means the default local one
            del doc["instances"]
        if doc.get("active_instance") == name:
            del doc["active_instance"]
        return config_store.write_validated(path, tomlkit.dumps(doc), old)


def use_instance(path: Path, name: str) -> Config:
    """Make `name` the instance the CLI and the tools act on by default."""
    effective = load_config(path)
    names = [i.name for i in effective.instances]
    if name not in names:
        raise ConfigError(path, [f"no instance named {name!r} (configured: {', '.join(names) or 'none'}); "
                                 f"add it with `lmstudio-tray instances add {name} URL`"])
    return config_store.update_config(path, {"active_instance": name})


# ---- health ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceHealth:
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
