"""Deterministic fake model output, token accounting and SSE framing."""

from __future__ import annotations

import hashlib
import random
import string
from typing import Any

from lmstudio_tray.emulator.httpserver import dumps


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
