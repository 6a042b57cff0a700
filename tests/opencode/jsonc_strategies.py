"""Hypothesis strategies for JSONC documents: JSON values rendered with random whitespace, comments and
trailing commas at every place jsonc-parser allows them, kept as pieces so that a test can break the
document at a boundary that is outside every string and comment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# `__proto__` is the one key a JS object cannot hold as a plain property, so jsonc-parser's value differs
KEYS = st.text(max_size=6).filter(lambda k: k != "__proto__")
SCALARS = (st.none() | st.booleans() | st.integers(-(10**20), 10**20)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
VALUES = st.recursive(
    SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4), max_leaves=12
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=5)

# what comments are made of: the characters that would confuse a naive stripper, and anything else
_TRICKY = st.sampled_from(["//", "/*", "*", "/", '"', "'", ",", "}", "]", "{", "[", ":", "\\", " ", "\t", "x", "é"])
COMMENT_TEXT = st.lists(_TRICKY | st.characters(), max_size=8).map("".join)
WHITESPACE = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n    "])
LINE_BREAKS = st.sampled_from(["\n", "\r\n", "\r"])
_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class Piece:
    text: str
    kind: str  # "token", "trivia", "separator" (a comma between two items), "trailing" (a trailing comma)


@dataclass(frozen=True)
class Rendered:
    value: Any
    pieces: tuple[Piece, ...]
    open_end: bool  # ends in a // comment without a line break (nothing may be appended after it)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)

    def boundaries(self) -> range:
        """Offsets (as piece indexes) where the text may be cut or something put in: never inside a string or
        a comment."""
        return range(len(self.pieces) + (0 if self.open_end else 1))

    def joined(self, upto: int) -> str:
        return "".join(p.text for p in self.pieces[:upto])


def _block_text(text: str) -> str:
    while "*/" in text:
        text = text.replace("*/", "* /")
    return text


@st.composite
def trivia(draw: st.DrawFn) -> list[Piece]:
    """Whitespace and comments, as they may sit between any two tokens."""
    out: list[Piece] = []
    for choice in draw(st.lists(st.sampled_from(["ws", "line", "block"]), max_size=3)):
        if choice == "ws":
            text = draw(WHITESPACE)
        elif choice == "line":
            body = draw(COMMENT_TEXT).replace("\r", "").replace("\n", "")
            text = "//" + body + draw(LINE_BREAKS)
        else:
            text = "/*" + _block_text(draw(COMMENT_TEXT)) + "*/"
        out.append(Piece(text, "trivia"))
    return out


@st.composite
def string_literal(draw: st.DrawFn, value: str) -> str:
    """`value` as a JSON string, each character raw or escaped (short or \\u form, upper or lower hex)."""
    out = ['"']
    for ch in value:
        must_escape = ch in '"\\' or ord(ch) < 0x20
        if not must_escape and draw(st.integers(0, 3)) > 0:
            out.append(ch)
        elif ch in _SHORT and draw(st.booleans()):
            out.append(_SHORT[ch])
        else:
            units = ch.encode("utf-16-be")
            hexes = [units[i : i + 2].hex() for i in range(0, len(units), 2)]
            upper = draw(st.booleans())
            out.append("".join("\\u" + (h.upper() if upper else h) for h in hexes))
    out.append('"')
    return "".join(out)


@st.composite
def number_literal(draw: st.DrawFn, value: int | float) -> str:
    if isinstance(value, int):
        return str(value) + draw(st.sampled_from(["", "", ".0", "e0", "E+0", ".00e-0"]))
    text = repr(value)
    return text.replace("e", "E") if draw(st.booleans()) else text


@st.composite
def rendered(draw: st.DrawFn, value: Any) -> list[Piece]:
    if isinstance(value, dict):
        return draw(_container(list(value.items()), "{", "}"))
    if isinstance(value, list):
        return draw(_container([(None, v) for v in value], "[", "]"))
    if isinstance(value, bool) or value is None:
        return [Piece({True: "true", False: "false", None: "null"}[value], "token")]
    if isinstance(value, (int, float)):
        return [Piece(draw(number_literal(value)), "token")]
    return [Piece(draw(string_literal(value)), "token")]


@st.composite
def _container(draw: st.DrawFn, items: list[tuple[str | None, Any]], open_: str, close: str) -> list[Piece]:
    out = [Piece(open_, "token"), *draw(trivia())]
    for i, (key, value) in enumerate(items):
        if key is not None:
            out += [Piece(draw(string_literal(key)), "token"), *draw(trivia()), Piece(":", "token"), *draw(trivia())]
        out += [*draw(rendered(value)), *draw(trivia())]
        if i < len(items) - 1:
            out += [Piece(",", "separator"), *draw(trivia())]
        elif draw(st.booleans()):
            out += [Piece(",", "trailing"), *draw(trivia())]
    return [*out, Piece(close, "token")]


@st.composite
def documents(draw: st.DrawFn, values: st.SearchStrategy[Any] = VALUES) -> Rendered:
    value = draw(values)
    pieces = [*draw(trivia()), *draw(rendered(value)), *draw(trivia())]
    open_end = draw(st.booleans())
    if open_end:
        pieces.append(Piece("//" + draw(COMMENT_TEXT).replace("\r", "").replace("\n", ""), "trivia"))
    return Rendered(value, tuple(pieces), open_end)


def canon(value: Any) -> Any:
    """A value as both readers can agree on it: numbers as floats (JS has no ints), bools apart from numbers,
    object key order ignored."""
    if isinstance(value, bool) or value is None:
        return ("lit", value)
    if isinstance(value, (int, float)):
        return ("num", float(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("list", tuple(canon(v) for v in value))
    return ("obj", tuple(sorted((k, canon(v)) for k, v in value.items())))
