"""docs/configuration.md is generated from the schema; it must be current and complete both ways."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lmstudio_tray.core.config.reference import explain
from lmstudio_tray.core.config.schema import Config
from lmstudio_tray.devtools.config_docs import DOC_PATH, REGENERATE, render_markdown

ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def documented_keys() -> list[str]:
    return ROW.findall(DOC_PATH.read_text(encoding="utf-8"))


def test_document_is_up_to_date() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render_markdown(), (
        f"docs/configuration.md is out of date; run: {REGENERATE}"
    )


def test_regeneration_is_one_command_with_a_check_mode(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    cmd = [sys.executable, "-m", "lmstudio_tray.devtools.config_docs", "--output", str(out)]
    assert subprocess.run([*cmd, "--check"], capture_output=True).returncode == 1  # missing: out of date
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert subprocess.run([*cmd, "--check"], capture_output=True).returncode == 0
    assert out.read_text(encoding="utf-8") == DOC_PATH.read_text(encoding="utf-8")


def _data_setting(key: str) -> dict[str, Any]:
    """A config dict that sets `key` (placeholders filled in), to ask the schema whether it knows it."""
    parts = key.split(".")
    data: dict[str, Any] = {}
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "<name>":
            part = "sample"
        if part.endswith("[]"):
            element: dict[str, Any] = {}
            node[part[:-2]] = [element]
            node = element
        elif last:
            node[part] = "x"
        else:
            node = node.setdefault(part, {})
    return data


def _unknown_keys(data: dict[str, Any]) -> list[str]:
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        return [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "extra_forbidden"]
    return []


def test_every_documented_key_exists_in_the_schema() -> None:
    keys = documented_keys()
    assert len(keys) > 40
    assert _unknown_keys({"monitor": {"not_a_key": 1}}) == ["monitor.not_a_key"]  # the probe can fail
    for key in keys:
        if re.search(r"\.(policy|categories)\.", key):
            continue  # keys of a table of values: checked by the category test below
        assert _unknown_keys(_data_setting(key)) == [], key


def test_every_documented_category_is_accepted() -> None:
    for key in documented_keys():
        m = re.match(r"^(validation\.policy|notifications\.categories)\.(\w+)$", key)
        if m:
            section, field = m.group(1).split(".")
            value: Any = "allow" if section == "validation" else True
            Config.model_validate({section: {field: {m.group(2): value}}})


def _schema_keys(schema: dict[str, Any], node: dict[str, Any], prefix: str, out: set[str]) -> None:
    """Keys from pydantic's JSON schema, walked independently of the generator."""
    node = _resolve(schema, node)
    for name, prop in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        prop = _resolve(schema, prop)
        options = [_resolve(schema, o) for o in prop.get("anyOf", [prop])]
        target = next((o for o in options if o.get("type") != "null"), prop)
        if target.get("properties"):
            _schema_keys(schema, target, f"{key}.", out)
            continue
        out.add(key)
        if target.get("type") == "array" and _resolve(schema, target.get("items", {})).get("properties"):
            _schema_keys(schema, target["items"], f"{key}[].", out)
        extra = target.get("additionalProperties")
        if isinstance(extra, dict) and _resolve(schema, extra).get("properties"):
            _schema_keys(schema, extra, f"{key}.<name>.", out)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        resolved: dict[str, Any] = schema["$defs"][ref.split("/")[-1]]
        return resolved
    return node


def test_every_schema_key_is_documented() -> None:
    schema = Config.model_json_schema()
    keys: set[str] = set()
    _schema_keys(schema, schema, "", keys)
    assert {"monitor.poll_interval", "instances[].url", "profiles.<name>.instances", "active_profile"} <= keys
    missing = sorted(keys - set(documented_keys()))
    assert not missing, f"not in docs/configuration.md: {missing}; run: {REGENERATE}"


def test_explain_matches_the_document() -> None:
    text = explain("notifications.quiet")
    assert text.splitlines()[0] == "notifications.quiet"
    assert "default: false" in text and "Only failures notify" in text
    assert "| `notifications.quiet` | boolean | `false` |" in DOC_PATH.read_text(encoding="utf-8")
