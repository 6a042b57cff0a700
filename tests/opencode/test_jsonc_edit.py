"""Editing JSONC in place: the result reads (by jsonc-parser, what OpenCode uses) as the intended value,
keeps every comment, changes nothing when nothing changes, and appending then removing restores the text
byte for byte."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lmstudio_tray.opencode.jsonc import Kind, Node, comments_of, loads, parse_document
from lmstudio_tray.opencode.jsonc_edit import same, update
from tests.opencode.conftest import JsoncReference
from tests.opencode.jsonc_strategies import KEYS, OBJECTS, VALUES, Rendered, canon, documents

SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@st.composite
def changed(draw: st.DrawFn, value: Any) -> Any:
    """A value derived from `value`: keys dropped, added or changed, elements appended, dropped or changed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, v in value.items():
            action = draw(st.sampled_from(["keep", "keep", "recurse", "replace", "drop"]))
            if action != "drop":
                out[key] = v if action == "keep" else draw(changed(v) if action == "recurse" else VALUES)
        for key, v in draw(st.dictionaries(KEYS, VALUES, max_size=2)).items():
            out.setdefault(key, v)
        return out
    if isinstance(value, list):
        items = [draw(changed(v)) if draw(st.booleans()) else v for v in value]
        return items[: draw(st.integers(0, len(items)))] + draw(st.lists(VALUES, max_size=2))
    return draw(VALUES) if draw(st.booleans()) else value


def _comments(text: str) -> Counter[str]:
    return Counter(comments_of(text))


@SETTINGS
@given(doc=documents(OBJECTS), data=st.data())
def test_an_edited_document_reads_as_intended_and_keeps_every_comment(
        jsonc_reference: JsoncReference, doc: Rendered, data: st.DataObject) -> None:
    base = loads(doc.text)  # 1.0 stays a float here: `update` writes 1 only when asked for the int 1
    new = data.draw(changed(base))
    out = update(doc.text, new)
    errors, value = jsonc_reference.parse(out)
    assert errors == [], f"jsonc-parser refuses the edited text {out!r}"
    assert canon(value) == canon(new)
    assert not _comments(doc.text) - _comments(out), f"a comment was lost: {out!r}"
    if same(new, base):
        assert out == doc.text


def _growable(node: Node, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Containers where an append can be undone exactly: non-empty ones, and `{}`/`[]` with nothing inside."""
    found: list[tuple[str | int, ...]] = []
    if node.kind in (Kind.OBJECT, Kind.ARRAY):
        if node.items or node.end - node.start == 2:
            found.append(path)
        for i, item in enumerate(node.items):
            found += _growable(item.node, (*path, item.key if item.key is not None else i))
    return found


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@SETTINGS
@given(doc=documents(OBJECTS), data=st.data())
def test_appending_then_removing_gives_the_text_back_byte_for_byte(
        jsonc_reference: JsoncReference, doc: Rendered, data: st.DataObject) -> None:
    places = _growable(parse_document(doc.text).root, ())
    assume(places)
    base = loads(doc.text)
    grown = copy.deepcopy(base)
    for path in data.draw(st.lists(st.sampled_from(places), min_size=1, max_size=3, unique=True)):
        box = _at(grown, path)
        for v in data.draw(st.lists(VALUES, min_size=1, max_size=2)):
            if isinstance(box, dict):
                box[data.draw(KEYS.filter(lambda k, b=box: k not in b))] = v  # type: ignore[misc]
            else:
                box.append(v)
    out = update(doc.text, grown)
    assert canon(jsonc_reference.parse(out)[1]) == canon(grown)
    assert update(out, base) == doc.text


HEAVY = """\
// My OpenCode setup. Every comment here must survive install + uninstall.
{
    "$schema": "https://opencode.ai/config.json", // the schema, for the editor
    /* theme: "tokyonight" was too dark */
    "theme": "gruvbox",
    "agent": {
        // the build agent
        "build": {"temperature": 0.2, /* warm */},
    },
    "share": "disabled", /* no sharing, ever */
    // "model": "anthropic/claude", (commented out: local only)
}
"""


@pytest.mark.parametrize("text", [HEAVY, HEAVY.replace("\n", "\r\n"), HEAVY.replace("    ", "\t"),
                                  '{"theme": "x", /* one line */ "share": "disabled"}'])
def test_a_provider_block_goes_in_and_out_of_a_commented_file(jsonc_reference: JsoncReference, text: str) -> None:
    original = parse_document(text).value
    with_provider = {**original, "provider": {"lmstudio": {
        "npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "http://127.0.0.1:1234/v1"},
        "models": {"qwen/qwen3-4b-2507": {"name": "Qwen3 4B", "limit": {"context": 8192, "output": 2048}}}}}}
    out = update(text, with_provider)
    assert canon(jsonc_reference.parse(out)[1]) == canon(with_provider)
    assert _comments(out) == _comments(text)
    assert out.startswith(text[: text.index('"share"')])  # nothing before the end changed
    if "\t" in text:
        assert '\n\t"provider": {\n\t\t"lmstudio": {' in out.replace("\r\n", "\n")
    if "\r\n" in text:
        assert "\n" not in out.replace("\r\n", "")
    assert update(out, original) == text


def test_a_removed_block_leaves_its_comments_behind(jsonc_reference: JsoncReference) -> None:
    text = '{\n  "keep": 1,\n  "mine": {\n    // a note I wrote in here\n    "x": 1 /* and here */\n  }\n}\n'
    out = update(text, {"keep": 1})
    assert jsonc_reference.parse(out) == ([], {"keep": 1})
    assert _comments(out) == _comments(text)
