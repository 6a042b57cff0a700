"""What one member may do to the hub, so that a member whose lmstudio-tray loops (a bug, a script reusing its
token) can neither fill the hub's disk nor take its time from the others.

- **Reports** and **reads**: a token bucket per member for each: `burst` requests at once, then `reports_per_second`.
  Beyond it the hub answers 429 with Retry-After, and the member's lmstudio-tray waits that long (and says so once).
  Reads count apart from reports, so a member reading in a loop never costs its own reports their place.
- **Entries**: at most `entries` (instance, model) pairs held for one member; a report that would go over is
  refused whole (409), so what was acknowledged before stays and the file stays bounded by members x entries.

The defaults are far above what a real member sends (see `Limits`): only a loop meets them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Limits:
    """Per member. One lmstudio-tray process reports once per `[team] hub_every` (at least 0.2 s, 5 a second at
    most; 0.2 a second by default); 10 a second leaves room for a member's tray and a `serve` at that shortest
    interval, and the burst for a restart's catch-up. A person uses tens of models a week, not a thousand."""

    reports_per_second: float = 10.0
    burst: int = 30
    entries: int = 1000


class OverLimit(Exception):
    """A member's report the limits refuse; `retry_after` seconds when waiting helps (rate), None when not (entries)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Traffic(Enum):
    """What a bucket counts, as the 429's message words it: what was sent too often, and how often lmstudio-tray
    sends it."""

    REPORTS = ("sent more than {burst} reports at once or {rate:g} a second: lmstudio-tray sends one every [team] "
               "hub_every seconds, so something else (a loop, a script with this token) is sending")
    READS = ("read more than {burst} times at once or {rate:g} a second: lmstudio-tray reads the uses every [team] "
             "hub_every seconds and the team's usage once a minute, `team report` once per run, so something else "
             "(a loop, a script with this token) is reading")


class MemberBuckets:
    """One token bucket per member name (members are few: the names in members.json) for one kind of `traffic`.
    Thread-safe."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic,
                 traffic: Traffic = Traffic.REPORTS) -> None:
        self.limits = limits
        self.clock = clock
        self.traffic = traffic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # member -> (tokens, when counted)

    def take(self, member: str) -> None:
        """Count one request of `member`; OverLimit (with the seconds until the next one fits) when over."""
        rate, burst = self.limits.reports_per_second, float(self.limits.burst)
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(member, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate)
            if tokens < 1.0:
                self._buckets[member] = (tokens, now)
                wait = (1.0 - tokens) / rate
                what = self.traffic.value.format(burst=self.limits.burst, rate=rate)
                raise OverLimit(f"member {member!r} {what}; retry in {math.ceil(wait)} s", wait)
            self._buckets[member] = (tokens - 1.0, now)


def check_entries(member: str, held: int, limits: Limits) -> None:
    """OverLimit when `member` would hold `held` (instance, model) pairs, more than the hub keeps for one member."""
    if held > limits.entries:
        raise OverLimit(f"member {member!r} would hold {held} (instance, model) uses on the hub, over the "
                        f"{limits.entries} it keeps for one member; nothing of this report was stored. A person "
                        "never uses that many: check what reports with this token (uses older than 7 days are "
                        "dropped)")
