"""Injected failures for the API port: status codes, latency, hangs, broken bodies, dropped connections."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal["status", "latency", "hang", "invalid_json", "error_body", "drop", "truncate"]
FAULT_KINDS: tuple[str, ...] = ("status", "latency", "hang", "invalid_json", "error_body", "drop", "truncate")


@dataclass
class Fault:
    """A failure applied to matching API requests; `path` ending in `*` matches by prefix."""

    path: str
    method: str | None = None
    kind: FaultKind = "status"
    status: int = 500
    body: Any = None
    delay: float = 0.0
    # None = forever; otherwise the number of requests it still applies to.
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultBook:
    """Thread-safe fault list; `released` wakes requests held by `hang` faults."""

    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)
            self.released.clear()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.released.set()

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault, consuming one of its `times`."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]
