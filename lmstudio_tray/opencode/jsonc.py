"""Reading OpenCode's config files: JSONC exactly as OpenCode reads it, with the spans of every value.

OpenCode 1.18.33 reads `opencode.json(c)` with Microsoft's `jsonc-parser` (`parse(text, errors,
{allowTrailingComma: true})`) and refuses the file when `errors` is not empty. This module accepts the
same documents: JSON plus `//` and `/* */` comments wherever whitespace may go and a trailing comma
before `]` or `}` (comments and line breaks may sit between that comma and the bracket). Whitespace is
space, tab, CR and LF only, as in jsonc-parser (a form feed or a no-break space is an error there too).
A leading BOM is dropped (OpenCode's file read drops it). Everything else is an error with its line and
column: an unclosed block comment or string, a bad escape, a control character in a string, a word that
is not `true`/`false`/`null` (`NaN`, `'single'`, `undefined`), a missing or doubled comma, an unclosed
bracket, more than one value. `tests/opencode/test_jsonc.py` checks this property-based against
jsonc-parser itself, run by node.

Why hand-written (the project prefers a well-kept library): the installer must *edit* the user's file
in place and keep its comments (`jsonc_edit.py`), which needs the offsets of every value; no maintained
Python library reads JSONC as jsonc-parser does and edits it keeping comments. Checked on PyPI:
`json5` 0.17.3 reads JSON5, a superset that accepts what OpenCode refuses (`{'a': 0x10}`, `NaN`), gives
no spans, and its `dumps` writes JSON5 without the comments; `json-five` 1.1.2 (last release 2024-06)
keeps comments in a model but is JSON5 too (accepts `{a: 0x1}`), gives some errors only as a character
index and has no set/insert/remove by path; `json-with-comments` 1.3.0 strips comments, then calls
`json.loads` (accepts `NaN`), and cannot edit; `tree-sitter-json` 0.24.8 has no trailing commas
(`[1, 2, // two\n]` parses to an ERROR/MISSING node); `pyrs-yaml` 0.18.3 refuses `[1, 2, // two\n]`;
`json5kit` 0.4.0 (2023) knows only `//` comments; `jsonc-edit` 0.2.1 drives jsonc-parser through a
Node.js daemon, and the tray cannot count on node being installed (OpenCode ships as one binary).

Limits, both far beyond any config file: nesting deeper than MAX_DEPTH levels is refused (jsonc-parser
goes on until node's stack ends), and so is a number with more digits than Python's int conversion takes.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 256
BOM = "\ufeff"

_TOKEN = re.compile(
    r"""
     (?P<ws>[ \t\r\n]+)
    |(?P<punct>[{}\[\]:,])
    |(?P<string>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
    |(?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    |(?P<line>//[^\r\n]*)
    |(?P<block>/\*.*?\*/)
    |(?P<word>[^ \t\r\n{}\[\]":,/]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ESCAPES = set('"\\/bfnrt')
_HEX = set("0123456789abcdefABCDEF")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


class JsoncError(ValueError):
    """The text is not JSONC that OpenCode would read; `str()` names the line and column (1-based)."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.message = message
        self.offset = offset
        self.line, self.column = line_column(text, offset)
        super().__init__(f"line {self.line}, column {self.column}: {message}")


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset`; CR LF, CR and LF each end a line (as in jsonc-parser)."""
    line, start = 1, 0
    for m in _LINE_BREAK.finditer(text, 0, offset):
        line, start = line + 1, m.end()
    return line, offset - start + 1


class Kind(enum.Enum):
    OBJECT = "object"
    ARRAY = "array"
    STRING = "string"
    NUMBER = "number"
    LITERAL = "literal"  # true, false, null


@dataclass(eq=False)
class Item:
    """A property of an object (`key` set) or an element of an array, with where it sits in the text."""

    key: str | None
    start: int  # the key's opening quote, or the element's first character
    node: Node
    comma: int | None = None  # the comma after this item, if there is one


@dataclass(eq=False)
class Node:
    """A value and its span `[start, end)`; containers span from the opening to after the closing bracket."""

    kind: Kind
    start: int
    end: int
    value: Any
    items: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Comment:
    start: int
    end: int
    block: bool  # /* */ (else //, which runs to the end of its line)


@dataclass(frozen=True)
class Document:
    text: str
    root: Node
    comments: tuple[Comment, ...]

    @property
    def value(self) -> Any:
        return self.root.value


@dataclass(frozen=True)
class _Token:
    kind: str  # one of "{}[]:," or "string", "number", "literal", "eof"
    start: int
    end: int


# ---- tokens -----------------------------------------------------------------------------------------


def _tokens(text: str) -> tuple[list[_Token], list[Comment]]:
    tokens: list[_Token] = []
    comments: list[Comment] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _scan_error(text, pos)
        kind, end = m.lastgroup or "", m.end()
        if kind == "punct":
            tokens.append(_Token(text[pos], pos, end))
        elif kind == "line" or kind == "block":
            comments.append(Comment(pos, end, kind == "block"))
        elif kind == "string" or kind == "number":
            if kind == "number":
                _check_number_end(text, pos, end)
            tokens.append(_Token(kind, pos, end))
        elif kind == "word":
            word = m.group()
            if word not in _LITERALS:
                raise JsoncError(f"unexpected {_describe_word(word)}; JSON values are objects, arrays, strings "
                                 "in double quotes, numbers, true, false and null", text, pos)
            tokens.append(_Token("literal", pos, end))
        pos = end
    tokens.append(_Token("eof", n, n))
    return tokens, comments


def _describe_word(word: str) -> str:
    if len(word) == 1 and not word.isprintable():
        return f"character U+{ord(word):04X}"
    if word[0] == "'":
        return f"`{word}` (strings need double quotes)"
    return f"`{word}`"


def _check_number_end(text: str, start: int, end: int) -> None:
    nxt = text[end : end + 1]
    if nxt in (".", "e", "E") and nxt:
        raise JsoncError(f"the number `{text[start:end + 1]}` is incomplete (a digit must follow)", text, start)
    if nxt.isdigit() and text[start:end].lstrip("-") == "0":
        raise JsoncError("a number cannot start with 0 followed by more digits", text, start)


def _scan_error(text: str, pos: int) -> JsoncError:
    """Why no token matched at `pos` (a string, a block comment or a lone slash)."""
    if text.startswith("/*", pos):
        return JsoncError("this block comment is never closed (no `*/` before the end of the file)", text, pos)
    if text[pos] == "/":
        return JsoncError("unexpected `/` (comments start with `//` or `/*`)", text, pos)
    return _string_error(text, pos)


def _string_error(text: str, start: int) -> JsoncError:
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if not nxt:
                break
            if nxt == "u":
                digits = text[i + 2 : i + 6]
                if len(digits) < 4 or not all(h in _HEX for h in digits):
                    return JsoncError("`\\u` must be followed by four hex digits", text, i)
                i += 6
                continue
            if nxt not in _ESCAPES:
                return JsoncError(f"invalid escape `\\{nxt}` in a string (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t "
                                  "\\uXXXX)", text, i)
            i += 2
            continue
        if c in "\r\n":
            return JsoncError("this string is not closed before the end of its line", text, start)
        if ord(c) < 0x20:
            return JsoncError(f"control character U+{ord(c):04X} inside a string; write it as an escape "
                              "(e.g. \\t, \\u0000)", text, i)
        i += 1
    return JsoncError("this string is never closed (no `\"` before the end of the file)", text, start)


# ---- values -----------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, message: str, tok: _Token) -> JsoncError:
        return JsoncError(message, self.text, tok.start)

    def found(self, tok: _Token) -> str:
        if tok.kind == "eof":
            return "the end of the file"
        snippet = self.text[tok.start : tok.end]
        return f"`{snippet if len(snippet) <= 20 else snippet[:17] + '...'}`"

    def value(self, depth: int) -> Node:
        tok = self.peek()
        if tok.kind == "{" or tok.kind == "[":
            if depth >= MAX_DEPTH:
                raise self.error(f"nested more than {MAX_DEPTH} levels deep", tok)
            return self.object(depth + 1) if tok.kind == "{" else self.array(depth + 1)
        self.take()
        raw = self.text[tok.start : tok.end]
        if tok.kind == "string":
            return Node(Kind.STRING, tok.start, tok.end, _string(raw))
        if tok.kind == "number":
            return Node(Kind.NUMBER, tok.start, tok.end, _number(raw, self.text, tok.start))
        if tok.kind == "literal":
            return Node(Kind.LITERAL, tok.start, tok.end, _LITERALS[raw])
        raise self.error(f"expected a value, found {self.found(tok)}", tok)

    def object(self, depth: int) -> Node:
        open_tok = self.take()
        node = Node(Kind.OBJECT, open_tok.start, open_tok.end, {})
        while self.peek().kind != "}":
            self.not_at_end(open_tok, "}", "object")
            key_tok = self.take()
            if key_tok.kind != "string":
                raise self.error(f"expected a property name in double quotes or `}}`, found {self.found(key_tok)}",
                                 key_tok)
            key = _string(self.text[key_tok.start : key_tok.end])
            colon = self.take()
            if colon.kind != ":":
                raise self.error(f"expected `:` after the property name {json.dumps(key)}, found "
                                 f"{self.found(colon)}", colon)
            item = Item(key, key_tok.start, self.value(depth))
            node.items.append(item)
            node.value[key] = item.node.value  # a repeated key: the last one wins, as in jsonc-parser
            if not self.separator(item, "}", open_tok, "object"):
                break
        node.end = self.take().end
        return node

    def array(self, depth: int) -> Node:
        open_tok = self.take()
        node = Node(Kind.ARRAY, open_tok.start, open_tok.end, [])
        while self.peek().kind != "]":
            self.not_at_end(open_tok, "]", "array")
            item = Item(None, self.peek().start, self.value(depth))
            node.items.append(item)
            node.value.append(item.node.value)
            if not self.separator(item, "]", open_tok, "array"):
                break
        node.end = self.take().end
        return node

    def not_at_end(self, open_tok: _Token, close: str, what: str) -> None:
        tok = self.peek()
        if tok.kind == "eof":
            line, col = line_column(self.text, open_tok.start)
            raise self.error(f"the {what} opened at line {line}, column {col} is never closed (expected "
                             f"`{close}`)", tok)

    def separator(self, item: Item, close: str, open_tok: _Token, what: str) -> bool:
        """After an item: a comma (True: more may follow) or the closing bracket (False, not consumed)."""
        tok = self.peek()
        if tok.kind == ",":
            item.comma = self.take().start
            return True
        if tok.kind == close:
            return False
        self.not_at_end(open_tok, close, what)
        raise self.error(f"expected `,` or `{close}`, found {self.found(tok)} (a comma is missing?)", tok)


def _string(raw: str) -> str:
    value: str = json.loads(raw)  # the token is already known to be a valid JSON string
    return value


def _number(raw: str, text: str, offset: int) -> int | float:
    try:
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        raise JsoncError("this number has too many digits", text, offset) from None


# ---- entry points -----------------------------------------------------------------------------------


def parse_document(text: str) -> Document:
    """The whole text as one JSONC value, with spans and comments; JsoncError if OpenCode would refuse it."""
    tokens, comments = _tokens(text)
    parser = _Parser(text, tokens)
    if parser.peek().kind == "eof":
        raise parser.error("expected a value, found only whitespace and comments", parser.peek())
    root = parser.value(0)
    rest = parser.peek()
    if rest.kind != "eof":
        raise parser.error(f"unexpected {parser.found(rest)} after the end of the value (only whitespace and "
                           "comments may follow)", rest)
    return Document(text, root, tuple(comments))


def loads(text: str) -> Any:
    """The value of a JSONC text (any JSON value at the top level)."""
    return parse_document(text).value


def split_bom(text: str) -> tuple[str, str]:
    """(BOM or "", the rest)."""
    return (BOM, text[1:]) if text.startswith(BOM) else ("", text)


def parse_config_object(text: str) -> dict[str, Any]:
    """An OpenCode config file's object. An empty file counts as `{}` (OpenCode skips it)."""
    _, body = split_bom(text)
    if not body:
        return {}
    doc = parse_document(body)
    if not isinstance(doc.value, dict):
        raise JsoncError("the top level must be an object (`{ ... }`)", body, doc.root.start)
    return doc.value


def comments_of(text: str) -> Iterator[str]:
    """The text of every comment, in order (for checks that none was lost)."""
    for c in parse_document(text).comments:
        yield text[c.start : c.end]
