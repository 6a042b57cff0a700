"""Editing a JSONC text in place: only the values that change are touched, every comment is kept.

`update(text, new)` returns a text that reads as `new` (`jsonc.loads`), made the way jsonc-parser's
`modify` + `applyEdits` make theirs: a property or element that goes away is cut out with its comma, a new
one is appended to its object or array in the file's own style, a changed value has only its span
replaced; everything else stays byte for byte. The file's style is followed: its indentation unit
(two or four spaces, a tab) and line ending, one-line objects stay on one line, and a trailing comma after
the last item is kept (the new last item gets one too). Appending then removing the same item gives the
original text back, which is what lets `opencode uninstall` return a commented file to what it was.

Comments are never dropped: one inside a span that goes away (a comment the user put into a block that is
removed) is kept where that span was. The result is parsed again and compared with `new` before it is
returned; a mismatch is a JsoncEditError, never a wrong file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lmstudio_tray.opencode.jsonc import Comment, Document, Item, Kind, Node, parse_document

PathPart = str | int
JsonPath = tuple[PathPart, ...]


class JsoncEditError(ValueError):
    """The text cannot be edited to hold the new value (a bug guard: the result is checked before use)."""


@dataclass(frozen=True)
class _Style:
    unit: str  # one indentation level
    newline: str


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class _Remove:
    path: JsonPath


@dataclass(frozen=True)
class _Replace:
    path: JsonPath
    value: Any


@dataclass(frozen=True)
class _Append:
    path: JsonPath  # the container
    key: str | None  # None: an array element
    value: Any


_Op = _Remove | _Replace | _Append


def update(text: str, new: Any) -> str:
    """`text` edited so that it reads as `new`; JsoncError if `text` is not valid JSONC."""
    doc = parse_document(text)
    style = _style(doc)
    ops = sorted(_diff((), doc.value, new), key=lambda op: 0 if isinstance(op, _Remove) else 1)
    for op in ops:
        text = _apply(doc, op, style)
        doc = parse_document(text)
    if not same(doc.value, new):
        raise JsoncEditError("the edited text does not read back as the intended value")
    return text


def same(a: Any, b: Any) -> bool:
    """Equal JSON values, types included (True is not 1, 1 is not 1.0); object key order does not count."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---- what changes -----------------------------------------------------------------------------------


def _diff(path: JsonPath, old: Any, new: Any) -> Iterator[_Op]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                yield _Remove((*path, key))
        for key, value in new.items():
            if key in old:
                yield from _diff((*path, key), old[key], value)
            else:
                yield _Append(path, key, value)
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(len(old) - 1, len(new) - 1, -1):  # from the end, so earlier indexes stay valid
            yield _Remove((*path, i))
        for i in range(min(len(old), len(new))):
            yield from _diff((*path, i), old[i], new[i])
        for value in new[len(old):]:
            yield _Append(path, None, value)
    elif not same(old, new):
        yield _Replace(path, new)


def _find(root: Node, path: JsonPath) -> tuple[Node | None, int]:
    """(the container holding the last part of `path`, the index of its item); (None, -1) for the root."""
    if not path:
        return None, -1
    node = root
    for part in path[:-1]:
        node = node.items[_index(node, part)].node
    return node, _index(node, path[-1])


def _index(node: Node, part: PathPart) -> int:
    if isinstance(part, int):
        return part
    # a repeated key: the last one is the one that counts
    return max(i for i, item in enumerate(node.items) if item.key == part)


def _node(root: Node, path: JsonPath) -> Node:
    parent, i = _find(root, path)
    return root if parent is None else parent.items[i].node


def _apply(doc: Document, op: _Op, style: _Style) -> str:
    if isinstance(op, _Replace):
        edits = _replace(doc, op.path, op.value, style)
    elif isinstance(op, _Append):
        edits = _append(doc, _node(doc.root, op.path), op.key, op.value, style)
    else:
        parent, i = _find(doc.root, op.path)
        assert parent is not None
        edits = _remove(doc, parent, i, style)
        rest = [j for j, item in enumerate(parent.items) if j != i and op.path[-1] == item.key]
        if rest:  # the same key again earlier in the object: take those out too
            return _apply(parse_document(_edited(doc.text, edits)), op, style)
    return _edited(doc.text, edits)


def _edited(text: str, edits: list[_Edit]) -> str:
    for e in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: e.start] + e.text + text[e.end :]
    return text


# ---- the file's layout ------------------------------------------------------------------------------


def _style(doc: Document) -> _Style:
    newline = "\r\n" if "\r\n" in doc.text else "\n"
    return _Style(_unit(doc.text, doc.root) or "  ", newline)


def _unit(text: str, node: Node) -> str | None:
    """The indentation one level adds: the first item on its own line, less its container's line's."""
    outer = _indent(text, node.start)
    for item in node.items:
        if _starts_line(text, item.start):
            inner = _indent(text, item.start)
            if inner.startswith(outer) and len(inner) > len(outer):
                return inner[len(outer):]
        found = _unit(text, item.node)
        if found:
            return found
    return None


def _line_start(text: str, pos: int) -> int:
    return max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos)) + 1


def _indent(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _starts_line(text: str, pos: int) -> bool:
    return text[_line_start(text, pos) : pos].strip(" \t") == ""


def _one_line(text: str, node: Node) -> bool:
    span = text[node.start : node.end]
    return "\n" not in span and "\r" not in span


def _spaces_after(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _at_line_end(text: str, pos: int) -> bool:
    return pos >= len(text) or text[pos] in "\r\n"


def _line_break_before(text: str, pos: int) -> int:
    """Where the line break ending the line before `pos`'s line starts (CR LF counted whole)."""
    lb = _line_start(text, pos) - 1
    return lb - 1 if lb > 0 and text[lb] == "\n" and text[lb - 1] == "\r" else lb


def _end_of_trailing(doc: Document, pos: int) -> int:
    """Past spaces and comments after `pos` up to the end of its line (a block comment may span lines)."""
    starts = {c.start: c.end for c in doc.comments}
    while pos < len(doc.text):
        if doc.text[pos] in " \t":
            pos += 1
        elif pos in starts:
            pos = starts[pos]
        else:
            break
    return pos


def _render(value: Any, indent: str, style: _Style, one_line: bool) -> str:
    try:
        if one_line:
            out = json.dumps(value, ensure_ascii=False, allow_nan=False)
        else:
            out = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=style.unit)
            out = (style.newline + indent).join(out.split("\n"))
        out.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be written as UTF-8: escape everything
        return _render_ascii(value, indent, style, one_line)
    except ValueError as exc:
        raise JsoncEditError(f"not a JSON value: {exc}") from None
    return out


def _render_ascii(value: Any, indent: str, style: _Style, one_line: bool) -> str:
    if one_line:
        return json.dumps(value)
    return (style.newline + indent).join(json.dumps(value, indent=style.unit).split("\n"))


def _item_text(key: str | None, value: Any, indent: str, style: _Style, one_line: bool) -> str:
    head = "" if key is None else _render(key, "", style, True) + ": "
    return head + _render(value, indent, style, one_line)


def _comments_in(doc: Document, start: int, end: int) -> list[Comment]:
    return [c for c in doc.comments if start <= c.start and c.end <= end]


# ---- the three edits --------------------------------------------------------------------------------


def _replace(doc: Document, path: JsonPath, value: Any, style: _Style) -> list[_Edit]:
    node = _node(doc.root, path)
    parent, _ = _find(doc.root, path)
    one_line = parent is not None and _one_line(doc.text, parent)
    indent = _indent(doc.text, node.start)
    kept = "".join(doc.text[c.start : c.end] + (" " if c.block else style.newline + indent)
                   for c in _comments_in(doc, node.start, node.end))
    return [_Edit(node.start, node.end, kept + _render(value, indent, style, one_line))]


def _append(doc: Document, box: Node, key: str | None, value: Any, style: _Style) -> list[_Edit]:
    if (key is None) != (box.kind is Kind.ARRAY):
        raise JsoncEditError("an object needs a key and an array none")
    text, nl = doc.text, style.newline
    outer = _indent(text, box.start)
    if not box.items:
        return [_append_to_empty(doc, box, _item_text(key, value, outer + style.unit, style, False), style)]
    last = box.items[-1]
    if _one_line(text, box):
        item = _item_text(key, value, "", style, True)
        if last.comma is not None:
            return [_Edit(last.comma + 1, last.comma + 1, " " + item + ",")]
        return [_Edit(last.node.end, last.node.end, ", " + item)]
    indent = _indent(text, last.start) if _starts_line(text, last.start) else outer + style.unit
    item = _item_text(key, value, indent, style, False)
    if last.comma is not None:
        at = _end_of_trailing(doc, last.comma + 1)
        return [_Edit(at, at, nl + indent + item + ",")]
    at = _end_of_trailing(doc, last.node.end)
    if at == last.node.end:
        return [_Edit(at, at, "," + nl + indent + item)]
    return [_Edit(last.node.end, last.node.end, ","), _Edit(at, at, nl + indent + item)]


def _append_to_empty(doc: Document, box: Node, item: str, style: _Style) -> _Edit:
    text, nl = doc.text, style.newline
    outer = _indent(text, box.start)
    inner_indent = outer + style.unit
    close = box.end - 1
    if text[box.start + 1 : close].strip(" \t\r\n") == "":
        return _Edit(box.start + 1, close, nl + inner_indent + item + nl + outer)
    # only comments inside: the item goes after them
    if _starts_line(text, close):
        at = _line_start(text, close)
        return _Edit(at, at, inner_indent + item + nl)
    return _Edit(close, close, nl + inner_indent + item + nl + outer)


def _remove(doc: Document, box: Node, index: int, style: _Style) -> list[_Edit]:
    text = doc.text
    item = box.items[index]
    end = item.comma + 1 if item.comma is not None else item.node.end
    edits: list[_Edit] = []
    if item.comma is None and index > 0:
        prev = box.items[index - 1]
        assert prev.comma is not None
        if _one_line(text, box) or not _starts_line(text, item.start):
            # `, "b": 2` from the end of the previous value: its comma goes with this item
            return [_keep_comments(doc, prev.node.end, item.node.end, "inline", "", style)]
        edits.append(_Edit(prev.comma, prev.comma + 1, ""))
    inside = text[box.start + 1 : box.end - 1]
    rest = inside[: item.start - box.start - 1] + inside[end - box.start - 1 :]
    if len(box.items) == 1 and rest.strip(" \t\r\n") == "":
        # the only item and nothing else inside: `{}` / `[]` again
        return [_keep_comments(doc, box.start + 1, box.end - 1, "pad", _indent(text, box.start), style)]
    return [*edits, _remove_span(doc, box, item, end, style)]


def _remove_span(doc: Document, box: Node, item: Item, end: int, style: _Style) -> _Edit:
    text = doc.text
    after = _spaces_after(text, end)
    if _one_line(text, box) or not _starts_line(text, item.start):
        if item is box.items[-1] or _at_line_end(text, after):  # the spaces before it go (none left at the end)
            start = item.start
            while start > 0 and text[start - 1] in " \t":
                start -= 1
            return _keep_comments(doc, start, end, "inline", "", style)
        return _keep_comments(doc, item.start, after, "inline", "", style)
    indent = _indent(text, item.start)
    if any(c.start == after for c in doc.comments):
        # a comment follows on the item's line: it stays, on a line of its own
        return _keep_comments(doc, item.start, after, "before", indent, style)
    lb = _line_break_before(text, item.start)
    if _at_line_end(text, after):
        return _keep_comments(doc, lb, after, "lines", indent, style)
    if any(not c.block and c.end == lb for c in doc.comments):
        # what follows the item on its line (`}`) must not move up into a // comment
        return _keep_comments(doc, item.start, end, "before", indent, style)
    return _keep_comments(doc, lb, end, "lines", indent, style)


def _keep_comments(doc: Document, start: int, end: int, mode: str, indent: str, style: _Style) -> _Edit:
    """Remove `[start, end)` but keep the comments inside it. `mode` says where the span was: "lines" (from
    a line break on: each comment on a line of its own at `indent`), "before" (from an item's first
    character up to a comment on its line), "pad" (the whole inside of a container whose line has
    `indent`), "inline" (within a line)."""
    kept = _comments_in(doc, start, end)
    if not kept:
        return _Edit(start, end, "")
    nl = style.newline
    texts = [doc.text[c.start : c.end] for c in kept]
    if mode == "before":
        return _Edit(start, end, "".join(t + nl + indent for t in texts))
    if mode == "pad":
        return _Edit(start, end, "".join(nl + indent + style.unit + t for t in texts) + nl + indent)
    if mode == "lines":
        body = "".join(nl + indent + t for t in texts)
    else:  # a // comment ends its line, or it would swallow what follows it
        indent = _indent(doc.text, start)
        body = "".join(" " + t + ("" if c.block else nl + indent) for c, t in zip(kept, texts, strict=True))
        if not kept[-1].block:
            body = body[: -len(nl + indent)]
    if not kept[-1].block and not _at_line_end(doc.text, end):
        body += nl + indent
    return _Edit(start, end, body)
