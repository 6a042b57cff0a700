"""Installing the OpenCode plugin and the `lmstudio` provider, and taking exactly that back out.

Where things go (OpenCode 1.18.33): plugin files are discovered in `<project>/.opencode/plugins/` and in
`$XDG_CONFIG_HOME/opencode/plugins/` (the singular `plugin/` spelling works too and is reused when it is
the one that exists). The provider goes into the config file OpenCode already reads there, else a new
`opencode.json`.

What install wrote is remembered in a manifest in lmstudio-tray's state dir: each JSON leaf it set with
the value it set, the containers it created and the plugin file's hash. That is what makes it
idempotent, lets a re-install update only values the user has not changed since, and lets uninstall
remove exactly what install added. The endpoint token never goes into OpenCode's config: the plugin
reads it from the discovery file at run time.

`install --pool NAME` adds a provider `lmstudio-pool-NAME` pointed at the endpoint's router
(`http://127.0.0.1:<endpoint.port>/v1/route/NAME/v1`) with the models the pool has loaded. It holds no
token either: the plugin adds the endpoint's bearer token to requests under `/v1/route/` itself
(`chat.headers`), so a restarted tray with a new token breaks nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lmstudio_tray.core.models import InstanceSnapshot, ModelInfo, ModelType
from lmstudio_tray.core.support import paths
from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.opencode.jsonc import JsoncError, parse_config_object, split_bom
from lmstudio_tray.opencode.jsonc_edit import JsoncEditError, update

PLUGIN_NAME = "lmstudio-tray.ts"
PROVIDER_ID = "lmstudio"
POOL_PROVIDER_PREFIX = "lmstudio-pool-"
SCHEMA_URL = "https://opencode.ai/config.json"
# Not loaded: LM Studio loads it on demand with the context the plugin asks for; cap what we announce
# so OpenCode does not plan for a window a cold load would not get (and memory would not hold).
UNLOADED_CONTEXT_CAP = 32768
OUTPUT_CAP = 8192
MANIFEST_NAME = "opencode-installs.json"

JsonPath = tuple[str, ...]


class InstallError(Exception):
    """Install/uninstall cannot go on; the message says what was wrong and what to do. Nothing was changed."""


@dataclass(frozen=True)
class Target:
    scope: str  # "project" | "global"
    root: Path  # the project dir, or OpenCode's global config dir
    plugin_dir: Path
    config_file: Path

    @property
    def plugin_file(self) -> Path:
        return self.plugin_dir / PLUGIN_NAME

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.root}"


@dataclass
class Change:
    path: Path
    action: str  # created | updated | unchanged | removed | kept | would-...
    detail: str = ""
    backup: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "action": self.action, "detail": self.detail,
                "backup": str(self.backup) if self.backup else None}


@dataclass
class Report:
    target: Target
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    models: dict[str, int | None] = field(default_factory=dict)  # key -> context limit written
    kept: list[str] = field(default_factory=list)  # values the user changed, left alone
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.target.scope, "root": str(self.target.root), "dry_run": self.dry_run,
            "plugin_file": str(self.target.plugin_file), "config_file": str(self.target.config_file),
            "changes": [c.to_json() for c in self.changes], "models": self.models,
            "kept_user_values": self.kept, "notes": self.notes,
        }


# ---- where -----------------------------------------------------------------------------------------


def _plugin_dir(base: Path) -> Path:
    plural, singular = base / "plugins", base / "plugin"
    if (singular / PLUGIN_NAME).is_file() or (singular.is_dir() and not plural.is_dir()):
        return singular
    return plural


def _first_existing(candidates: Iterable[Path], default: Path) -> Path:
    for c in candidates:
        if c.is_file():
            return c
    return default


def project_target(project: Path) -> Target:
    root = project.expanduser().resolve()
    if not root.is_dir():
        raise InstallError(f"{root} is not a directory; give --project an existing project folder")
    dot = root / ".opencode"
    config = _first_existing(
        [root / "opencode.json", root / "opencode.jsonc", dot / "opencode.json", dot / "opencode.jsonc"],
        root / "opencode.json",
    )
    return Target("project", root, _plugin_dir(dot), config)


def global_target() -> Target:
    root = paths.opencode_config_dir()
    config = _first_existing([root / "opencode.json", root / "opencode.jsonc", root / "config.json"],
                             root / "opencode.json")
    return Target("global", root, _plugin_dir(root), config)


def plugin_source() -> str:
    return (resources.files("lmstudio_tray") / "opencode" / PLUGIN_NAME).read_text(encoding="utf-8")


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


# ---- what the provider should hold ------------------------------------------------------------------


def model_limits(m: ModelInfo) -> tuple[int | None, int | None]:
    """(context, output) to announce: the smallest loaded context (every copy must fit), else the model's
    maximum capped; output a quarter of the context, at most OUTPUT_CAP."""
    loaded = [i.context_length for i in m.instances if i.context_length]
    if loaded:
        context: int | None = min(loaded)
    elif m.max_context_length:
        context = min(m.max_context_length, UNLOADED_CONTEXT_CAP)
    else:
        context = None
    return context, (min(context // 4, OUTPUT_CAP) if context else None)


def _path(head: JsonPath, *tail: str) -> JsonPath:
    return head + tail


def provider_fields(snap: InstanceSnapshot) -> dict[JsonPath, Any]:
    """The JSON leaves install owns for `snap`'s chat models (embeddings are no use to OpenCode)."""
    base: JsonPath = ("provider", PROVIDER_ID)
    fields: dict[JsonPath, Any] = {
        (*base, "npm"): "@ai-sdk/openai-compatible",
        (*base, "name"): f"LM Studio ({snap.name})",
        (*base, "options", "baseURL"): snap.url.rstrip("/") + "/v1",
    }
    for m in sorted(snap.models, key=lambda m: m.key):
        if m.type is ModelType.EMBEDDING:
            continue
        mp = (*base, "models", m.key)
        fields[_path(mp, "name")] = m.display_name or m.key
        context, output = model_limits(m)
        if context:
            fields[_path(mp, "limit", "context")] = context
            fields[_path(mp, "limit", "output")] = output
        if "tool_use" in m.capabilities:
            fields[_path(mp, "tool_call")] = True
        if m.type is ModelType.VLM or "vision" in m.capabilities:
            fields[_path(mp, "attachment")] = True
        if "reasoning" in m.capabilities:
            fields[_path(mp, "reasoning")] = True
    return fields


@dataclass(frozen=True)
class PoolInfo:
    """A router pool as the provider needs it: its name, the endpoint's port and what its members have loaded."""

    name: str
    port: int
    members: tuple[InstanceSnapshot, ...]

    @property
    def provider_id(self) -> str:
        return pool_provider_id(self.name)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/route/{self.name}/v1"

    def loaded_models(self) -> dict[str, tuple[ModelInfo, int | None]]:
        """Chat models loaded on any member, each with the smallest loaded context (any member may answer)."""
        out: dict[str, tuple[ModelInfo, int | None]] = {}
        for snap in self.members:
            for m in snap.loaded_models:
                if m.type is ModelType.EMBEDDING:
                    continue
                context, _ = model_limits(m)
                if m.key in out:
                    first, known = out[m.key]
                    context = min(c for c in (known, context) if c) if (known or context) else None
                    out[m.key] = (first, context)
                else:
                    out[m.key] = (m, context)
        return out


def pool_provider_id(pool: str) -> str:
    return POOL_PROVIDER_PREFIX + pool


def pool_fields(pool: PoolInfo) -> dict[JsonPath, Any]:
    """The JSON leaves install owns for a pool's provider: the router's address, no token."""
    base: JsonPath = ("provider", pool.provider_id)
    fields: dict[JsonPath, Any] = {
        (*base, "npm"): "@ai-sdk/openai-compatible",
        (*base, "name"): f"LM Studio pool {pool.name} (router)",
        (*base, "options", "baseURL"): pool.base_url,
    }
    for key, (m, context) in sorted(pool.loaded_models().items()):
        mp = (*base, "models", key)
        fields[_path(mp, "name")] = m.display_name or key
        if context:
            fields[_path(mp, "limit", "context")] = context
            fields[_path(mp, "limit", "output")] = min(context // 4, OUTPUT_CAP)
        if "tool_use" in m.capabilities:
            fields[_path(mp, "tool_call")] = True
        if m.type is ModelType.VLM or "vision" in m.capabilities:
            fields[_path(mp, "attachment")] = True
        if "reasoning" in m.capabilities:
            fields[_path(mp, "reasoning")] = True
    return fields


# ---- JSON tree edits --------------------------------------------------------------------------------

_MISSING = object()


def _get(doc: Any, path: JsonPath) -> Any:
    node = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(doc: dict[str, Any], path: JsonPath, value: Any, created: set[JsonPath]) -> None:
    node = doc
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part, _MISSING)
        if nxt is _MISSING:
            nxt = node[part] = {}
            created.add(path[: i + 1])
        elif not isinstance(nxt, dict):
            raise InstallError(f"{'.'.join(path[: i + 1])} is not an object in the config; fix or remove it")
        node = nxt
    node[path[-1]] = value


def _delete(doc: dict[str, Any], path: JsonPath) -> None:
    parent = _get(doc, path[:-1]) if len(path) > 1 else doc
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _prune(doc: dict[str, Any], created: Iterable[JsonPath]) -> set[JsonPath]:
    """Remove containers install created that are now empty, deepest first; return those still there."""
    left: set[JsonPath] = set()
    for path in sorted(created, key=len, reverse=True):
        node = _get(doc, path)
        if node is _MISSING:
            continue
        if node == {}:
            _delete(doc, path)
        else:
            left.add(path)
    return left


# ---- manifest ---------------------------------------------------------------------------------------


def manifest_file() -> Path:
    return paths.state_dir() / MANIFEST_NAME


def _load_manifest() -> dict[str, Any]:
    try:
        data = json.loads(manifest_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InstallError(f"the install record {manifest_file()} is unreadable ({exc}); move it aside and "
                           "run the command again") from None
    return data if isinstance(data, dict) else {}


def _save_manifest(data: dict[str, Any]) -> None:
    atomic_write(manifest_file(), json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)


def _entry(manifest: dict[str, Any], target: Target) -> dict[str, Any]:
    entry = manifest.get(target.key)
    return entry if isinstance(entry, dict) else {}


# ---- files ------------------------------------------------------------------------------------------


def backup(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.bak-{stamp}-{n}")
    shutil.copy2(path, dest)
    return dest


@dataclass(frozen=True)
class ConfigFile:
    """An OpenCode config file as read: its object and the exact text it came from (None: no such file)."""

    path: Path
    data: dict[str, Any]
    text: str | None

    @property
    def existed(self) -> bool:
        return self.text is not None


def _read_config(path: Path) -> ConfigFile:
    try:
        with path.open(encoding="utf-8", newline="") as fh:  # newline="": CR LF stays CR LF
            text = fh.read()
    except FileNotFoundError:
        return ConfigFile(path, {}, None)
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read {path}: {exc}") from None
    try:
        data = parse_config_object(text)
    except JsoncError as exc:
        raise InstallError(f"{path} is not valid JSON/JSONC ({exc}); OpenCode cannot read it either. Fix it "
                           "first; nothing was changed") from None
    return ConfigFile(path, data, text)


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _new_text(cfg: ConfigFile, doc: dict[str, Any], provider_id: str) -> str:
    """The file's next text: the existing one edited in place (comments, layout and everything not ours stay
    byte for byte), or the whole object for a new or empty file."""
    bom, body = split_bom(cfg.text or "")
    if not body:
        return _dump(doc)
    try:
        return bom + update(body, doc)
    except JsoncEditError as exc:  # a bug guard: the edit did not read back as intended
        snippet = json.dumps({"provider": {provider_id: doc.get("provider", {}).get(provider_id)}}, indent=2)
        raise InstallError(f"could not edit {cfg.path} in place ({exc}); nothing was changed. Please report "
                           f"this, and merge this by hand:\n{snippet}") from None


def _write_config(cfg: ConfigFile, doc: dict[str, Any], report: Report, verb: str,
                  provider_id: str = PROVIDER_ID) -> None:
    text = _new_text(cfg, doc, provider_id)
    if report.dry_run:
        report.changes.append(Change(cfg.path, f"would be {verb}"))
        return
    saved = backup(cfg.path) if cfg.existed else None
    mode = stat.S_IMODE(cfg.path.stat().st_mode) if cfg.existed else 0o644  # a private file stays private
    atomic_write(cfg.path, text, mode=mode)
    report.changes.append(Change(cfg.path, verb, backup=saved))


# ---- install / uninstall / status -------------------------------------------------------------------


def install(target: Target, snap: InstanceSnapshot | None = None, *, dry_run: bool = False,
            pool: PoolInfo | None = None) -> Report:
    """Put the plugin in place and, given `snap`, write/refresh the provider from what LM Studio has;
    given `pool`, a provider pointed at the endpoint's router for that pool."""
    report = Report(target, dry_run)
    manifest = _load_manifest()
    entry = _entry(manifest, target)
    new_entry = dict(entry)
    if snap is not None:
        # the provider first: a bad config file must stop us before the plugin lands
        new_entry["config"] = _install_provider(target, snap, entry.get("config") or {}, report)
    if pool is not None:
        key = POOL_ENTRY + pool.name
        new_entry[key] = _install_fields(target, pool.provider_id, pool_fields(pool), entry.get(key) or {}, report)
    new_entry["plugin"] = _install_plugin(target, entry.get("plugin") or {}, report)
    other = global_target() if target.scope == "project" else None
    if other is not None and other.plugin_file.is_file():
        report.notes.append(
            f"the plugin is also installed globally ({other.plugin_file}); OpenCode loads both copies in this "
            "project (every check and tool twice): remove one, e.g. `lmstudio-tray opencode uninstall --global`"
        )
    new_entry["installed_at"] = time.time()
    if not dry_run:
        manifest[target.key] = new_entry
        _save_manifest(manifest)
    return report


def _install_plugin(target: Target, recorded: dict[str, Any], report: Report) -> dict[str, Any]:
    source = plugin_source()
    path = target.plugin_file
    ours = set(recorded.get("hashes", []))
    try:
        current: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current == source:
        report.changes.append(Change(path, "unchanged"))
        return {"path": str(path), "hashes": sorted(ours | {_sha(source)})}
    action = "created" if current is None else "updated"
    saved: Path | None = None
    if report.dry_run:
        report.changes.append(Change(path, f"would be {action}"))
        return recorded
    if current is not None and _sha(current) not in ours:
        saved = backup(path)  # someone else's file (or edited by hand): keep a copy
    atomic_write(path, source)
    report.changes.append(Change(path, action, backup=saved))
    return {"path": str(path), "hashes": sorted(ours | {_sha(source)})}


POOL_ENTRY = "pool:"  # manifest keys of pool providers: "pool:<name>"


def _install_provider(target: Target, snap: InstanceSnapshot, recorded: dict[str, Any],
                      report: Report) -> dict[str, Any]:
    record = _install_fields(target, PROVIDER_ID, provider_fields(snap), recorded, report)
    for m in snap.models:
        if m.type is not ModelType.EMBEDDING and m.key not in report.models:
            report.models[m.key] = None
    return record


def _install_fields(target: Target, provider_id: str, fields: dict[JsonPath, Any], recorded: dict[str, Any],
                    report: Report) -> dict[str, Any]:
    cfg = _read_config(target.config_file)
    doc, existed = cfg.data, cfg.existed
    before = json.loads(json.dumps(doc))
    owned: dict[JsonPath, Any] = {tuple(p): v for p, v in recorded.get("fields", [])}
    created: set[JsonPath] = {tuple(p) for p in recorded.get("created", [])}
    desired: dict[JsonPath, Any] = {("$schema",): SCHEMA_URL} if not existed else {}
    desired.update(fields)
    provider = _get(doc, ("provider", provider_id))
    if provider is not _MISSING and not isinstance(provider, dict):
        raise InstallError(f"provider.{provider_id} in {target.config_file} is not an object; fix or remove it")
    new_owned: dict[JsonPath, Any] = {}

    def apply(path: JsonPath, value: Any) -> None:
        current = _get(doc, path)
        if current is _MISSING or (path in owned and owned[path] == current):
            _set(doc, path, value, created)
            new_owned[path] = value
        elif current != value:
            report.kept.append(".".join(path))

    for path, value in desired.items():
        apply(path, value)
    models_path = ("provider", provider_id, "models")
    for path, value in owned.items():
        if path in desired or path[-1] == "whitelist" or _get(doc, path) != value:
            continue
        if path[:3] == models_path:
            _delete(doc, path)  # a model LM Studio no longer has, unchanged since we wrote it
        else:
            new_owned[path] = value  # e.g. $schema of a file we created: still ours to remove
    created = _prune(doc, created)
    # The lmstudio id pulls in models.dev's LM Studio catalogue (3 models this machine may not have):
    # list exactly the configured models, the user's own entries included.
    models = _get(doc, models_path)
    if provider_id == PROVIDER_ID and isinstance(models, dict) and models:
        apply(("provider", PROVIDER_ID, "whitelist"), sorted(models))

    for path in desired:
        if path[2:3] == ("models",) and path[-1] == "context":
            report.models[path[3]] = _get(doc, path)
    for path in desired:  # models without a known context
        if path[2:3] == ("models",) and len(path) == 5 and path[-1] == "name" and path[3] not in report.models:
            report.models[path[3]] = None
    if doc == before:
        report.changes.append(Change(target.config_file, "unchanged"))
    else:
        _write_config(cfg, doc, report, "created" if not existed else "updated", provider_id)
    return {
        "path": str(target.config_file),
        "fields": [[list(p), v] for p, v in new_owned.items()],
        "created": sorted(list(p) for p in created),
        "file_created": bool(recorded.get("file_created")) or not existed,
    }


def uninstall(target: Target, *, dry_run: bool = False) -> Report:
    """Remove what install added: its plugin file (if unchanged) and the config values it set (if unchanged)."""
    report = Report(target, dry_run)
    manifest = _load_manifest()
    entry = _entry(manifest, target)
    records = [c for k, c in entry.items() if (k == "config" or k.startswith(POOL_ENTRY)) and isinstance(c, dict)]
    if records:
        # one pass over the file for every provider install wrote, so a file install created goes away
        # whole, whichever provider happened to create it
        _uninstall_provider(target, {
            "path": records[0].get("path"),
            "fields": [f for r in records for f in r.get("fields", [])],
            "created": [c for r in records for c in r.get("created", [])],
            "file_created": any(r.get("file_created") for r in records),
        }, report)
    _uninstall_plugin(target, entry.get("plugin") or {}, report)
    if not entry:
        report.notes.append(f"no install by lmstudio-tray is recorded for {target.root}")
    if not dry_run and target.key in manifest:
        del manifest[target.key]
        _save_manifest(manifest)
    return report


def _uninstall_plugin(target: Target, recorded: dict[str, Any], report: Report) -> None:
    path = Path(recorded.get("path") or target.plugin_file)
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    ours = set(recorded.get("hashes", [])) | {_sha(plugin_source())}
    if _sha(current) not in ours:
        report.changes.append(Change(path, "kept", "changed since install (or not ours); remove it by hand"))
        return
    if report.dry_run:
        report.changes.append(Change(path, "would be removed"))
        return
    path.unlink()
    report.changes.append(Change(path, "removed"))
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only if we left it empty


def _uninstall_provider(target: Target, recorded: dict[str, Any], report: Report) -> None:
    path = Path(recorded.get("path") or target.config_file)
    cfg = _read_config(path)
    doc = cfg.data
    if not cfg.existed:
        return
    before = json.loads(json.dumps(doc))
    for p, value in recorded.get("fields", []):
        jp = tuple(p)
        current = _get(doc, jp)
        if current is _MISSING:
            continue
        if current == value:
            _delete(doc, jp)
        else:
            report.kept.append(".".join(jp))
    _prune(doc, [tuple(p) for p in recorded.get("created", [])])
    if doc == before:
        return
    if recorded.get("file_created") and doc == {}:
        if report.dry_run:
            report.changes.append(Change(path, "would be removed"))
            return
        saved = backup(path)
        path.unlink()
        report.changes.append(Change(path, "removed", backup=saved))
        return
    _write_config(cfg, doc, report, "updated")


@dataclass
class Status:
    target: Target
    plugin: str  # missing | current | outdated | modified
    provider: dict[str, Any] | None
    recorded: bool

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.target.scope, "root": str(self.target.root),
                "plugin_file": str(self.target.plugin_file), "plugin": self.plugin,
                "config_file": str(self.target.config_file), "provider": self.provider,
                "installed_by_lmstudio_tray": self.recorded}


def status(target: Target) -> Status:
    entry = _entry(_load_manifest(), target)
    path = target.plugin_file
    try:
        current: str | None = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current is None:
        plugin = "missing"
    elif current == plugin_source():
        plugin = "current"
    elif _sha(current) in set((entry.get("plugin") or {}).get("hashes", [])):
        plugin = "outdated"
    else:
        plugin = "modified"
    provider: dict[str, Any] | None = None
    try:
        doc = _read_config(target.config_file).data
    except InstallError:
        doc = {}
    raw = _get(doc, ("provider", PROVIDER_ID))
    if isinstance(raw, dict):
        models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
        provider = {
            "baseURL": _get(raw, ("options", "baseURL")) if _get(raw, ("options", "baseURL")) is not _MISSING
            else None,
            "models": {k: (_get(v, ("limit", "context")) if _get(v, ("limit", "context")) is not _MISSING else None)
                       for k, v in (models or {}).items()},
        }
    return Status(target, plugin, provider, bool(entry))
