"""Deterministic fake model output, token accounting and SSE framing."""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from dataclasses import dataclass
from typing import Any

from lmstudio_tray.emulator.routes.httpserver import dumps


def random_id(prefix: str, length: int = 21) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(random.choices(alphabet, k=length))


def message_text(content: Any) -> str:
    """Text of an OpenAI message `content` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def reply_prompt(messages: Any) -> str:
    """What the fake model answers to: the last user text, or the tool result when the conversation ends
    with one (the turn after a tool call), so a client can see its tool output came back."""
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return "tool result: " + message_text(last.get("content"))
    return last_user_text(messages)


# `CALLTOOL:<name> {json args}` in the last user message scripts a tool call (see docs/emulator.md).
_CALLTOOL_RE = re.compile(r"CALLTOOL:([A-Za-z0-9_.\-]+)")


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as OpenAI sends it: a string


def offered_tools(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none":
        return []
    names = []
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
    return names


def scripted_tool_call(body: dict[str, Any]) -> ToolCall | None:
    """The tool call the fake model makes, if the request offers tools and its last message is a user
    message saying `CALLTOOL:<name>` (optionally followed by a JSON object of arguments) for one of them."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    if messages[-1].get("role") != "user":
        return None
    text = message_text(messages[-1].get("content"))
    match = _CALLTOOL_RE.search(text)
    if match is None or match.group(1) not in offered_tools(body):
        return None
    return ToolCall(random_id("call_", 9), match.group(1), json.dumps(_script_args(text[match.end():])))


def _script_args(rest: str) -> dict[str, Any]:
    rest = rest.lstrip()
    if not rest.startswith("{"):
        return {}
    # the prompt may arrive JSON-quoted once more (`opencode run` does that to some prompts): \" -> "
    for candidate in (rest, rest.replace('\\"', '"')):
        try:
            args, _ = json.JSONDecoder().raw_decode(candidate)
        except ValueError:
            continue
        if isinstance(args, dict):
            return args
    return {}


def count_tokens(text: str) -> int:
    # Roughly one token per word piece; only needs to be stable and plausible.
    return max(1, len(text.split()) + len(text) // 16) if text else 0


def prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(count_tokens(message_text(m.get("content"))) + 4 for m in messages if isinstance(m, dict))


def reply_tokens(model: str, prompt: str, max_tokens: Any = None) -> tuple[list[str], str]:
    """The reply as stream pieces plus the finish reason; same input -> same output."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    said = " ".join(prompt.split()[:12]) or "nothing"
    text = f"Hello from the LM Studio emulator ({model}). You said: {said}. [{digest}]"
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if isinstance(max_tokens, int) and 0 < max_tokens < len(pieces):
        return pieces[:max_tokens], "length"
    return pieces, "stop"


def embedding_vector(text: str, dims: int = 768) -> list[float]:
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    return [round((seed[i % len(seed)] - 128) / 128.0, 6) for i in range(dims)]


def sse_data(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else dumps(payload)) + b"\n\n"


def sse_event(event: str, payload: Any) -> bytes:
    return b"event: " + event.encode() + b"\n" + sse_data(payload)
