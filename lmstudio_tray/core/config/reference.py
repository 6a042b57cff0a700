"""The settings reference, derived from the schema: every key for `config explain KEY` (and for
`docs/configuration.md`, which `lmstudio_tray.devtools.config_docs` writes from it).

Every key comes from walking `Config` (pydantic field types, defaults, constraints, descriptions), so a
section someone adds to the schema appears here without touching this module.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lmstudio_tray.core.config.schema import Config


@dataclass(frozen=True)
class KeyDoc:
    """One row of the settings reference: the key, its type, default and allowed values, and what it does."""

    key: str  # dotted; `[]` marks an array of tables, `<name>` a table name the user picks
    type: str
    default: str
    allowed: str
    description: str

    @property
    def section(self) -> str:
        """The table the key sits in (`monitor` for `monitor.poll_interval`, `instances[]` for a key of the
        `[[instances]]` tables); "" for a top-level key."""
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
    """The type of a schema annotation in a person's words: "number", "array of strings", "tables", "string (optional)",
    ..."""
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
    """A value as the reference shows it: JSON spelling (`true`, `"text"`, `[1, 2]`), "unset" for None."""
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
    """The model of `model`'s table field `name` (`MonitorConfig` for "monitor"); None when it is not a table or not a
    field."""
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
    """The text `config explain KEY` prints for `key` (a key or a whole section). KeyError naming close matches when no
    setting has that name."""
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
