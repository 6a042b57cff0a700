"""Adding, removing and choosing LM Studio instances in the config file.

Changes go through `store` (comments kept, validated first, backup, atomic, locked), so a running tray
picks them up through its config watch. Tokens go to the secret store, never the file.
"""

from __future__ import annotations

from pathlib import Path

import tomlkit
from pydantic import ValidationError
from tomlkit.items import AoT

from lmstudio_tray.core.config import store as config_store
from lmstudio_tray.core.config.loader import load_config
from lmstudio_tray.core.config.schema import Config, InstanceConfig, normalize_url
from lmstudio_tray.core.errors import ConfigError


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
