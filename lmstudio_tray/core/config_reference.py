"""The settings reference, derived from the schema: `docs/configuration.md` and `config explain KEY`.

Every key comes from walking `Config` (pydantic field types, defaults, constraints, descriptions), so a
section someone adds to the schema appears here without touching this module. Regenerate the document
with one command:

    python -m lmstudio_tray.core.config_reference            # rewrite docs/configuration.md
    python -m lmstudio_tray.core.config_reference --check    # exit 1 when the document is out of date
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lmstudio_tray.core.config import Config
from lmstudio_tray.core.files import atomic_write
from lmstudio_tray.core.presets import PRESETS

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REGENERATE = "python -m lmstudio_tray.core.config_reference"


@dataclass(frozen=True)
class KeyDoc:
    key: str  # dotted; `[]` marks an array of tables, `<name>` a table name the user picks
    type: str
    default: str
    allowed: str
    description: str

    @property
    def section(self) -> str:
        head = self.key.split(".")[0]
        return head if "." in self.key else ""


# ---- walking the schema ----------------------------------------------------------------------------


def _unwrap_optional(ann: Any) -> tuple[Any, bool]:
    if typing.get_origin(ann) in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(ann)) == 2:
            return args[0], True
    return ann, False


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def type_name(ann: Any) -> str:
    ann, optional = _unwrap_optional(ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        name = "string" if all(isinstance(a, str) for a in args) else "value"
    elif origin is list:
        inner = args[0] if args else Any
        name = "array of tables" if _is_model(inner) else f"array of {type_name(inner)}s"
    elif origin is dict:
        inner = args[1] if len(args) > 1 else Any
        name = "tables" if _is_model(inner) else ("table" if inner is Any else f"table of {type_name(inner)}s")
    elif isinstance(ann, type) and issubclass(ann, enum.Enum):
        name = "string"
    elif _is_model(ann):
        name = "table"
    else:
        name = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(ann, "value")
    return f"{name} (optional)" if optional else name


def _allowed(ann: Any, field: FieldInfo | None) -> str:
    ann, _ = _unwrap_optional(ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return ", ".join(str(a) for a in args)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return ", ".join(str(m.value) for m in ann)
    if origin is dict and len(args) > 1:
        return _allowed(args[1], None)
    if ann is bool:
        return "true, false"
    parts: list[str] = []
    for meta in field.metadata if field else ():
        if isinstance(meta, annotated_types.Ge):
            parts.append(f"≥ {meta.ge}")
        elif isinstance(meta, annotated_types.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, annotated_types.Le):
            parts.append(f"≤ {meta.le}")
        elif isinstance(meta, annotated_types.Lt):
            parts.append(f"< {meta.lt}")
        elif isinstance(meta, annotated_types.MinLen):
            parts.append(f"at least {meta.min_length} item{'s' if meta.min_length != 1 else ''}")
    return ", ".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _default_value(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def render_value(value: Any) -> str:
    value = _jsonable(value)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    return render_value(_default_value(field))


SUBKEY_HELP = {
    "validation.policy.ready": "The model is loaded with enough context.",
    "validation.policy.jit": "The model is not loaded, but LM Studio's JIT loading will load it for the request.",
    "validation.policy.loading": (
        "The model is being loaded right now (an ensure, a tray, CLI or tool load, or a JIT load). `ensure` waits "
        "for that load (time-boxed by validation.ensure_timeout), then judges the request again; `allow` and "
        "`warn` send it at once, which LM Studio refuses while JIT loading is off; `block` refuses it."
    ),
    "validation.policy.not_loaded": "The model is downloaded but not loaded, and JIT loading is off.",
    "validation.policy.unknown_model": "LM Studio has no model by that name.",
    "validation.policy.ambiguous": "The name matches several models or variants; LM Studio would pick one.",
    "validation.policy.offline": "The LM Studio server does not answer.",
    "validation.policy.auth_failed": "The server wants an API token and ours is missing or wrong.",
    "validation.policy.context_too_small": "The loaded context length is smaller than the request needs.",
    "validation.policy.error": "The server answers with errors.",
    "notifications.categories.loading": "A model load started (only loads longer than loading_threshold).",
    "notifications.categories.loaded": "A model finished loading.",
    "notifications.categories.load_failed": "A load failed (with the reason and a Retry button).",
    "notifications.categories.offline": "An instance went offline.",
    "notifications.categories.online": "An instance is back online.",
    "notifications.categories.auth": "An instance refuses our API token.",
    "notifications.categories.server": "A server was started or stopped.",
    "notifications.categories.session": "An OpenCode session keeps failing.",
}


def iter_keys(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[KeyDoc]:
    """Every settable key of `model`, depth first in schema order."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        ann, _ = _unwrap_optional(field.annotation)
        origin, args = typing.get_origin(ann), typing.get_args(ann)
        description = " ".join((field.description or "").split())
        if _is_model(ann):
            yield from iter_keys(ann, f"{key}.")
            continue
        yield KeyDoc(key, type_name(field.annotation), _default(field), _allowed(field.annotation, field), description)
        if origin is list and args and _is_model(args[0]):
            yield from iter_keys(args[0], f"{key}[].")
        elif origin is dict and len(args) > 1 and _is_model(args[1]):
            yield from iter_keys(args[1], f"{key}.<name>.")
        elif origin is dict and len(args) > 1:
            default = _default_value(field)
            if isinstance(default, dict):
                # tables with known keys (validation.policy, notifications.categories): one row per key
                for sub, value in default.items():
                    what = SUBKEY_HELP.get(f"{key}.{sub}", f"the {sub} entry of {key}")
                    yield KeyDoc(f"{key}.{sub}", type_name(args[1]), render_value(value),
                                 _allowed(args[1], None), what)


def section_of(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    ann, _ = _unwrap_optional(model.model_fields[name].annotation) if name in model.model_fields else (None, False)
    return ann if _is_model(ann) else None


# ---- finding a key ---------------------------------------------------------------------------------


def _tokens(key: str) -> list[str]:
    out: list[str] = []
    for part in key.replace("[", ".[").split("."):
        if part and not part.startswith("["):
            out.append(part)
        elif part.startswith("[") and out:
            out[-1] += "[]"
    return out


def _match(doc: list[str], user: list[str]) -> bool:
    if not doc:
        return not user
    if not user:
        return False
    head = doc[0]
    if head == "<name>":
        return _match(doc[1:], user[1:])
    if head.endswith("[]"):
        if user[0].removesuffix("[]") != head[:-2]:
            return False
        # `instances.url`, `instances[].url` and `instances.local.url` all mean the same key
        return _match(doc[1:], user[1:]) or (len(user) > 1 and _match(doc[1:], user[2:]))
    return head == user[0].removesuffix("[]") and _match(doc[1:], user[1:])


def find_keys(key: str) -> list[KeyDoc]:
    """The documented key(s) `key` names; a section name gives every key in it."""
    wanted = _tokens(key.strip())
    docs = list(iter_keys())
    exact = [d for d in docs if _match(_tokens(d.key), wanted)]
    if exact:
        return exact
    return [d for d in docs if _tokens(d.key)[: len(wanted)] == wanted or d.key.startswith(key.strip() + ".")]


def explain(key: str) -> str:
    docs = find_keys(key)
    if not docs:
        close = sorted({d.key for d in iter_keys() if key.split(".")[-1] in d.key})[:8]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"{key!r} is not a setting.{hint} All settings: docs/configuration.md")
    lines: list[str] = []
    for d in docs:
        lines.append(d.key)
        lines.append(f"  type:    {d.type}")
        lines.append(f"  default: {d.default}")
        if d.allowed:
            lines.append(f"  allowed: {d.allowed}")
        if d.description:
            lines.append(f"  {d.description}")
    return "\n".join(lines)


# ---- the document ----------------------------------------------------------------------------------

INTRO = """\
# Configuration reference

<!-- Generated from the schema in lmstudio_tray/core/config.py by `{regen}`.
     Do not edit by hand: tests/core/test_config_docs.py fails when this file is out of date. -->

lmstudio-tray reads one TOML file: `lmstudio-tray config path` prints where it is (`--config PATH` or
`$LMSTUDIO_TRAY_CONFIG` choose another). A missing file means every default below. Unknown keys are
errors, so a typo is reported instead of silently doing nothing. `lmstudio-tray config explain KEY`
prints one entry of this page.

## Changing settings

- By hand: edit the file; a running tray or `lmstudio-tray serve` notices the change within a second
  and applies it without a restart (a file with problems is reported in the log and the running
  settings stay).
- From the tray (notifications, notification types, validation, profile) and with
  `lmstudio-tray config set KEY VALUE`, `profile use`, `config preset` and `config import`: these edit
  the file in place, keeping your comments and layout. Each change is validated first (a bad one changes
  nothing and names the key), the previous file is kept as `config.toml.bak`, and the write is atomic
  (a crash leaves the old or the new file, never a mix).
- `lmstudio-tray config export [FILE]` writes the settings as TOML or JSON (by the file's extension;
  stdout without a file). API tokens are never part of it: they live in the keyring (`lmstudio-tray
  token set NAME`), and a password written into an instance URL is removed.
  `lmstudio-tray config import FILE [--merge]` validates the file first; without `--merge` it replaces
  the settings, with `--merge` its keys are merged into yours.

## Profiles

A profile is a named set of overrides in the same file, for example a `work` profile that watches a GPU
box with strict validation and a `laptop` profile with quiet notifications:

```toml
active_profile = "work"

[profiles.work]
description = "GPU box at the office"

[[profiles.work.instances]]
name = "gpu"
url = "http://10.0.0.5:1234"

[profiles.work.validation.policy]
jit = "block"

[profiles.laptop.notifications]
quiet = true
```

`instances` and `active_instance` in a profile replace the top-level ones; the tables `monitor`,
`validation`, `notifications` and `actions` are merged key by key over the top-level tables. Every
profile is validated as the config it produces, so switching to it cannot fail later.
`lmstudio-tray profile list|use NAME|off|show [NAME]` and the tray's Profile menu switch profiles; the
active profile is shown in `status`, `/v1/status` and the tray. A setting changed from the tray is
written into the active profile when that profile sets it (so the change takes effect), otherwise into
the top-level settings shared by all profiles.

## Presets

Shipped bundles of settings. `lmstudio-tray config preset NAME` writes them into your settings;
`lmstudio-tray config preset NAME --profile NEW` starts (or updates) a profile from one.

{presets}

## Older layouts

Files written by earlier releases load as they are and are migrated in memory; the file is rewritten
in the current layout only when a setting is changed through the app (the original is kept as
`config.toml.bak`).

- Layout 1, written by 0.0.x (no `version` key): `[server] url` became `[[instances]]`,
  `server.poll_seconds` became `monitor.poll_interval`, `notify` became `notifications.enabled`.
- Layout 2, 0.1 and later: current. `[profiles]`, `[actions]` and other new tables are additions.

## Settings
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def render_markdown() -> str:
    presets = "\n".join(
        f"- **{p.name}** — {p.summary}. {p.details}\n  Sets: "
        + ", ".join(f"`{k} = {render_value(v)}`" for k, v in p.changes().items())
        for p in PRESETS.values()
    )
    out = [INTRO.format(regen=REGENERATE, presets=presets)]
    sections: dict[str, list[KeyDoc]] = {}
    for doc in iter_keys():
        sections.setdefault(doc.section, []).append(doc)
    for section, docs in sections.items():
        if not section:
            title = "Top level"
        elif section.endswith("[]"):
            title = f"`[[{section[:-2]}]]`"
        elif any(d.key.startswith(f"{section}.<name>.") for d in docs):
            title = f"`[{section}.<name>]`"
        else:
            title = f"`[{section}]`"
        model = section_of(Config, section) if section else None
        intro = " ".join((model.__doc__ or "").split()) if model is not None and model.__doc__ else ""
        if intro.startswith(("Usage docs", "A base class")):
            intro = ""
        out.append(f"### {title}\n")
        if intro:
            out.append(f"{intro}\n")
        out.append("| Key | Type | Default | Allowed | Description |")
        out.append("|---|---|---|---|---|")
        for d in docs:
            out.append(f"| `{d.key}` | {_cell(d.type)} | `{_cell(d.default)}` | {_cell(d.allowed)} | "
                       f"{_cell(d.description)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate docs/configuration.md from the config schema.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the document is out of date")
    parser.add_argument("--output", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    atomic_write(args.output, text)
    print(f"wrote {args.output} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
