"""The JSONC reader against the parser OpenCode really reads its config with (jsonc-parser, run by node).

Valid documents are JSON values rendered with random whitespace, comments (holding `//`, `/*`, quotes,
commas, brackets) and trailing commas at every legal place: our reader must return exactly the
reference's value. Broken documents (unclosed block comment or string, a stray token, a missing or doubled
comma, random damage) must be refused by both, or accepted by both with the same value.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstudio_tray.opencode.jsonc import JsoncError, loads, parse_config_object
from tests.opencode.conftest import JsoncReference
from tests.opencode.jsonc_strategies import Rendered, canon, documents

SETTINGS = settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# the two regressions of the issue, and neighbours
ISSUE_EXAMPLES: list[tuple[str, Any]] = [
    ('{"a": [1, 2, // two\n]}', {"a": [1, 2]}),  # a comment between a trailing comma and `]`
    ('{"a": [1, 2, /* two */ ]}', {"a": [1, 2]}),
    ('{\n  "a": 1, // one\n  /* more\n     later */\n}\n', {"a": 1}),
    ('{"a": 1} /* never closed', None),  # an unclosed block comment: refused, not accepted
    ('{"a": /* never closed 1}', None),
    ('{"a": "x // not a comment", "b": "/* nor this */"}', {"a": "x // not a comment", "b": "/* nor this */"}),
]

# tokens JSON does not have, wherever they go between two tokens (not "-" or "/": before `5` or `/*` they
# make a number or a comment)
GARBAGE = ["NaN", "Infinity", "-Infinity", "undefined", "'x'", "+1", ".5", "0x10", "True", "None", "\f", "\v",
           "\u00a0", "\ufeff", "\u2028", "@", "#", "\x00"]
FRAGMENTS = [*GARBAGE, "-", "/", "/*", "*/", "//", "\n", "\r", '"', ",", ",,", "]", "}", "[", "{", ":", "\\", "\\u12",
             "\\x", "\t", " ", "1.", "1e", "01", "true", "tru", "null", "0", '"k":', "\x1f"]


def _ours(text: str) -> tuple[bool, Any]:
    try:
        return True, loads(text)
    except JsoncError:
        return False, None


def _check_same_verdict(ref: JsoncReference, text: str) -> bool:
    errors, ref_value = ref.parse(text)
    ok, value = _ours(text)
    assert ok == (not errors), f"ours {'accepts' if ok else 'refuses'}, jsonc-parser {errors}: {text!r}"
    if ok:
        assert canon(value) == canon(ref_value), text
    return ok


@pytest.mark.parametrize(("text", "expected"), ISSUE_EXAMPLES)
def test_issue_examples(jsonc_reference: JsoncReference, text: str, expected: Any) -> None:
    assert _check_same_verdict(jsonc_reference, text) == (expected is not None)
    if expected is not None:
        assert parse_config_object(text) == expected
    else:
        with pytest.raises(JsoncError, match="never closed"):
            parse_config_object(text)


@pytest.mark.parametrize("text", [
    "1e400", "[-1e400, 1e-400]", "-0", "123456789012345678901234567890", '"\\ud800"', '"\\ud83d\\ude00"',
    '"\\u00e9\\/"', '{"a": 1, "a": 2}', '{"__proto": 1}'])
def test_edge_values_read_as_jsonc_parser_reads_them(jsonc_reference: JsoncReference, text: str) -> None:
    assert _check_same_verdict(jsonc_reference, text)


@SETTINGS
@given(doc=documents())
def test_valid_documents_read_as_jsonc_parser_reads_them(jsonc_reference: JsoncReference, doc: Rendered) -> None:
    errors, ref_value = jsonc_reference.parse(doc.text)
    assert errors == [], f"the generator made a document jsonc-parser refuses: {doc.text!r}"
    assert canon(loads(doc.text)) == canon(ref_value) == canon(doc.value)
    if isinstance(doc.value, dict):  # a config file: the same, with or without a BOM (OpenCode drops it)
        with_bom = parse_config_object("\ufeff" + doc.text)
        assert canon(parse_config_object(doc.text)) == canon(with_bom) == canon(ref_value)


@SETTINGS
@given(doc=documents(), data=st.data())
def test_damaged_documents_get_the_same_verdict(jsonc_reference: JsoncReference, doc: Rendered,
                                                data: st.DataObject) -> None:
    text = doc.text
    at = data.draw(st.integers(0, len(text)))
    how = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
    if how == "insert":
        text = text[:at] + data.draw(st.sampled_from(FRAGMENTS)) + text[at:]
    elif how == "delete":
        text = text[:at] + text[at + data.draw(st.integers(1, 3)):]
    elif how == "replace":
        text = text[:at] + data.draw(st.sampled_from(FRAGMENTS)) + text[at + 1:]
    else:
        text = text[:at]
    _check_same_verdict(jsonc_reference, text)


def _broken(doc: Rendered, data: st.DataObject, how: str) -> str:
    cut = data.draw(st.sampled_from(doc.boundaries()))
    head, tail = doc.joined(cut), doc.text[len(doc.joined(cut)):]
    junk = data.draw(st.text(max_size=12))
    if how == "unclosed block comment":  # everything after it is swallowed
        return head + "/*" + junk.replace("*", "")  # (removing "*/" from "**//" would leave one)
    if how == "unclosed string":
        return head + '"' + junk.replace('"', "").replace("\\", "")
    if how == "string broken by a line break":
        return head + '"' + junk.replace('"', "").replace("\\", "").replace("\n", "").replace("\r", "") + "\n" + tail
    return head + data.draw(st.sampled_from(GARBAGE)) + tail  # a token JSON does not have


def _without_a_comma(doc: Rendered, data: st.DataObject, doubled: bool) -> str | None:
    commas = [i for i, p in enumerate(doc.pieces) if p.kind == "separator" or (doubled and p.kind == "trailing")]
    if not commas:
        return None
    i = data.draw(st.sampled_from(commas))
    return doc.joined(i) + (",," if doubled else "") + doc.text[len(doc.joined(i + 1)):]


@SETTINGS
@given(doc=documents(), data=st.data(), how=st.sampled_from([
    "unclosed block comment", "unclosed string", "string broken by a line break", "garbage", "missing comma",
    "doubled comma"]))
def test_broken_documents_are_refused_by_both(jsonc_reference: JsoncReference, doc: Rendered, data: st.DataObject,
                                              how: str) -> None:
    if how in ("missing comma", "doubled comma"):
        text = _without_a_comma(doc, data, how == "doubled comma")
        if text is None:
            return
    else:
        text = _broken(doc, data, how)
    assert not jsonc_reference.accepts(text), f"jsonc-parser accepts the {how}: {text!r}"
    with pytest.raises(JsoncError):
        loads(text)


@pytest.mark.parametrize(("text", "line", "column", "words"), [
    ('{\n  "a": 1, /* about a\n', 2, 11, "block comment is never closed"),
    ('{\n  "name": "abc\n}', 2, 11, "string is not closed"),
    ('{"name": "abc', 1, 10, "string is never closed"),
    ('{\n  "n": NaN\n}', 2, 8, "unexpected `NaN`"),
    ("{\n  'n': 1\n}", 2, 3, "double quotes"),
    ('{\n  "a": 1\n  "b": 2\n}', 3, 3, "comma is missing"),
    ('{"a": [1, 2}', 1, 12, "expected `,` or `]`"),
    ('{"a": 1', 1, 8, "opened at line 1, column 1 is never closed"),
    ('{"a": "\\q"}', 1, 8, "invalid escape"),
    ('{"a": "\tb"}', 1, 8, "control character U+0009"),
    ('{"a": 1.}', 1, 7, "incomplete"),
    ('{"a": 1}\n{"b": 2}', 2, 1, "after the end of the value"),
    ("// only a comment\n", 2, 1, "expected a value"),
    ('[1, 2]', 1, 1, "top level must be an object"),
    ('"text"', 1, 1, "top level must be an object"),
    ('{\r\n  "a": 1,\r\n  "b": ?\r\n}', 3, 8, "unexpected `?`"),
])
def test_errors_say_what_and_where(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(JsoncError) as caught:
        parse_config_object(text)
    assert (caught.value.line, caught.value.column) == (line, column), str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"line {line}, column {column}: ")


def test_an_empty_file_is_an_empty_config_but_whitespace_is_not() -> None:
    # OpenCode skips a zero-length file and refuses one holding only whitespace or comments
    assert parse_config_object("") == {} and parse_config_object("\ufeff") == {}
    with pytest.raises(JsoncError):
        parse_config_object(" \n")


def test_nesting_too_deep_is_an_error_not_a_crash() -> None:
    with pytest.raises(JsoncError, match="levels deep"):
        loads("[" * 5000 + "]" * 5000)
