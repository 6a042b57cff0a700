"""Changing the user's config file: edit in place with tomlkit, validate, back up, write atomically.

Every write the app makes (tray toggles, `profile use`, `config preset`, `config import`) goes through
here, so all of them share the same guarantees:

- the user's comments, key order and layout survive (only the touched keys change);
- the new content is validated through the schema first: a bad change raises `ConfigError` and the
  file stays byte-identical;
- the previous file is kept as `<name>.bak` next to it;
- the write is atomic (temporary file, fsync, rename), so a crash or `kill -9` at any moment leaves
  either the old or the new file, never a mix;
- writers in different processes (the tray and the CLI) take turns through a lock file, waiting at most
  LOCK_TIMEOUT seconds for it (ConfigLocked names the lock file after that).
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from lmstudio_tray.core.config.schema import CURRENT_VERSION, Config, migrate, parse_config
from lmstudio_tray.core.errors import ConfigError, ConfigLocked, LockError, LockTimeout
from lmstudio_tray.core.support.files import atomic_write, temp_glob
from lmstudio_tray.core.support.lock import LockOS, exclusive

DELETE = object()  # value for `update_config` that removes the key
STALE_TEMP_SECONDS = 60.0  # a temporary file this old belongs to a writer that died
LOCK_TIMEOUT = 10.0  # a config write takes milliseconds: a lock held this long belongs to a stuck process


def backup_path(path: Path) -> Path:
    """Where the previous content of `path` is kept: `<name>.bak` next to it."""
    return path.with_name(path.name + ".bak")


def split_key(key: str) -> list[str]:
    """`notifications.categories.loading` -> its parts. Table names here never contain dots."""
    parts = [p.strip() for p in key.split(".")]
    if not key or any(not p for p in parts):
        raise ConfigError(None, [f"{key!r} is not a setting name; write it like notifications.enabled"])
    return parts


# ---- reading ---------------------------------------------------------------------------------------


def read_text(path: Path) -> str | None:
    """The file's text; None when it does not exist. ConfigError (naming the reason) when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file ({exc.strerror}); check its permissions"]) from None


def parse_document(text: str | None, path: Path | None = None) -> tomlkit.TOMLDocument:
    """The file as an editable document, brought to the current layout (older layouts are migrated)."""
    if not text:
        return tomlkit.document()
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError(
            path,
            [f"not valid TOML: {exc}; fix the line it names before changing settings (the file was left untouched)"],
        ) from None
    version = doc.get("version", 1)
    if isinstance(version, int) and version < CURRENT_VERSION:
        # Older layouts are rewritten as a whole (their keys moved); the original stays in the backup.
        migrated, notes = migrate(doc.unwrap())
        if not notes:
            return doc  # only the version key was missing: nothing moved, keep the file as written
        new = tomlkit.document()
        new.add(tomlkit.comment(f"Migrated to layout {CURRENT_VERSION} by lmstudio-tray ({'; '.join(notes)})."))
        new.add(tomlkit.comment("The previous file is kept next to this one with the suffix .bak."))
        for key, value in migrated.items():
            new[key] = _to_toml(value)
        return new
    return doc


def validate_text(text: str, path: Path | None = None) -> Config:
    """What `load_config` would give for `text` (team layer included); ConfigError naming the key otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    from lmstudio_tray.core.config.loader import TeamProfiles

    return parse_config(TeamProfiles().apply(data), path)


# ---- editing ---------------------------------------------------------------------------------------


def _to_toml(value: Any) -> Any:
    """Plain TOML values for what callers hand us (enums, pydantic models, tuples, paths)."""
    if isinstance(value, enum.Enum):
        return _to_toml(value.value)
    if hasattr(value, "model_dump"):
        return _to_toml(value.model_dump(mode="json", exclude_none=True))
    if isinstance(value, Mapping):
        return {str(k): _to_toml(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        items = [_to_toml(v) for v in value]
        if items and all(isinstance(i, dict) for i in items):
            aot = tomlkit.aot()
            for i in items:
                aot.append(tomlkit.item(i))
            return aot
        return items
    if isinstance(value, Path):
        return str(value)
    return value


def _child(container: Any, part: str, *, create: bool, key: str) -> Any:
    if isinstance(container, (AoT, list)):
        # `instances.gpu.url`: the element of an array of tables named `gpu`
        for element in container:
            if isinstance(element, (Table, dict)) and element.get("name") == part:
                return element
        if create:
            raise ConfigError(None, [f"{key}: there is no entry named {part!r}; add it first"])
        return None
    if part not in container:
        if not create:
            return None
        container[part] = tomlkit.table(is_super_table=True)
    child = container[part]
    if not isinstance(child, (Table, dict, AoT, list)) or (isinstance(child, list) and not isinstance(child, AoT)):
        raise ConfigError(None, [f"{key}: {part} is a single value, not a table, so it has no keys under it"])
    return child


def set_in(doc: tomlkit.TOMLDocument, key: str, value: Any) -> None:
    """Set (or with DELETE, remove) the dotted `key` in `doc`, creating tables on the way."""
    parts = split_key(key)
    container: Any = doc
    for part in parts[:-1]:
        container = _child(container, part, create=value is not DELETE, key=key)
        if container is None:
            return  # deleting something that is not there
    last = parts[-1]
    if value is DELETE:
        if isinstance(container, (Table, dict)) or container is doc:
            with contextlib.suppress(KeyError):
                del container[last]
        return
    if isinstance(container, (AoT, list)):
        raise ConfigError(None, [f"{key}: name an entry of the list first, like instances.local.url"])
    container[last] = _to_toml(value)


def get_in(data: Mapping[str, Any], key: str) -> Any:
    """The value at dotted `key` in plain data; KeyError when absent."""
    current: Any = data
    for part in split_key(key):
        if isinstance(current, list):
            current = next((e for e in current if isinstance(e, Mapping) and e.get("name") == part), None)
            if current is None:
                raise KeyError(key)
        elif isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            raise KeyError(key)
    return current


# ---- writing ---------------------------------------------------------------------------------------


def lock_path(path: Path) -> Path:
    """The lock file writers of `path` take turns on: `.<name>.lock` next to it."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path, *, timeout: float | None = None, lock_os: LockOS | None = None) -> Iterator[None]:
    """One writer at a time across processes (the tray and a CLI command may write together).

    Waits up to `timeout` (default LOCK_TIMEOUT) seconds, then raises ConfigLocked instead of waiting forever.
    """
    lock = lock_path(path)
    limit = LOCK_TIMEOUT if timeout is None else timeout
    try:
        with exclusive(lock, limit, lock_os=lock_os):
            _remove_stale_temps(path)
            yield
    except LockTimeout:
        raise ConfigLocked(path, [
            f"another lmstudio-tray process (the tray or a command) has been changing this file for over "
            f"{limit:g} s and still holds its lock {lock}, so nothing was changed; try again in a moment. If no "
            f"other lmstudio-tray is running, delete {lock} and try again"
        ]) from None
    except LockError as exc:
        raise ConfigError(path, [str(exc)]) from None


def _remove_stale_temps(path: Path) -> None:
    # A writer killed mid-write leaves its temporary file behind; the config itself is intact.
    now = time.time()
    for tmp in path.parent.glob(temp_glob(path)):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o644


def write_validated(path: Path, new_text: str, old_text: str | None) -> Config:
    """Validate `new_text`, keep `old_text` as the backup, then replace the file atomically."""
    config = validate_text(new_text, path)
    if new_text == old_text:
        return config
    mode = _mode_of(path)
    if old_text is not None:
        atomic_write(backup_path(path), old_text, mode)
    atomic_write(path, new_text, mode)
    return config


def update_config(path: Path, changes: Mapping[str, Any]) -> Config:
    """Set dotted keys (`{"notifications.enabled": False}`; DELETE removes one) in the user's file.

    Returns the loaded config after the change. Raises ConfigError (and leaves the file untouched) when
    the result would not be valid.
    """
    with locked(path):
        old_text = read_text(path)
        doc = parse_document(old_text, path)
        for key, value in changes.items():
            try:
                set_in(doc, key, value)
            except ConfigError as exc:
                raise ConfigError(path, exc.problems) from None
        if "version" not in doc and old_text is None:
            doc["version"] = CURRENT_VERSION
        return write_validated(path, tomlkit.dumps(doc), old_text)


def set_value(path: Path, key: str, value: Any) -> Config:
    """`update_config` for one dotted key."""
    return update_config(path, {key: value})


def unset_value(path: Path, key: str) -> Config:
    """Remove one dotted key from the user's file, so its default (or the team's value) applies again; see
    `update_config`."""
    return update_config(path, {key: DELETE})


def replace_config(path: Path, data: Mapping[str, Any], *, header: str | None = None) -> Config:
    """Replace the whole file with `data` (validated first; the old file becomes the backup)."""
    text = render_toml(data, header)
    with locked(path):
        return write_validated(path, text, read_text(path))


def merge_into_document(doc: tomlkit.TOMLDocument, data: Mapping[str, Any], prefix: str = "") -> None:
    """Deep-merge plain `data` into `doc`: tables merge key by key, everything else is replaced."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            try:
                existing = get_in(doc.unwrap(), dotted)
            except KeyError:
                existing = None
            if isinstance(existing, Mapping):
                merge_into_document(doc, value, dotted + ".")
                continue
        set_in(doc, dotted, value)


def merge_config(path: Path, data: Mapping[str, Any]) -> Config:
    """Merge `data` into the user's file, keeping its comments (validated first; backup kept)."""
    with locked(path):
        old_text = read_text(path)
        doc = parse_document(old_text, path)
        merge_into_document(doc, data)
        return write_validated(path, tomlkit.dumps(doc), old_text)


# ---- export / import -------------------------------------------------------------------------------

_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key)", re.IGNORECASE)
_URL_USERINFO = re.compile(r"^(https?://)[^/@\s]*@", re.IGNORECASE)


def _scrub(value: Any) -> Any:
    """Drop anything that could be a secret: keys named like one, and user:password in URLs."""
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str) and re.match(r"^https?://", value, re.IGNORECASE):
        parts = urllib.parse.urlsplit(_URL_USERINFO.sub(r"\1", value))
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
                 if not _SECRET_KEY.search(k) and not re.search(r"(^|_)(key|sig)$", k, re.IGNORECASE)]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    return value


def export_data(path: Path) -> dict[str, Any]:
    """The user's settings as plain data in the current layout (defaults not spelled out), no secrets."""
    text = read_text(path)
    data = tomllib.loads(text) if text else {}
    migrated, _ = migrate(data)
    ordered = {"version": migrated.pop("version", CURRENT_VERSION), **migrated}
    scrubbed: dict[str, Any] = _scrub(ordered)
    return scrubbed


def render_toml(data: Mapping[str, Any], header: str | None = None) -> str:
    """`data` as TOML text, each line of `header` as a comment on top; None values are left out. Not validated: callers
    write it through `write_validated`."""
    doc = tomlkit.document()
    if header:
        for line in header.splitlines():
            doc.add(tomlkit.comment(line))
    for key, value in data.items():
        if value is not None:
            doc[key] = _to_toml(value)
    return tomlkit.dumps(doc)


def parse_value(text: str) -> Any:
    """A command-line value as TOML (`true`, `2.5`, `"x"`, `[1, 2]`); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def read_import(source: Path, fmt: str | None = None) -> dict[str, Any]:
    """A settings file to import, parsed and validated on its own (ConfigError names file, key, why)."""
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read it ({exc.strerror})"]) from None
    fmt = fmt or ("json" if source.suffix.lower() == ".json" else "toml")
    try:
        data = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, [f"not valid {fmt.upper()}: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a table of settings, not {type(data).__name__}"])
    parse_config(data, source)  # every problem is reported against the imported file
    migrated, _ = migrate(data)
    return migrated


def import_file(path: Path, source: Path, *, merge: bool = False, fmt: str | None = None) -> Config:
    """Replace the user's settings with `source` (or merge it in). Validated first; a bad file changes
    nothing; the previous file is kept as the backup."""
    data = read_import(source, fmt)
    if merge:
        return merge_config(path, data)
    return replace_config(path, data, header=f"Imported from {source.name} by lmstudio-tray config import.")
