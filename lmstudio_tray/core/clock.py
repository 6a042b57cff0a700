"""Time as a dependency, so polling, backoff and rate limits are tested without sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """The time source of everything that waits or measures intervals (polling, backoff, rate limits): `SystemClock` in
    the app, `FakeClock` in tests."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for intervals and deadlines."""

    def wall(self) -> float:
        """Seconds since the epoch: for timestamps that people and files see."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling coroutine for `seconds`."""


class SystemClock:
    """The real clock: `time.monotonic`, `time.time` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        """`time.monotonic()`: unaffected when the system's clock is set."""
        return time.monotonic()

    def wall(self) -> float:
        """`time.time()`."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`."""
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to. `sleep` returns once `advance` has passed its deadline."""

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        """The fake time: `start` plus everything `advance` added."""
        return self._now

    def wall(self) -> float:
        """The fake time shifted to `wall_start`; it moves with `monotonic`."""
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        """Suspend until `advance` moves the clock past now + `seconds`; a wait of zero or less only yields to the loop
        once."""
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
        """Move the clock forward by `seconds` and wake every sleeper whose deadline has passed (they resume at the
        loop's next turn). Call it on the thread of the loop the sleepers run on."""
        self._now += seconds
        due = [(d, f) for d, f in self._sleepers if d <= self._now]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self._now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
