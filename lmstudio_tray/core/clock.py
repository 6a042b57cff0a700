"""Time as a dependency, so polling, backoff and rate limits are tested without sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to. `sleep` returns once `advance` has passed its deadline."""

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, fut))
        await fut

    @property
    def pending_sleeps(self) -> list[float]:
        """Deadlines of the coroutines asleep right now, relative to now."""
        return sorted(deadline - self._now for deadline, fut in self._sleepers if not fut.done())

    def advance(self, seconds: float) -> None:
        self._now += seconds
        due = [(d, f) for d, f in self._sleepers if d <= self._now]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self._now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
