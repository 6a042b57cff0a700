"""Reading OpenCode's config files, which may be JSONC (comments, trailing commas)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class JsoncError(ValueError):
    """The file is not valid JSON/JSONC; the message names the line and column."""


@dataclass(frozen=True)
class Parsed:
    data: dict[str, Any]
    has_comments: bool


def strip_jsonc(text: str) -> tuple[str, bool]:
    """Plain JSON from JSONC: comments and trailing commas removed outside strings; offsets keep their
    line numbers (comments become spaces, newlines stay) so errors point at the right line."""
    out: list[str] = []
    i, n = 0, len(text)
    comments = False
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            comments, i = True, j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            comments, i = True, j
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            out.append(" " if j < n and text[j] in "}]" else ",")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out), comments


def parse(text: str) -> Parsed:
    plain, comments = strip_jsonc(text.lstrip("\ufeff"))
    if not plain.strip():
        return Parsed({}, comments)
    try:
        data = json.loads(plain)
    except json.JSONDecodeError as exc:
        raise JsoncError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise JsoncError("the top level is not a JSON object")
    return Parsed(data, comments)
