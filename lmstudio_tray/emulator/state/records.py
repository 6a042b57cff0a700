"""Log of requests seen on the API port, so tests can assert what a client did (or did not) send."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

MAX_RECORDED = 10_000


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "query": self.query,
            "headers": self.headers, "json": self.json, "time": self.time,
        }


@dataclass
class RequestLog:
    # Bounded so a long benchmark run cannot grow memory without limit; counts stay exact.
    _items: deque[RecordedRequest] = field(default_factory=lambda: deque(maxlen=MAX_RECORDED))
    _counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: RecordedRequest) -> None:
        with self._lock:
            self._items.append(request)
            self._counts[f"{request.method} {request.path}"] += 1

    def items(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._counts.clear()
