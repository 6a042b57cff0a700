"""The team's usage on the hub: each member's anonymised usage summary (the figures `team export` writes: requests,
turns, tokens and errors per model and per shared instance), kept per member and served only merged, for `team
report` and the dashboard: a member reading it sees the team's totals, how many members sent one and their names
(which /v1/uses shows anyway), never another member's own figures.

Only counts under model keys and instance names are kept: whatever else a body carries is dropped, so no prompt,
session id or agent name can reach the hub's file. A summary is written to disk before it is acknowledged.

    POST /v1/usage  {"format": 1, "days": 30, "exported_on": "2026-01-31",
                     "models": {KEY: {"requests": n, ...}}, "instances": {NAME: {...}}}  -> {"member", "stored": true}
    GET  /v1/usage  -> {"members": n, "names": [...], "models": [...], "instances": [...]}  (totals only)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lmstudio_tray.core.support.files import atomic_write
from lmstudio_tray.hub.store import StoreError, read_object

FORMAT = 1  # the summary format `team export` writes
FIELDS = ("requests", "turns", "input_tokens", "output_tokens", "errors")
MAX_NAMES = 500  # models or instances in one summary
MAX_TEXT = 256
Totals = dict[str, dict[str, int]]


class UsageStoreError(StoreError):
    """`usage.json` exists but cannot be read: starting empty would overwrite every member's acknowledged summary
    with the next report, so the hub does not start."""

    def __str__(self) -> str:
        return (f"{self.args[0]}: the hub would lose the usage summaries members sent; restore the file, or move it "
                "away to start with none")


class UsageRejected(ValueError):
    """A summary the hub does not keep; the message names the field."""


def _counts(where: str, data: Any) -> Totals:
    if not isinstance(data, dict):
        raise UsageRejected(f"{where} must be a table of names to figures")
    if len(data) > MAX_NAMES:
        raise UsageRejected(f"{where} has more than {MAX_NAMES} names")
    out: Totals = {}
    for name, figures in data.items():
        if not (isinstance(name, str) and 0 < len(name) <= MAX_TEXT and name.isprintable()):
            raise UsageRejected(f"{where}: a name must be a string of 1 to {MAX_TEXT} printable characters")
        if not isinstance(figures, dict):
            raise UsageRejected(f"{where}.{name}: expected figures")
        row = {}
        for key in FIELDS:
            value = figures.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
                raise UsageRejected(f"{where}.{name}.{key} = {value!r} is not a count")
            row[key] = value
        out[name] = row
    return out


def check_summary(data: Any) -> dict[str, Any]:
    """The parts of a usage summary that are kept (format, days, exported_on, models, instances), checked;
    UsageRejected names what is wrong. Every other field is dropped."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageRejected(f"not a format-{FORMAT} usage summary (the one `lmstudio-tray team export` writes)")
    days, day = data.get("days"), data.get("exported_on")
    if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days < 1e5):
        raise UsageRejected("days must be a number of days above 0")
    if day is not None and not (isinstance(day, str) and len(day) <= 10):
        raise UsageRejected("exported_on must be a day (YYYY-MM-DD)")
    return {"format": FORMAT, "days": days, "exported_on": day,
            "models": _counts("models", data.get("models", {})),
            "instances": _counts("instances", data.get("instances", {}))}


def merge(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Checked summaries added up per model and per instance, busiest first: {"members": n, "models": [{"name",
    FIELDS...}], "instances": [...]}, the shape `team report --json` prints."""
    models: Totals = {}
    instances: Totals = {}
    count = 0
    for summary in summaries:
        count += 1
        for into, part in ((models, summary["models"]), (instances, summary["instances"])):
            for name, figures in part.items():
                row = into.setdefault(name, dict.fromkeys(FIELDS, 0))
                for key in FIELDS:
                    row[key] += figures[key]

    def ranked(t: Totals) -> list[dict[str, Any]]:
        return [{"name": k, **v} for k, v in sorted(t.items(), key=lambda kv: (-kv[1]["requests"], kv[0]))]

    return {"members": count, "models": ranked(models), "instances": ranked(instances)}


class UsageStore:
    """`usage.json` in the hub's state dir: member name -> that member's last summary, rewritten atomically on each
    report before the report is acknowledged."""

    def __init__(self, state: Path) -> None:
        self.path = state / "usage.json"
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        out = {}
        for member, summary in read_object(self.path, UsageStoreError).items():
            try:
                out[str(member)] = check_summary(summary)
            except UsageRejected:
                continue
        return out

    def report(self, member: str, summary: dict[str, Any]) -> None:
        """Keep `member`'s checked summary in place of its last one; on disk before this returns."""
        with self._lock:
            self._data[member] = summary
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self._data), 0o600)

    def team(self) -> dict[str, Any]:
        """Every member's summary merged, with the members' names; never one member's own figures (per-member
        summaries stay in the hub's file, for its admin)."""
        with self._lock:
            data = dict(sorted(self._data.items()))
        return {**merge(data.values()), "names": list(data)}


def parse_body(body: bytes) -> dict[str, Any]:
    """A POSTed summary, checked (`check_summary`); UsageRejected when it is not JSON or not a summary."""
    try:
        data = json.loads(body)
    except ValueError:
        raise UsageRejected("the body is not JSON; send the summary `lmstudio-tray team export` writes") from None
    return check_summary(data)
